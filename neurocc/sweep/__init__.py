"""Design-space sweeps on Dask: `neurocc sweep` and `neurocc.sweep` (issue 15).

`sweep` is defined here and imports run.py (pandas, dask) only when called: `import neurocc` stays fast.
`neurocc.sweep` is this package made callable (`neurocc.sweep(spec)` calls `sweep`), not the function bound
over the package's name: that would break `import neurocc.sweep.table as t` and mock paths into it.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from .spec import Spec

__all__ = ["sweep", "SchedulerUnreachableError", "SweepStoreError", "SweepSpecError"]


def sweep(spec: Spec | dict[str, Any] | str | Path, client: Any = None, out_dir: str | Path | None = None,
          progress: bool | None = None, scheduler: str | None = None, workers: int | None = None,
          serial: bool = False, window: int | None = None) -> pd.DataFrame:
    """Run every point of a sweep spec as Dask tasks; one row per point, in spec order (see run.py)."""
    from .run import sweep as run_sweep

    return run_sweep(spec, client=client, out_dir=out_dir, progress=progress, scheduler=scheduler,
                     workers=workers, serial=serial, window=window)


def __getattr__(name: str) -> Any:  # the error classes, without importing pandas at `import neurocc`
    if name == "SchedulerUnreachableError":
        from .run import SchedulerUnreachableError

        return SchedulerUnreachableError
    if name == "SweepStoreError":
        from .store import SweepStoreError

        return SweepStoreError
    if name == "SweepSpecError":
        from .spec import SweepSpecError

        return SweepSpecError
    raise AttributeError(name)


class _CallableModule(types.ModuleType):
    def __call__(self, spec: Spec | dict[str, Any] | str | Path, client: Any = None, **kwargs: Any) -> pd.DataFrame:
        return sweep(spec, client=client, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
