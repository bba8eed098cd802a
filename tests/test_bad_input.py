"""Issue 3 acceptance: each class of bad input raises its own NeuroccError subclass, and the message names the
file or node, the problem and the fix. Bad graphs are built as nir objects or as h5py edits of written files,
as users bring them; nothing may escape as a numpy, h5py or nir exception."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import nir
import numpy as np
import pytest

import neurocc


def _graph(nodes: dict[str, Any], edges: list[tuple[str, str]]) -> nir.NIRGraph:
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _inp(*shape: int) -> nir.Input:
    return nir.Input(input_type={"input": np.array(shape)})


def _out(*shape: int) -> nir.Output:
    return nir.Output(output_type={"output": np.array(shape)})


def _lif(n: int, **override: Any) -> nir.LIF:
    params = {"tau": np.full(n, 0.01), "r": np.ones(n), "v_leak": np.zeros(n), "v_threshold": np.ones(n),
              "v_reset": np.zeros(n)}
    params.update(override)
    return nir.LIF(**params)


def _cuba(n: int, **override: Any) -> nir.CubaLIF:
    params = {"tau_syn": np.full(n, 0.005), "tau_mem": np.full(n, 0.01), "r": np.ones(n), "v_leak": np.zeros(n),
              "v_threshold": np.ones(n), "v_reset": np.zeros(n), "w_in": np.ones(n)}
    params.update(override)
    return nir.CubaLIF(**params)


def _chain(first: Any, neuron: Any, n_in: int = 3, n_out: int = 2) -> nir.NIRGraph:
    """in -> first -> neuron -> out."""
    return _graph({"in": _inp(n_in), "first": first, "neuron": neuron, "out": _out(n_out)},
                  [("in", "first"), ("first", "neuron"), ("neuron", "out")])


def _good() -> nir.NIRGraph:
    return _chain(nir.Linear(weight=np.ones((2, 3))), _lif(2))


def _conv(**override: Any) -> nir.Conv2d:
    params = {"input_shape": (8, 8), "weight": np.ones((3, 2, 3, 3)), "stride": 1, "padding": 0, "dilation": 1,
              "groups": 1, "bias": np.zeros(3)}
    params.update(override)
    return nir.Conv2d(**params)


def _conv_chain(conv: nir.Conv2d, in_shape: tuple[int, ...] = (2, 8, 8)) -> nir.NIRGraph:
    lif = nir.LIF(tau=np.array(0.01), r=np.array(1.0), v_leak=np.array(0.0), v_threshold=np.array(1.0),
                  v_reset=np.array(0.0))
    return _graph({"in": _inp(*in_shape), "conv": conv, "lif": lif, "out": _out(3, 6, 6)},
                  [("in", "conv"), ("conv", "lif"), ("lif", "out")])


def _nested(inner_first: Any, inner_edges: list[tuple[str, str]] | None = None) -> nir.NIRGraph:
    """in -> block{input -> x -> lif -> output} -> out, with `inner_first` as block.x."""
    block = _graph({"input": _inp(3), "x": inner_first, "lif": _lif(3), "output": _out(3)},
                   inner_edges or [("input", "x"), ("x", "lif"), ("lif", "output")])
    return _graph({"in": _inp(3), "block": block, "out": _out(3)}, [("in", "block"), ("block", "out")])


def _written(tmp_path: Path, graph: nir.NIRGraph, edit: Callable[[h5py.Group], None] | None = None,
             name: str = "model.nir") -> Path:
    """`graph` written by nir.write, then edited through h5py (the file's `node` group)."""
    path = tmp_path / name
    nir.write(str(path), graph)
    if edit is not None:
        with h5py.File(path, "r+") as f:
            edit(f["node"])
    return path


def _replace(group: h5py.Group, key: str, value: Any) -> None:
    del group[key]
    group[key] = value


def _raises(error: type[neurocc.NeuroccError], source: Any, *patterns: str, **kwargs: Any) -> str:
    """Load `source`; it must raise `error`, whose one-line message matches every pattern, in order."""
    with pytest.raises(neurocc.NeuroccError) as info:
        neurocc.load(source, **kwargs)
    message = str(info.value)
    assert type(info.value) is error, f"{type(info.value).__name__}: {message}"
    assert "\n" not in message and "Traceback" not in message
    assert re.search(".*".join(patterns), message), f"{patterns} not in: {message}"
    assert re.search(r"Fix: \S", message), f"no fix in: {message}"
    return message


# ---- malformed file (not HDF5, not NIR) ----------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["text", "empty", "directory", "hdf5_without_nir", "png"])
def test_malformed_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "model.nir"
    if kind == "text":
        path.write_text("snn = torch.nn.Sequential(...)\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "directory":
        path.mkdir()
        _raises(neurocc.ModelFileError, path, re.escape(str(path)), "is a directory, not a .nir file",
                "Fix: pass the .nir file itself")
        return
    elif kind == "png":
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    else:
        with h5py.File(path, "w") as f:
            f["weights"] = np.ones(3)
        _raises(neurocc.ModelFileError, path, re.escape(str(path)), "no 'node' group, so it is not a NIR file",
                "Fix: export the model with nir.write")
        return
    _raises(neurocc.ModelFileError, path, re.escape(str(path)), "cannot be read as NIR/HDF5", "truncated or not a "
            ".nir file", "Fix: re-export it")


def test_missing_file(tmp_path: Path) -> None:
    _raises(neurocc.ModelFileError, tmp_path / "typo.nir", "typo.nir: no such file", "Fix: check the path")


# ---- truncated file -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("keep", [0.01, 0.5, 0.99])
def test_truncated_file(tmp_path: Path, corpus_dir: Path, keep: float) -> None:
    data = (corpus_dir / "snntorch_rlif.nir").read_bytes()
    path = tmp_path / "cut.nir"
    path.write_bytes(data[: int(len(data) * keep)])
    _raises(neurocc.ModelFileError, path, re.escape(str(path)), "cannot be read as NIR/HDF5", "truncated",
            "Fix: re-export it")


# ---- unknown node type ----------------------------------------------------------------------------------------

def test_unknown_node_type_in_a_file(tmp_path: Path) -> None:
    path = _written(tmp_path, _good(), lambda node: _replace(node["nodes"]["neuron"], "type", "AdEx"))
    _raises(neurocc.UnsupportedNodeError, path, "node 'neuron' has type 'AdEx'", "which NIR 1.0 does not define",
            "Supported: Affine, .*LIF", "Fix: export it as one of these")


def test_unknown_node_type_in_a_subgraph(tmp_path: Path) -> None:
    path = _written(tmp_path, _nested(nir.Linear(weight=np.eye(3))),
                    lambda node: _replace(node["nodes"]["block"]["nodes"]["x"], "type", "Dropout"))
    _raises(neurocc.UnsupportedNodeError, path, "node 'block.x' has type 'Dropout'", "Fix: export it as")


def test_unmapped_module_as_none_node() -> None:
    # norse's exporter turns modules it cannot map (AvgPool2d, Flatten, LIFRecurrentCell) into None nodes.
    graph = _good()
    graph.nodes["first"] = None
    _raises(neurocc.UnsupportedNodeError, graph, "node 'first' has type 'NoneType'", "Fix: export it as")


# ---- edge to a missing node ------------------------------------------------------------------------------------

def test_edge_to_a_missing_node() -> None:
    graph = _good()
    graph.edges.append(("neuron", "readout"))
    _raises(neurocc.GraphError, graph, "edge 'neuron' -> 'readout' refers to node 'readout', which does not exist",
            "Nodes are: first, in, neuron, out", "Fix: correct the edge list")


def test_edge_from_a_missing_node_in_a_file(tmp_path: Path) -> None:
    # Fixed-length byte strings, as h5py writes a numpy 'S' array (nir writes variable-length ones): the
    # names must still read as names, not as "b'first'".
    edges = np.array([[b"in", b"first"], [b"first", b"neuron"], [b"bias", b"neuron"], [b"neuron", b"out"]])
    path = _written(tmp_path, _good(), lambda node: _replace(node, "edges", edges))
    _raises(neurocc.GraphError, path, "edge 'bias' -> 'neuron' refers to node 'bias', which does not exist",
            "Fix: correct the edge list")


def test_fixed_length_edge_names_load(tmp_path: Path) -> None:
    edges = np.array([[b"in", b"first"], [b"first", b"neuron"], [b"neuron", b"out"]])
    path = _written(tmp_path, _good(), lambda node: _replace(node, "edges", edges))
    net = neurocc.load(path)
    assert [(p.pre, p.post, p.n_synapses) for p in net.projections] == [("in", "neuron", 6)]


# ---- shape mismatch -------------------------------------------------------------------------------------------

def test_shape_mismatch_between_layers() -> None:
    graph = _chain(nir.Linear(weight=np.ones((2, 3))), _lif(2), n_in=4)
    _raises(neurocc.GraphError, graph, r"shape mismatch on edge 'in' -> 'first': 'in' outputs \[4\] \(4 values\)",
            r"'first' \(Linear\) takes 3", "Fix: make the layer sizes agree")


def test_shape_mismatch_of_neuron_parameters(tmp_path: Path) -> None:
    # nir's constructors refuse this, a file does not: 5 time constants for a layer fed 2 values.
    path = _written(tmp_path, _good(), lambda node: _replace(node["nodes"]["neuron"], "tau", np.full(5, 0.01)))
    _raises(neurocc.GraphError, path, r"shape mismatch on edge 'first' -> 'neuron': 'first' outputs \[2\]",
            r"'neuron' \(LIF\) takes 5", "Fix: make the layer sizes agree")


def test_shape_mismatch_at_the_output() -> None:
    graph = _chain(nir.Linear(weight=np.ones((2, 3))), _lif(2))
    graph.nodes["out"] = _out(7)
    _raises(neurocc.GraphError, graph, r"Output 'out' declares shape \[7\] but receives \[2\]",
            "Fix: correct the Output shape")


def test_shape_mismatch_of_conv_input_shape() -> None:
    _raises(neurocc.GraphError, _conv_chain(_conv(input_shape=(9, 9))), r"Conv2d 'conv' expects 2 channels x \[9, 9\] "
            r"= 162 inputs but receives shape \[2, 8, 8\] \(128\)", "Fix: correct input_shape")


def test_weight_of_the_wrong_rank(tmp_path: Path) -> None:
    path = _written(tmp_path, _good(), lambda node: _replace(node["nodes"]["first"], "weight", np.ones(3)))
    _raises(neurocc.ParameterError, path, r"node 'first' \(Linear\): weight must be 2-d \(out, in\), got \(3,\)",
            "Fix: re-export the layer's weight matrix")


# ---- NaN weight -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["linear", "affine_bias", "conv", "nested"])
def test_nan_weight(where: str) -> None:
    w = np.ones((2, 3))
    w[1, 2] = np.nan
    if where == "linear":
        graph, node, kind, key, count = _chain(nir.Linear(weight=w), _lif(2)), "first", "Linear", "weight", 1
    elif where == "affine_bias":
        graph = _chain(nir.Affine(weight=np.ones((2, 3)), bias=np.array([np.nan, np.nan])), _lif(2))
        node, kind, key, count = "first", "Affine", "bias", 2
    elif where == "conv":
        kernel = np.ones((3, 2, 3, 3))
        kernel[0, 0, 1, 1] = np.nan
        graph, node, kind, key, count = _conv_chain(_conv(weight=kernel)), "conv", "Conv2d", "weight", 1
    else:
        w3 = np.eye(3)
        w3[0, 0] = np.nan
        graph, node, kind, key, count = _nested(nir.Linear(weight=w3)), "block.x", "Linear", "weight", 1
    _raises(neurocc.ParameterError, graph, rf"node '{node}' \({kind}\): parameter '{key}' has {count} NaN/Inf value",
            "Fix: check the trained model")


def test_nan_weight_in_a_file(tmp_path: Path) -> None:
    w = np.ones((2, 3), dtype=np.float32)
    w[0, 0] = np.nan
    path = _written(tmp_path, _good(), lambda node: _replace(node["nodes"]["first"], "weight", w))
    _raises(neurocc.ParameterError, path, r"node 'first' \(Linear\): parameter 'weight' has 1 NaN/Inf",
            "Fix: check the trained model")


# ---- Inf parameter ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("neuron", "kind", "key"), [
    (_lif(2, v_threshold=np.array([1.0, np.inf])), "LIF", "v_threshold"),
    (_lif(2, r=np.array([-np.inf, 1.0])), "LIF", "r"),
    (_cuba(2, tau_mem=np.array([0.01, np.inf])), "CubaLIF", "tau_mem"),
    (nir.Threshold(threshold=np.array([np.inf, 0.5])), "Threshold", "threshold"),
])
def test_inf_parameter(neuron: Any, kind: str, key: str) -> None:
    _raises(neurocc.ParameterError, _chain(nir.Linear(weight=np.ones((2, 3))), neuron),
            rf"node 'neuron' \({kind}\): parameter '{key}' has 1 NaN/Inf value", "Fix: check the trained model")


