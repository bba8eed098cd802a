"""Issue 3 acceptance: load -> neurocc.save -> load gives the identical Network and the identical float
simulation, for every corpus file and every synthetic graph of conftest (conv, pooling, delays, recurrence,
nesting, exp discretisation). A saved file records its dt and discretisation, so it needs no convention."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import nir
import numpy as np
import pytest

import neurocc

from .conftest import convention_of


def _quiet_load(source: Any, **kwargs: Any) -> neurocc.Network:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", neurocc.NeuroccWarning)
        return neurocc.load(source, **kwargs)


def _synapses(net: neurocc.Network) -> dict[tuple[str, str], dict[tuple[int, int, int], float]]:
    """(pre, post) -> {(post neuron, pre neuron, delay): weight}, over every projection between the two."""
    out: dict[tuple[str, str], dict[tuple[int, int, int], float]] = {}
    for proj in net.projections:
        rows, cols, vals, dels = proj.coo()
        table = out.setdefault((proj.pre, proj.post), {})
        for key, w in zip(zip(rows.tolist(), cols.tolist(), dels.tolist(), strict=True), vals.tolist(), strict=True):
            assert key not in table, f"{proj.pre} -> {proj.post}: synapse {key} listed twice"
            table[key] = w
    return out


def assert_identical(a: neurocc.Network, b: neurocc.Network) -> None:
    assert (a.dt, a.discretization) == (b.dt, b.discretization)
    assert a.inputs == b.inputs
    assert a.outputs == b.outputs
    assert set(a.populations) == set(b.populations)  # dict order is not meaningful: file edges are a set
    for name, pa in a.populations.items():
        pb = b.populations[name]
        assert (pa.kind, pa.shape) == (pb.kind, pb.shape), name
        assert set(pa.params) == set(pb.params), name
        for key, value in pa.params.items():
            np.testing.assert_array_equal(value, pb.params[key], err_msg=f"{name}.{key}")
        np.testing.assert_array_equal(pa.bias_or_zero(), pb.bias_or_zero(), err_msg=f"{name} bias")
    count = lambda net: sorted((p.pre, p.post) for p in net.projections)  # noqa: E731
    assert count(a) == count(b)
    for proj in a.projections:  # canonical CSR: sorted, no explicit zeros, one delay per synapse
        assert proj.weights.has_canonical_format and np.all(proj.weights.data != 0)
        assert proj.delays.shape == proj.weights.data.shape and proj.delays.min(initial=0) >= 0
    # A convolution is written as conv nodes and read back as one, with its kernel stored once.
    convs = lambda net: sorted((p.pre, p.post, p.conv is not None) for p in net.projections)  # noqa: E731
    assert convs(a) == convs(b)
    sa, sb = _synapses(a), _synapses(b)
    assert sa.keys() == sb.keys()
    for pair, table in sa.items():
        assert table == sb[pair], f"{pair[0]} -> {pair[1]}: weights or delays differ"


def assert_same_run(a: neurocc.Network, b: neurocc.Network, raster: np.ndarray) -> None:
    ra, rb = neurocc.simulate(a, raster), neurocc.simulate(b, raster)
    assert set(ra.spikes) == set(rb.spikes) == set(a.populations)
    for name, spikes in ra.spikes.items():
        np.testing.assert_array_equal(spikes, rb.spikes[name], err_msg=f"{name} spikes")
    for name, v in ra.v.items():
        np.testing.assert_allclose(v, rb.v[name], rtol=1e-12, atol=1e-12, err_msg=f"{name} v")
    assert sum(int(s.sum()) for n, s in ra.spikes.items() if n not in a.inputs) > 0, "a run with no spike tests little"


def _save_load(net: neurocc.Network, path: Path) -> neurocc.Network:
    assert neurocc.save(net, path) == path and path.is_file()
    # NIR's own shape check accepts the file; nir 1.0.8 takes a conv's input channels to be weight.shape[1],
    # wrong for groups > 1, so it rejects every grouped conv, whoever wrote it
    nir.read(path, type_check=not any(p.conv is not None and p.conv.groups > 1 for p in net.projections))
    with warnings.catch_warnings():
        warnings.simplefilter("error", neurocc.NeuroccWarning)  # neurocc's own files load without a fix-up
        return neurocc.load(path)


def test_corpus_save_load(corpus_file: Path, tmp_path: Path) -> None:
    net = _quiet_load(corpus_file, convention=convention_of(corpus_file))
    with np.load(corpus_file.with_suffix(".npz")) as data:
        raster = np.asarray(data["input"])
    again = _save_load(net, tmp_path / corpus_file.name)
    assert_identical(net, again)
    assert_same_run(net, again, raster)
    assert not list(tmp_path.glob("*.tmp")), "save left its temporary file behind"


def test_synthetic_save_load(synthetic: tuple[nir.NIRGraph, dict[str, Any], np.ndarray], tmp_path: Path) -> None:
    graph, kwargs, raster = synthetic
    net = _quiet_load(graph, **kwargs)
    again = _save_load(net, tmp_path / "net.nir")
    assert_identical(net, again)
    assert_same_run(net, again, raster)
    # A fixed point: saving the reloaded network gives the same network again.
    assert_identical(again, _save_load(again, tmp_path / "again.nir"))


def test_saved_file_reproduces_the_framework_without_a_convention(corpus_dir: Path, tmp_path: Path) -> None:
    # norse_cubalif_mlp needs both norse fix-ups (tau / dt and w_in = tau_syn / dt); the saved file holds
    # the fixed values and dt, so it reproduces norse's own spikes with no convention at all.
    src = corpus_dir / "norse_cubalif_mlp.nir"
    saved = tmp_path / "saved.nir"
    neurocc.save(_quiet_load(src, convention="norse"), saved)
    with np.load(src.with_suffix(".npz")) as data:
        recorded = {k: np.asarray(data[k]) for k in ("input", "1.spikes", "3.spikes")}
    result = neurocc.simulate(neurocc.load(saved), recorded["input"])
    for node in ("1", "3"):
        np.testing.assert_array_equal(result.spikes[node], recorded[f"{node}.spikes"] > 0, err_msg=node)


@pytest.mark.parametrize("convention", ["norse", "snntorch", "nir"])
def test_a_convention_does_not_apply_to_a_saved_file(corpus_dir: Path, tmp_path: Path, convention: str) -> None:
    # A convention describes an exporter's encoding. Applied again to neurocc's own file, norse's w_in fix-up
    # multiplied w_in a second time (237 + 83 spikes off) and 'snntorch' replaced the recorded dt.
    net = _quiet_load(corpus_dir / "norse_cubalif_mlp.nir", convention="norse")
    saved = tmp_path / "saved.nir"
    neurocc.save(net, saved)
    with pytest.warns(neurocc.NeuroccWarning, match=f"written by neurocc.save.*convention '{convention}'.*ignored"):
        again = neurocc.load(saved, convention=convention)
    assert_identical(net, again)
    # An explicit dt still overrides what the file records.
    assert neurocc.load(saved, dt=5e-4).dt == 5e-4


def test_save_to_an_impossible_path_is_a_named_error(tmp_path: Path) -> None:
    net = _quiet_load(_tiny_graph())
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(neurocc.ModelFileError, match=r"a_file/sub/net.nir: cannot create a file in .*a_file is not "
                                                     r"a directory.*Fix: save to a path in a writable directory"):
        neurocc.save(net, tmp_path / "a_file" / "sub" / "net.nir")
    (tmp_path / "dir.nir").mkdir()
    with pytest.raises(neurocc.ModelFileError, match=r"dir.nir: could not write NIR .*Fix: save to a writable path"):
        neurocc.save(net, tmp_path / "dir.nir")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "dir.nir"], "a failed save left files behind"


def _tiny_graph() -> nir.NIRGraph:
    return nir.NIRGraph(nodes={
        "in": nir.Input(input_type={"input": np.array([2])}), "w": nir.Linear(weight=np.ones((2, 2))),
        "lif": nir.LIF(tau=np.full(2, 0.01), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2),
                       v_reset=np.zeros(2)),
        "out": nir.Output(output_type={"output": np.array([2])}),
    }, edges=[("in", "w"), ("w", "lif"), ("lif", "out")], type_check=False)


def test_a_dense_map_into_a_feature_map_is_a_named_error(tmp_path: Path) -> None:
    # NIR has no reshape: a dense (non-conv) projection into a (C, H, W) population cannot be written.
    from neurocc.compiler.ir import INPUT, Network, Population, make_projection

    lif = {k: np.full(8, v) for k, v in (("tau", 0.02), ("r", 1.0), ("v_leak", 0.0), ("v_threshold", 1.0),
                                         ("v_reset", 0.0))}
    net = Network({"in": Population("in", INPUT, (4,)), "map": Population("map", "LIF", (2, 2, 2), lif)},
                  [make_projection("in", "map", np.arange(4), np.arange(4), np.ones(4), np.zeros(4, int), (8, 4))],
                  ["in"], {"out": "map"}, 1e-3)
    with pytest.raises(neurocc.NeuroccError, match=r"'in' -> 'map'.*shape \(2, 2, 2\).*Fix"):
        neurocc.save(net, tmp_path / "net.nir")
    assert not list(tmp_path.iterdir()), "a failed save left a file behind"
