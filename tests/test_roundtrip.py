"""neurocc.save writes NIR; load -> save -> load gives the identical Network and the same simulation,
for every corpus file and every synthetic graph (conv, pooling, delays, recurrence, nesting)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import nir
import numpy as np

import neurocc

from .conftest import convention_of


def _synapses(w, delays: np.ndarray) -> dict[tuple[int, int], tuple[float, int]]:
    pairs = zip(w.row.tolist(), w.col.tolist(), strict=True)
    return dict(zip(pairs, zip(w.data.tolist(), delays.tolist(), strict=True), strict=True))


def assert_same_network(a: neurocc.Network, b: neurocc.Network) -> None:
    assert a.inputs == b.inputs and a.outputs == b.outputs
    assert a.dt == b.dt and a.discretization == b.discretization
    assert sorted(a.populations) == sorted(b.populations)  # order is not meaningful: edges in files are a set
    for name, pa in a.populations.items():
        pb = b.populations[name]
        assert (pa.kind, pa.shape) == (pb.kind, pb.shape), name
        assert sorted(pa.params) == sorted(pb.params), name
        for key, value in pa.params.items():
            np.testing.assert_array_equal(value, pb.params[key], err_msg=f"{name}.{key}")
        np.testing.assert_array_equal(pa.bias_or_zero(), pb.bias_or_zero(), err_msg=f"{name}.bias")
    key = lambda p: (p.pre, p.post, p.n_synapses)  # noqa: E731
    assert sorted(map(key, a.projections)) == sorted(map(key, b.projections))
    for pa, pb in zip(sorted(a.projections, key=key), sorted(b.projections, key=key), strict=True):
        wa, wb = pa.weights.tocoo(), pb.weights.tocoo()
        assert _synapses(wa, pa.delays) == _synapses(wb, pb.delays), f"{pa.pre} -> {pa.post}: weights or delays differ"


def _roundtrip(net: neurocc.Network, tmp_path: Path, raster: np.ndarray) -> None:
    path = tmp_path / "saved.nir"
    neurocc.save(net, path)
    again = neurocc.load(path)  # the file records dt and discretisation: no convention needed
    assert_same_network(net, again)
    neurocc.save(again, tmp_path / "twice.nir")
    assert_same_network(again, neurocc.load(tmp_path / "twice.nir"))
    first, second = neurocc.simulate(net, raster), neurocc.simulate(again, raster)
    for name, spikes in first.spikes.items():
        np.testing.assert_array_equal(spikes, second.spikes[name], err_msg=name)
    # nir's own reader loads it. Its type check is off: an unrolled conv is written as a Linear between
    # multi-dimensional populations, and NIR 1.0 has no reshape node to make those types line up.
    assert isinstance(nir.read(str(path), type_check=False), nir.NIRGraph)


def test_corpus_roundtrip(corpus_file: Path, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", neurocc.NeuroccWarning)
        net = neurocc.load(corpus_file, convention=convention_of(corpus_file))
    with np.load(corpus_file.with_suffix(".npz")) as data:
        raster = np.asarray(data["input"])
    _roundtrip(net, tmp_path, raster)


def test_synthetic_roundtrip(synthetic: tuple[nir.NIRGraph, dict[str, Any], np.ndarray], tmp_path: Path) -> None:
    graph, kwargs, raster = synthetic
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", neurocc.NeuroccWarning)
        net = neurocc.load(graph, **kwargs)
    _roundtrip(net, tmp_path, raster)