def test_inf_delay() -> None:
    graph = _chain(nir.Delay(delay=np.array([0.0, np.inf, 0.0])), _lif(3), n_out=3)
    _raises(neurocc.ParameterError, graph, r"node 'first' \(Delay\): parameter 'delay' has 1 NaN/Inf", "Fix: ")


def test_delay_too_long_to_count_in_steps() -> None:
    # 1e30 s overflowed int64 into a negative delay and loaded silently.
    graph = _chain(nir.Delay(delay=np.array([1e30, 0.0, 0.0])), _lif(3), n_out=3)
    _raises(neurocc.ParameterError, graph, r"node 'first' \(Delay\): delay 1e\+30 s is 1e\+33 steps of dt=0.001 s",
            "Fix: delays are in seconds")


def test_missing_parameter(tmp_path: Path) -> None:
    # A missing weight used to be reported as "1 NaN/Inf value".
    path = _written(tmp_path, _good(), lambda node: node["nodes"]["first"].__delitem__("weight"))
    _raises(neurocc.ParameterError, path, r"node 'first' \(Linear\) is missing parameter 'weight'",
            "Fix: re-export with it")
    path = _written(tmp_path, _good(), lambda node: node["nodes"]["neuron"].__delitem__("tau"), name="no_tau.nir")
    _raises(neurocc.ParameterError, path, r"node 'neuron' \(LIF\) is missing parameter 'tau'", "Fix: re-export")


