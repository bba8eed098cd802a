"""How the frontend's phases report: fix-up warnings (once per key per load) and named errors."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..errors import NeuroccError, ParameterError


class NeuroccWarning(UserWarning):
    """A file was loaded with a fix-up; the message says which."""


@dataclass
class Warner:
    """The warning sink one load passes to its phases: each `key` warns once, prefixed by the source.

    A warning is attributed to the frame of module `anchor` (the frontend's orchestrator,
    `build_network`) however deep in a phase it was raised, so the phases can be split freely.
    """

    source: str
    anchor: str
    seen: set[str] = field(default_factory=set)

    def __call__(self, key: str, message: str) -> None:
        if key in self.seen:
            return
        self.seen.add(key)
        level, frame = 1, sys._getframe()
        while frame is not None and frame.f_globals.get("__name__") != self.anchor:
            frame, level = frame.f_back, level + 1
        warnings.warn(f"{self.source}: {message}", NeuroccWarning, stacklevel=level if frame is not None else 2)


@contextmanager
def guard(name: str, node_type: str, doing: str) -> Iterator[None]:
    """Turn a numeric failure on malformed data into a named error about that node."""
    try:
        yield
    except NeuroccError:
        raise
    except (ValueError, TypeError, IndexError, KeyError, AttributeError, OverflowError, MemoryError) as exc:
        raise ParameterError(
            f"node {name!r} ({node_type}): malformed data while {doing} ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())}). "
            "Fix: re-export the model; check this node's parameter shapes and types"
        ) from None
