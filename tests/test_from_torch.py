"""Issue 13 part 1: snnTorch and Norse modules -> from_torch -> neurocc.load (no flags) -> simulate_float give the
framework's own output spikes on a seeded raster, exactly. The corpus's shapes (LIF and CubaLIF MLPs, recurrent,
conv) are built as modules with seeded weights; snnTorch's scalar beta and Norse's 0-d parameters included."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nir
import numpy as np
import pytest

import neurocc
from neurocc.compiler.frontend.torch_export import SNNTORCH_DT, from_torch

T = 40


def _need(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        pytest.fail(f"{module} is not installed: make test installs neurocc[torch]")


@pytest.fixture(scope="module")
def torch() -> Any:
    return _need("torch")


@pytest.fixture(scope="module")
def snn() -> Any:
    return _need("snntorch")


@pytest.fixture(scope="module")
def norse() -> Any:
    _need("norse")
    import norse.torch

    return norse.torch


def _raster(shape: tuple[int, ...], p: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random((T, *shape)) < p).astype(np.float32)


def run_snntorch(net: Any, x: np.ndarray) -> np.ndarray:
    import torch
    from snntorch import utils

    utils.reset(net)
    out = []
    with torch.no_grad():
        for t in range(len(x)):
            o = net(torch.as_tensor(x[t:t + 1]))
            out.append((o[0] if isinstance(o, tuple) else o)[0].numpy())
    return np.array(out)


def run_norse(net: Any, x: np.ndarray) -> np.ndarray:
    import torch

    state, out = None, []
    with torch.no_grad():
        for t in range(len(x)):
            o, state = net(torch.as_tensor(x[t:t + 1]), state)
            out.append(o[0].numpy())
    return np.array(out)


def _scaled(layer: Any, gain: float) -> Any:
    import torch

    with torch.no_grad():
        layer.weight.mul_(gain)
    return layer


def _snntorch_nets(torch: Any, snn: Any) -> dict[str, tuple[Any, np.ndarray]]:
    nn = torch.nn
    leaky = lambda **k: snn.Leaky(init_hidden=True, reset_mechanism="zero", **k)  # noqa: E731
    syn = lambda **k: snn.Synaptic(init_hidden=True, reset_mechanism="zero", reset_delay=False, **k)  # noqa: E731
    mlp_in = _raster((20,), 0.3, 1234)
    nets: dict[str, tuple[Any, np.ndarray]] = {}
    torch.manual_seed(1)
    # Scalar beta and threshold, snnTorch's usual style (its own export fails on it); default reset_delay.
    nets["lif_mlp_scalar"] = (nn.Sequential(_scaled(nn.Linear(20, 16), 3), leaky(beta=0.9),
                                            _scaled(nn.Linear(16, 8), 3), leaky(beta=0.8, threshold=0.5,
                                                                                output=True)), mlp_in)
    torch.manual_seed(2)
    nets["lif_mlp_vector"] = (nn.Sequential(
        _scaled(nn.Linear(20, 16), 3), leaky(beta=torch.rand(16) * 0.5 + 0.45, reset_delay=False),
        _scaled(nn.Linear(16, 8), 3), leaky(beta=0.8, threshold=torch.rand(8) + 0.5, reset_delay=False,
                                            output=True)), mlp_in)
    torch.manual_seed(3)
    nets["cubalif_mlp"] = (nn.Sequential(_scaled(nn.Linear(20, 16), 3), syn(alpha=0.7, beta=0.9),
                                         _scaled(nn.Linear(16, 8), 3), syn(alpha=0.5, beta=0.8, output=True)),
                           mlp_in)
    torch.manual_seed(4)
    nets["rlif"] = (nn.Sequential(
        _scaled(nn.Linear(20, 16), 3),
        snn.RLeaky(beta=0.9, linear_features=16, init_hidden=True, reset_mechanism="zero", reset_delay=False),
        _scaled(nn.Linear(16, 8), 3), leaky(beta=0.8, output=True)), mlp_in)
    torch.manual_seed(5)
    nets["conv"] = (nn.Sequential(
        _scaled(nn.Conv2d(2, 4, 3, padding=1), 6), leaky(beta=0.9), nn.AvgPool2d(2),
        _scaled(nn.Conv2d(4, 8, 3, padding=1), 8), leaky(beta=0.9), nn.AvgPool2d(2), nn.Flatten(),
        _scaled(nn.Linear(72, 10), 8), leaky(beta=0.8, output=True)), _raster((2, 12, 12), 0.3, 1235))
    return nets


def _norse_nets(torch: Any, norse: Any) -> dict[str, tuple[Any, np.ndarray]]:
    nn = torch.nn
    mlp_in = _raster((20,), 0.3, 1234)
    nets: dict[str, tuple[Any, np.ndarray]] = {}
    torch.manual_seed(11)
    # 0-d parameters (a scalar tau_mem_inv), which norse's exporter writes as 0-d datasets.
    nets["lif_mlp"] = (norse.SequentialState(
        _scaled(nn.Linear(20, 16), 30), norse.LIFBoxCell(),
        _scaled(nn.Linear(16, 8), 30), norse.LIFBoxCell(norse.LIFBoxParameters(tau_mem_inv=torch.tensor(50.0)))),
        mlp_in)
    torch.manual_seed(12)
    nets["cubalif_mlp"] = (norse.SequentialState(
        _scaled(nn.Linear(20, 16), 10), norse.LIFCell(),
        _scaled(nn.Linear(16, 8), 10), norse.LIFCell(norse.LIFParameters(tau_syn_inv=torch.tensor(100.0),
                                                                          tau_mem_inv=torch.tensor(50.0)))),
        mlp_in)
    torch.manual_seed(13)
    # Norse exports neither pooling nor Flatten: a strided conv stack.
    nets["conv"] = (norse.SequentialState(
        _scaled(nn.Conv2d(2, 4, 3, stride=2, padding=1), 20), norse.LIFBoxCell(),
        _scaled(nn.Conv2d(4, 4, 3, stride=2, padding=1), 20), norse.LIFBoxCell()),
        _raster((2, 12, 12), 0.3, 1235))
    torch.manual_seed(14)
    nets["if_mlp"] = (norse.SequentialState(_scaled(nn.Linear(20, 16), 2), norse.IAFCell(),
                                            _scaled(nn.Linear(16, 8), 2), norse.IAFCell()), mlp_in)
    return nets


@pytest.fixture(scope="module")
def cases(torch: Any, snn: Any, norse: Any) -> dict[str, tuple[Any, np.ndarray, Callable]]:
    out: dict[str, tuple[Any, np.ndarray, Callable]] = {}
    for name, (net, x) in _snntorch_nets(torch, snn).items():
        out[f"snntorch_{name}"] = (net, x, run_snntorch)
    for name, (net, x) in _norse_nets(torch, norse).items():
        out[f"norse_{name}"] = (net, x, run_norse)
    return out


CASES = [f"snntorch_{n}" for n in ("lif_mlp_scalar", "lif_mlp_vector", "cubalif_mlp", "rlif", "conv")] + \
        [f"norse_{n}" for n in ("lif_mlp", "cubalif_mlp", "conv", "if_mlp")]


def _strict_load(source: Any) -> neurocc.Network:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no dt warning, no fix-up warning: the graph is plain NIR
        return neurocc.load(source)


@pytest.mark.parametrize("case", CASES)
def test_framework_spikes_exactly(cases: dict, case: str) -> None:
    import torch

    net, x, run = cases[case]
    ref = run(net, x)
    graph = from_torch(net, torch.as_tensor(x[:1]))
    model = _strict_load(graph)
    assert model.dt == (SNNTORCH_DT if case.startswith("snntorch") else 1e-3)
    res = neurocc.simulate_float(model, x, latency="framework")
    (out,) = model.outputs.values()
    got = res.spikes[out].reshape(ref.shape)
    assert ref.sum() > 0 and ref.sum() < ref.size, f"{case}: the reference must spike, and not everywhere"
    # Measured exact on every case (float32 framework vs float64 neurocc: no spike is within rounding of thr).
    assert int((got != ref.astype(bool)).sum()) == 0, f"{case}: {int((got != ref).sum())} spike cells differ"
    # The run leaves the module as it came: the framework gives the same spikes again.
    np.testing.assert_array_equal(run(net, x), ref)


def test_metadata_and_file_load_with_no_flags(cases: dict, tmp_path: Path) -> None:
    import torch

    for case, fw, dt in (("snntorch_rlif", "snntorch", SNNTORCH_DT), ("norse_conv", "norse", 1e-3)):
        net, x, run = cases[case]
        graph = from_torch(net, torch.as_tensor(x[:1]), framework=fw)
        meta = graph.metadata
        assert meta["neurocc_dt"] == dt and meta["neurocc_discretization"] == "euler"
        assert meta["neurocc_framework"] == fw and meta["neurocc_convention"] == fw
        assert meta["neurocc_framework_version"] == __import__(fw).__version__
        path = tmp_path / f"{case}.nir"
        nir.write(path, graph)
        model = _strict_load(path)
        assert model.dt == dt and model.discretization == "euler"
        assert "recorded" in model.dt_source and fw in model.dt_source
        (out,) = model.outputs.values()
        got = neurocc.simulate_float(model, x).spikes[out].reshape(-1, model.populations[out].size)
        np.testing.assert_array_equal(got, run(net, x).reshape(len(x), -1).astype(bool))


def test_norse_taus_are_the_true_ones(cases: dict) -> None:
    import torch

    net, x, _ = cases["norse_cubalif_mlp"]
    graph = from_torch(net, torch.as_tensor(x[:1]))
    node = graph.nodes["3"]  # LIFCell(tau_syn_inv=100, tau_mem_inv=50): 10 ms and 20 ms, not dt times them
    np.testing.assert_allclose(node.tau_syn, np.full(8, 0.01), rtol=1e-6)
    np.testing.assert_allclose(node.tau_mem, np.full(8, 0.02), rtol=1e-6)
    np.testing.assert_allclose(node.w_in, np.full(8, 10.0), rtol=1e-6)  # tau_syn / dt: input jumps into i
    assert graph.nodes["input"].input_type["input"].tolist() == [20]  # no batch axis
    assert graph.nodes["output"].output_type["output"].tolist() == [8]


def test_scalar_beta_module_is_not_modified(cases: dict) -> None:
    import torch

    net, x, _ = cases["snntorch_lif_mlp_scalar"]
    before = net[1].beta.clone()
    graph = from_torch(net, torch.as_tensor(x[:1]))
    assert net[1].beta.shape == before.shape == torch.Size([])
    assert graph.nodes["1"].tau.shape == (16,) and graph.nodes["3"].v_threshold.shape == (8,)
    np.testing.assert_allclose(graph.nodes["3"].v_threshold, 0.5)


def test_unsupported_layers_and_modes_are_named(torch: Any, snn: Any, norse: Any) -> None:
    nn = torch.nn
    x = torch.zeros(1, 20)
    with pytest.raises(neurocc.UnsupportedNodeError, match=r"'1'.*ReLU"):
        from_torch(nn.Sequential(nn.Linear(20, 4), nn.ReLU(), snn.Leaky(beta=0.9, init_hidden=True,
                                                                          reset_mechanism="zero")), x)
    with pytest.raises(neurocc.UnsupportedNodeError, match=r"'1' \(Leaky\).*subtract.*reset_mechanism='zero'"):
        from_torch(nn.Sequential(nn.Linear(20, 4), snn.Leaky(beta=0.9, init_hidden=True)), x)
    with pytest.raises(neurocc.UnsupportedNodeError, match=r"'1' \(Synaptic\).*reset_delay=False"):
        from_torch(nn.Sequential(nn.Linear(20, 4), snn.Synaptic(alpha=0.5, beta=0.9, init_hidden=True,
                                                                reset_mechanism="zero")), x)
    with pytest.raises(neurocc.UnsupportedNodeError, match=r"Dropout"):
        from_torch(norse.SequentialState(nn.Linear(20, 4), nn.Dropout(), norse.LIFBoxCell()), x)
    with pytest.raises(neurocc.UnsupportedNodeError, match=r"no snnTorch or Norse layer"):
        from_torch(nn.Sequential(nn.Linear(20, 4)), x)
    with pytest.raises(neurocc.UnsupportedNodeError, match=r"sinabs.*nir<=1.0.4"):
        from_torch(nn.Sequential(nn.Linear(20, 4)), x, framework="sinabs")
    with pytest.raises(neurocc.InputError, match=r"batch axis"):
        from_torch(nn.Sequential(nn.Linear(20, 4), norse.LIFBoxCell()), torch.zeros(20))


def test_missing_framework_names_the_extra(torch: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "snntorch", None)  # import snntorch now raises ImportError
    with pytest.raises(neurocc.InputError, match=r"pip install neurocc\[torch\]"):
        from_torch(torch.nn.Sequential(torch.nn.Linear(2, 2)), torch.zeros(1, 2), framework="snntorch")


def test_cli_exports_an_entry_point(torch: Any, snn: Any, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from neurocc.cli import main

    (tmp_path / "mynets.py").write_text(
        "import torch, snntorch as snn\n"
        "def build():\n"
        "    torch.manual_seed(0)\n"
        "    return torch.nn.Sequential(torch.nn.Linear(6, 4), snn.Leaky(beta=0.8, init_hidden=True,\n"
        "                                                       reset_mechanism='zero'))\n")
    out = tmp_path / "net.nir"
    assert main(["from-torch", f"{tmp_path / 'mynets.py'}:build", "--sample", "6", "-o", str(out)]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", neurocc.NeuroccWarning)  # dt recorded: loads with no flags
        net = neurocc.load(out)
    assert net.dt == SNNTORCH_DT and nir.read(out).metadata["neurocc_framework"] == "snntorch"
    assert main(["inspect", str(out)]) == 0
    assert "recorded" in capsys.readouterr().out
    # A bad entry point, a missing factory and a bad sample are named errors (exit 2), and write nothing.
    for argv in (["nope", "--sample", "6"], [f"{tmp_path / 'mynets.py'}:missing", "--sample", "6"],
                 [f"{tmp_path / 'mynets.py'}:build", "--sample", "six"]):
        assert main(["from-torch", *argv, "-o", str(tmp_path / "bad.nir")]) == 2
    assert not (tmp_path / "bad.nir").exists()
    err = capsys.readouterr().err
    assert "'module:attr'" in err and "no attribute 'missing'" in err and "neither an input shape" in err
