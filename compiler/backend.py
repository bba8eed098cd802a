"""What a target family is to the toolchain: one `Backend` record, registered once.

A record names the family's pass list (what compile runs after the frontend), the target-file
sections its targets need, its `emit` and the executor that `verify` runs on the emitted artifacts.
The records themselves are registered in one place, `backends/__init__.py` (which `import neurocc`
loads); the compiler only looks them up here, so it never imports a backend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import TargetError

if TYPE_CHECKING:
    from .ir import Mapping
    from .pipeline import Pass
    from .targets.target import Target


@dataclass
class ExecutorRun:
    """What an executor returns: spikes per integer LIF population [T, n], and what ran them."""

    spikes: dict[str, np.ndarray]
    executor: str  # a human name: "Lava Loihi2SimCfg(fixed_pt)"
    details: dict[str, Any] = field(default_factory=dict)


# An executor runs an emitted output directory on an input raster. `emulate`: use an emulator of the
# real part where the family has one (QEMU for Cortex-M), else the fastest faithful executor.
Executor = Callable[[Path, Any, bool], ExecutorRun]


@dataclass(frozen=True)
class Backend:
    family: str
    passes: tuple[Pass, ...]  # run in order by compiler.pipeline.compile_network
    emit: Callable[[Mapping, Path], Path]
    executor: Executor
    # Target-file sections a target of this family must have, and may have (besides name/family).
    required_sections: frozenset[str]
    optional_sections: frozenset[str] = frozenset()
    # Refuses a target the family's hardware or executor cannot honour (TargetError naming the key).
    check_target: Callable[[Target], None] | None = None
    description: str = ""


_REGISTRY: dict[str, Backend] = {}


def register(backend: Backend) -> Backend:
    """Make a family known. Registering a family twice with another record is an error."""
    old = _REGISTRY.get(backend.family)
    if old is not None and old is not backend:
        raise ValueError(f"target family {backend.family!r} is already registered")
    _REGISTRY[backend.family] = backend
    return backend


def unregister(family: str) -> None:
    """Forget a family (for tests that register a toy one)."""
    _REGISTRY.pop(family, None)


def families() -> tuple[str, ...]:
    _ensure_loaded()
    return tuple(sorted(_REGISTRY))


def backend_for(family: str) -> Backend:
    _ensure_loaded()
    try:
        return _REGISTRY[family]
    except KeyError:
        raise TargetError(f"target family {family!r} has no registered backend (known: "
                          f"{', '.join(sorted(_REGISTRY))}). Fix: set family to one of them, or register "
                          "a Backend for it (docs/extending.md)") from None


def _ensure_loaded() -> None:
    # `import neurocc` registers the shipped families; this covers a caller that imported a compiler
    # module alone. A deferred import, not a dependency: the compiler's code never uses a backend's.
    if not _REGISTRY:
        import importlib

        importlib.import_module("neurocc.backends")
