"""Each class of bad input raises its own NeuroccError subclass, and the message names the node (or
file), the problem and the fix. Nothing else escapes: no numpy, h5py or nir exception."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import nir
import numpy as np
import pytest

import neurocc


def _graph(nodes: dict, edges: list[tuple[str, str]]) -> nir.NIRGraph:
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _lif(n: int, **override: np.ndarray) -> nir.LIF:
    params = {"tau": np.full(n, 0.01), "r": np.ones(n), "v_leak": np.zeros(n), "v_threshold": np.ones(n),
              "v_reset": np.zeros(n)}
    params.update(override)
    return nir.LIF(**params)


def _inp(n: int) -> nir.Input:
    return nir.Input(input_type={"input": np.array([n])})


def _out(n: int) -> nir.Output:
    return nir.Output(output_type={"output": np.array([n])})


def _chain(weight: np.ndarray, n_in: int | None = None, **lif: np.ndarray) -> nir.NIRGraph:
    n_post, n_pre = weight.shape
    return _graph({"in": _inp(n_in or n_pre), "w": nir.Linear(weight=weight), "lif": _lif(n_post, **lif),
                   "out": _out(n_post)}, [("in", "w"), ("w", "lif"), ("lif", "out")])


@pytest.fixture
def good_file(tmp_path: Path) -> Path:
    path = tmp_path / "good.nir"
    nir.write(str(path), _chain(np.ones((2, 3))))
    return path


def test_not_a_nir_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.nir"
    path.write_text("not hdf5")
    with pytest.raises(neurocc.ModelFileError, match=r"notes.nir: cannot be read as NIR/HDF5 .*Fix: re-export"):
        neurocc.load(path)


def test_truncated_file(good_file: Path, tmp_path: Path) -> None:
    data = good_file.read_bytes()
    cut = tmp_path / "cut.nir"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(neurocc.ModelFileError, match=r"cut.nir: .*truncated.*Fix: re-export"):
        neurocc.load(cut)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(neurocc.ModelFileError, match=r"nope.nir: no such file. Fix: check the path"):
        neurocc.load(tmp_path / "nope.nir")


def test_unknown_node_type(good_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "banana.nir"
    shutil.copy(good_file, path)
    with h5py.File(path, "r+") as f:
        node = f["node"]["nodes"]["lif"]
        del node["type"]
        node["type"] = "Banana"
    with pytest.raises(neurocc.UnsupportedNodeError,
                       match=r"node 'lif' has type 'Banana', which NIR 1.0 does not define.*Fix: export it as"):
        neurocc.load(path)


def test_edge_to_missing_node() -> None:
    g = _chain(np.ones((2, 3)))
    g.edges.append(("lif", "ghost"))
    with pytest.raises(neurocc.GraphError, match=r"edge 'lif' -> 'ghost' refers to node 'ghost', which does not "
                                                 r"exist.*Fix: correct the edge list"):
        neurocc.load(g)


def test_shape_mismatch() -> None:
    with pytest.raises(neurocc.GraphError, match=r"shape mismatch on edge 'in' -> 'w': 'in' outputs \[4\].*'w' "
                                                 r"\(Linear\) takes 3. Fix: make the layer sizes agree"):
        neurocc.load(_chain(np.ones((2, 3)), n_in=4))


def test_nan_weight() -> None:
    w = np.ones((2, 3))
    w[0, 1] = np.nan
    with pytest.raises(neurocc.ParameterError, match=r"node 'w' \(Linear\): parameter 'weight' has 1 NaN/Inf "
                                                     r"value.*Fix: check the trained model"):
        neurocc.load(_chain(w))


def test_inf_parameter() -> None:
    with pytest.raises(neurocc.ParameterError, match=r"node 'lif' \(LIF\): parameter 'v_threshold' has 1 NaN/Inf"):
        neurocc.load(_chain(np.ones((2, 3)), v_threshold=np.array([1.0, np.inf])))


@pytest.mark.parametrize("tau", [0.0, -0.01])
def test_tau_not_positive(tau: float) -> None:
    with pytest.raises(neurocc.ParameterError, match=r"node 'lif' \(LIF\): tau must be > 0 s.*Fix: time constants "
                                                     r"are positive"):
        neurocc.load(_chain(np.ones((2, 3)), tau=np.array([0.01, tau])))


def test_cycle_without_neuron() -> None:
    g = _graph({"in": _inp(3), "w": nir.Linear(weight=np.ones((3, 3))), "s": nir.Scale(scale=np.ones(3)),
                "lif": _lif(3), "out": _out(3)}, [("in", "w"), ("w", "s"), ("s", "w"), ("w", "lif"), ("lif", "out")])
    with pytest.raises(neurocc.GraphError, match=r"cycle through '(w|s)' has no neuron in it.*Fix: put a neuron"):
        neurocc.load(g)
