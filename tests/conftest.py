"""Shared fixtures: the NIR corpus location and a registry of small synthetic NIR graphs.

The corpus lives in ../shared/corpus next to the repository (override with NEUROCC_CORPUS).
A missing or empty corpus is a failure, never a skip.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nir
import numpy as np
import pytest

CORPUS_DIR = Path(os.environ.get("NEUROCC_CORPUS", Path(__file__).resolve().parents[1].parent / "shared" / "corpus"))
CORPUS_FILES = sorted(CORPUS_DIR.glob("*.nir"))
_NO_CORPUS = "__no_corpus__"

# Exporter name (file prefix) -> neurocc convention.
CONVENTION_OF_PREFIX = {"snntorch": "snntorch", "norse": "norse", "sinabs": "sinabs", "rockpool": "rockpool"}


def convention_of(path: Path) -> str:
    prefix = path.stem.split("_")[0]
    assert prefix in CONVENTION_OF_PREFIX, f"{path.name}: unknown exporter prefix {prefix!r}"
    return CONVENTION_OF_PREFIX[prefix]


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    assert CORPUS_DIR.is_dir(), f"corpus not found at {CORPUS_DIR} (set NEUROCC_CORPUS)"
    assert CORPUS_FILES, f"no .nir files in {CORPUS_DIR}"
    return CORPUS_DIR


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # `corpus_path`: one test per corpus file. An empty corpus yields one failing case, not a skip.
    if "corpus_path" in metafunc.fixturenames:
        files = CORPUS_FILES or [Path(_NO_CORPUS)]
        metafunc.parametrize("corpus_path", files, ids=[f.stem for f in files])
    if "synthetic_name" in metafunc.fixturenames:
        metafunc.parametrize("synthetic_name", sorted(SYNTHETIC))


@pytest.fixture
def corpus_file(corpus_path: Path) -> Path:
    assert corpus_path.name != _NO_CORPUS, f"no .nir files in {CORPUS_DIR} (set NEUROCC_CORPUS)"
    return corpus_path


# ---- synthetic graphs ---------------------------------------------------------------------------------------

def graph(nodes: dict[str, Any], edges: list[tuple[str, str]]) -> nir.NIRGraph:
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def inp(*shape: int) -> nir.Input:
    return nir.Input(input_type={"input": np.array(shape)})


def out(*shape: int) -> nir.Output:
    return nir.Output(output_type={"output": np.array(shape)})


def raster(rng: np.random.Generator, steps: int, *shape: int, p: float = 0.3) -> np.ndarray:
    return (rng.random((steps, *shape)) < p).astype(np.float32)


def _lif(n: int, rng: np.random.Generator, thr: float = 1.0) -> nir.LIF:
    return nir.LIF(tau=rng.uniform(0.005, 0.02, n), r=rng.uniform(0.5, 2.0, n), v_leak=rng.uniform(-0.1, 0.1, n),
                   v_threshold=np.full(n, thr), v_reset=rng.uniform(-0.2, 0.0, n))


def _mlp_lif_bias() -> tuple:
    rng = np.random.default_rng(1)
    g = graph({
        "in": inp(5), "fc1": nir.Affine(weight=rng.normal(0, 2.0, (6, 5)), bias=rng.normal(0, 0.5, 6)),
        "lif": _lif(6, rng), "fc2": nir.Affine(weight=rng.normal(0, 2.0, (3, 6)), bias=rng.normal(0, 0.5, 3)),
        "li": nir.LI(tau=np.full(3, 0.01), r=np.ones(3), v_leak=np.zeros(3)), "out": out(3),
    }, [("in", "fc1"), ("fc1", "lif"), ("lif", "fc2"), ("fc2", "li"), ("li", "out")])
    return g, {"dt": 1e-3}, raster(rng, 60, 5)


def _cuba() -> tuple:
    rng = np.random.default_rng(2)
    n, m = 7, 4
    g = graph({
        "in": inp(5), "w1": nir.Linear(weight=rng.normal(0, 3.0, (n, 5))),
        "cuba": nir.CubaLIF(tau_syn=rng.uniform(0.003, 0.01, n), tau_mem=rng.uniform(0.01, 0.03, n),
                            r=rng.uniform(1, 3, n), v_leak=np.zeros(n), v_threshold=np.full(n, 0.5),
                            v_reset=np.zeros(n), w_in=rng.uniform(0.5, 2, n)),
        "w2": nir.Linear(weight=rng.normal(0, 1.0, (m, n))),
        "culi": nir.CubaLI(tau_syn=np.full(m, 0.005), tau_mem=np.full(m, 0.02), r=np.ones(m),
                           v_leak=np.full(m, 0.1), w_in=np.full(m, 1.5)),
        "out": out(m),
    }, [("in", "w1"), ("w1", "cuba"), ("cuba", "w2"), ("w2", "culi"), ("culi", "out")])
    return g, {"dt": 1e-3}, raster(rng, 60, 5)


def _if_i_threshold() -> tuple:
    rng = np.random.default_rng(3)
    g = graph({
        "in": inp(4), "a": nir.Affine(weight=rng.normal(0, 1.0, (5, 4)), bias=np.full(5, 0.1)),
        "if": nir.IF(r=np.full(5, 1000.0), v_threshold=np.full(5, 0.8), v_reset=np.zeros(5)),
        "b": nir.Linear(weight=rng.normal(0, 1.0, (3, 5))), "thr": nir.Threshold(threshold=np.full(3, 0.2)),
        "c": nir.Scale(scale=rng.normal(0, 1.0, 5)), "int": nir.I(r=np.full(5, 500.0)),
        "out_thr": out(3), "out_int": out(5),
    }, [("in", "a"), ("a", "if"), ("if", "b"), ("b", "thr"), ("thr", "out_thr"), ("if", "c"), ("c", "int"),
        ("int", "out_int")])
    return g, {"dt": 1e-3}, raster(rng, 50, 4)


def _conv_pool() -> tuple:
    rng = np.random.default_rng(4)
    # A single-channel image input: its leading 1 is a real axis and must survive save/load.
    g = graph({
        "in": inp(1, 8, 8),
        "conv": nir.Conv2d(input_shape=(8, 8), weight=rng.normal(0, 1.0, (4, 1, 3, 3)), stride=(1, 2),
                           padding=(1, 0), dilation=1, groups=1, bias=rng.normal(0, 0.1, 4)),
        "if1": nir.IF(r=np.array(1000.0), v_threshold=np.array(0.7), v_reset=np.array(0.0)),
        "gconv": nir.Conv2d(input_shape=(8, 3), weight=rng.normal(0, 1.0, (4, 2, 3, 2)), stride=1,
                            padding=(2, 1), dilation=(2, 1), groups=2, bias=np.zeros(4)),
        "if2": nir.IF(r=np.array(1000.0), v_threshold=np.array(0.7), v_reset=np.array(0.0)),
        "sum": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "avg": nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([1, 1]), padding=np.array([1, 1])),
        "flat": nir.Flatten(start_dim=0, end_dim=-1, input_type=None),
        "fc": nir.Affine(weight=rng.normal(0, 1.0, (5, 4 * 5 * 3)), bias=rng.normal(0, 0.1, 5)),
        "lif": _lif(5, rng, thr=0.5), "out": out(5),
    }, [("in", "conv"), ("conv", "if1"), ("if1", "gconv"), ("gconv", "if2"), ("if2", "sum"), ("sum", "avg"),
        ("avg", "flat"), ("flat", "fc"), ("fc", "lif"), ("lif", "out")])
    return g, {"dt": 1e-3}, raster(rng, 20, 1, 8, 8, p=0.4)


def _conv1d() -> tuple:
    rng = np.random.default_rng(5)
    g = graph({
        "in": inp(2, 12),
        "conv": nir.Conv1d(input_shape=12, weight=rng.normal(0, 1.5, (4, 1, 3)), stride=2, padding=1, dilation=2,
                           groups=2, bias=rng.normal(0, 0.1, 4)),
        "lif": nir.LIF(tau=np.array(0.01), r=np.array(1.0), v_leak=np.array(0.0), v_threshold=np.array(0.3),
                       v_reset=np.array(0.0)),
        "out": out(4, 5),
    }, [("in", "conv"), ("conv", "lif"), ("lif", "out")])
    return g, {"dt": 1e-3}, raster(rng, 40, 2, 12)


def _delays() -> tuple:
    rng = np.random.default_rng(6)
    dt = 1e-3
    mask = rng.integers(0, 4, (6, 4))
    nodes: dict[str, Any] = {"in": inp(4)}
    edges: list[tuple[str, str]] = []
    for k, steps in enumerate((0, 2, 5)):
        nodes[f"w{k}"] = nir.Linear(weight=rng.normal(0, 2.0, (6, 4)) * (mask == k))
        if steps:
            nodes[f"d{k}"] = nir.Delay(delay=np.full(4, steps * dt))
            edges += [("in", f"d{k}"), (f"d{k}", f"w{k}")]
        else:
            edges.append(("in", f"w{k}"))
        edges.append((f"w{k}", "lif"))
    # One branch with a per-channel delay vector, overlapping the others (a second projection).
    nodes["dv"] = nir.Delay(delay=np.array([1, 3, 0, 7]) * dt)
    nodes["wv"] = nir.Linear(weight=rng.normal(0, 2.0, (6, 4)))
    edges += [("in", "dv"), ("dv", "wv"), ("wv", "lif")]
    nodes["lif"] = _lif(6, rng, thr=0.5)
    nodes["out"] = out(6)
    edges.append(("lif", "out"))
    return graph(nodes, edges), {"dt": dt}, raster(rng, 50, 4)


def _recurrent() -> tuple:
    rng = np.random.default_rng(7)
    g = graph({
        "in": inp(5), "w_in": nir.Linear(weight=rng.normal(1.0, 3.0, (8, 5))), "lif": _lif(8, rng, thr=0.2),
        "w_rec": nir.Affine(weight=rng.normal(0, 1.0, (8, 8)), bias=rng.normal(0, 0.2, 8)),
        "d_rec": nir.Delay(delay=np.full(8, 3e-3)), "w_rec2": nir.Linear(weight=rng.normal(0, 1.0, (8, 8))),
        "w_out": nir.Linear(weight=rng.normal(0, 1.0, (3, 8))),
        "li": nir.LI(tau=np.full(3, 0.02), r=np.ones(3), v_leak=np.zeros(3)), "out": out(3),
    }, [("in", "w_in"), ("w_in", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "d_rec"), ("d_rec", "w_rec2"),
        ("w_rec2", "lif"), ("lif", "w_out"), ("w_out", "li"), ("li", "out")])
    return g, {"dt": 1e-3}, raster(rng, 60, 5)


def _nested() -> tuple:
    rng = np.random.default_rng(8)
    sub = graph({
        "input": inp(6), "lin": nir.Linear(weight=rng.normal(0, 2.0, (6, 6))), "lif": _lif(6, rng, thr=0.5),
        "rec": nir.Linear(weight=rng.normal(0, 1.0, (6, 6))), "output": out(6),
    }, [("input", "lin"), ("lin", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")])
    g = graph({
        "in": inp(3), "fc": nir.Linear(weight=rng.normal(0, 2.0, (6, 3))), "block": sub,
        "ro": nir.Linear(weight=rng.normal(0, 1.0, (2, 6))),
        "li": nir.LI(tau=np.full(2, 0.01), r=np.ones(2), v_leak=np.zeros(2)), "out": out(2),
    }, [("in", "fc"), ("fc", "block"), ("block", "ro"), ("ro", "li"), ("li", "out")])
    return g, {"dt": 1e-3}, raster(rng, 60, 3)


def _exp_sinabs_style() -> tuple:
    rng = np.random.default_rng(9)
    g = graph({
        "in": inp(4), "fc": nir.Affine(weight=rng.normal(0, 1.0, (5, 4)), bias=np.zeros(5)),
        "lif": nir.LIF(tau=rng.uniform(2, 10, 5), r=np.ones(5), v_leak=np.zeros(5), v_threshold=np.full(5, 0.5),
                       v_reset=np.zeros(5)),
        "out": out(5),
    }, [("in", "fc"), ("fc", "lif"), ("lif", "out")])
    return g, {"dt": 1.0, "discretization": "exp"}, raster(rng, 50, 4)


SYNTHETIC: dict[str, Callable[[], tuple]] = {
    "mlp_lif_bias": _mlp_lif_bias,
    "cuba": _cuba,
    "if_i_threshold": _if_i_threshold,
    "conv_pool": _conv_pool,
    "conv1d": _conv1d,
    "delays": _delays,
    "recurrent": _recurrent,
    "nested": _nested,
    "exp_sinabs_style": _exp_sinabs_style,
}


@pytest.fixture
def synthetic(synthetic_name: str) -> tuple[nir.NIRGraph, dict[str, Any], np.ndarray]:
    """(graph, load kwargs, input raster) of one synthetic case."""
    return SYNTHETIC[synthetic_name]()


def target_toml_with(shipped: str, path: Path, **changes: int) -> Path:
    """A copy of a shipped target's TOML at `path` with some [format] keys changed (a user's own target)."""
    from neurocc.compiler.targets.target import TARGET_DIR

    text = (TARGET_DIR / f"{shipped}.toml").read_text()
    for key, value in changes.items():
        text, n = re.subn(rf"^{key} = \d+", f"{key} = {value}", text, flags=re.M)
        assert n == 1, key
    path.write_text(text)
    return path