# ---- tau <= 0 ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("neuron", "kind", "key", "value"), [
    (_lif(2, tau=np.array([0.01, 0.0])), "LIF", "tau", "0"),
    (nir.LI(tau=np.array(-0.02), r=np.array(1.0), v_leak=np.array(0.0)), "LI", "tau", "-0.02"),
    (_cuba(2, tau_syn=np.array([-1e-3, 5e-3])), "CubaLIF", "tau_syn", "-0.001"),
    (nir.CubaLI(tau_syn=np.full(2, 5e-3), tau_mem=np.zeros(2), r=np.ones(2), v_leak=np.zeros(2), w_in=np.ones(2)),
     "CubaLI", "tau_mem", "0"),
])
def test_tau_not_positive(neuron: Any, kind: str, key: str, value: str) -> None:
    _raises(neurocc.ParameterError, _chain(nir.Linear(weight=np.ones((2, 3))), neuron),
            rf"node 'neuron' \({kind}\): {key} must be > 0 s, found min {value}\.",
            "Fix: time constants are positive durations in seconds")


def test_tau_not_positive_in_a_file(tmp_path: Path) -> None:
    path = _written(tmp_path, _good(), lambda node: _replace(node["nodes"]["neuron"], "tau", np.array([0.01, -1.0])))
    _raises(neurocc.ParameterError, path, r"node 'neuron' \(LIF\): tau must be > 0 s, found min -1", "Fix: ")


