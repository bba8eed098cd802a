"""NIR frontend: read a .nir file or nir.NIRGraph into the float Network IR, and write it back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..ir import Network
from .build import CONVENTIONS, NeuroccWarning, build_network
from .reader import read_file, read_graph
from .writer import save

__all__ = ["CONVENTIONS", "NeuroccWarning", "load", "save"]


def load(source: str | Path | Any, dt: float | None = None, convention: str | None = None,
         discretization: str | None = None) -> Network:
    """Read a NIR model into a float Network.

    `convention` names the exporter's time encoding ('nir', 'snntorch', 'norse', 'sinabs',
    'rockpool'); it sets the default `dt` and `discretization`, which explicit arguments override.
    """
    raw = read_file(source) if isinstance(source, str | Path) else read_graph(source)
    return build_network(raw, dt=dt, convention=convention, discretization=discretization)