def test_tau_shorter_than_dt_fails_at_load() -> None:
    # docs/neuron-model.md: a decay factor outside [0, 1] fails at load (it used to pass until simulate).
    graph = _chain(nir.Linear(weight=np.ones((2, 3))), _lif(2, tau=np.array([1e-4, 0.01])))
    _raises(neurocc.ParameterError, graph, r"population 'neuron': dt=0.001 s is longer than its time constant",
            "forward Euler is unstable", "Fix: pass the exporter's convention", "a smaller dt, or discretization='exp'")
    assert neurocc.load(graph, discretization="exp").discretization == "exp"  # the fix it names works
    assert neurocc.load(graph, dt=1e-4).dt == 1e-4


# ---- a cycle with no neuron in it -------------------------------------------------------------------------------

def _loop(extra: dict[str, Any], edges: list[tuple[str, str]]) -> nir.NIRGraph:
    nodes = {"in": _inp(3), "w": nir.Linear(weight=np.eye(3)), "lif": _lif(3), "out": _out(3), **extra}
    return _graph(nodes, [("in", "w"), ("w", "lif"), ("lif", "out"), *edges])


@pytest.mark.parametrize(("graph", "path"), [
    (_loop({"s": nir.Scale(scale=np.ones(3))}, [("w", "s"), ("s", "w")]), "'w' -> 's' -> 'w'"),
    (_loop({}, [("w", "w")]), "'w' -> 'w'"),
    # A delay does not make a loop of linear maps a neuron.
    (_loop({"d": nir.Delay(delay=np.full(3, 2e-3))}, [("w", "d"), ("d", "w")]), "'w' -> 'd' -> 'w'"),
    # A loop that no neuron reads used to be dropped silently.
    (_loop({"a": nir.Linear(weight=np.eye(3)), "b": nir.Scale(scale=np.ones(3))}, [("a", "b"), ("b", "a")]),
     "'a' -> 'b' -> 'a'"),
    (_nested(nir.Linear(weight=np.eye(3)), [("input", "x"), ("x", "x"), ("x", "lif"), ("lif", "output")]),
     "'block.x' -> 'block.x'"),
], ids=["linear_scale", "self_loop", "through_delay", "unread", "nested"])
def test_cycle_without_neuron(graph: nir.NIRGraph, path: str) -> None:
    _raises(neurocc.GraphError, graph, r"cycle through '[\w.]+' has no neuron in it", re.escape(f"({path})"),
            "undefined at every step", r"Fix: put a neuron \(e.g. LIF\) in the loop")


def test_a_cycle_through_a_neuron_is_fine() -> None:
    net = neurocc.load(_loop({"rec": nir.Linear(weight=np.eye(3))}, [("lif", "rec"), ("rec", "lif")]))
    assert sorted((p.pre, p.post) for p in net.projections) == [("in", "lif"), ("lif", "lif")]


def test_good_file_loads(tmp_path: Path) -> None:
    # The edits above are the only thing wrong with these files.
    assert neurocc.load(_written(tmp_path, _good())).n_synapses == 6
