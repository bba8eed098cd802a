"""Issue 13 part 5: a network neurocc writes (`neurocc.save`) reads back into snnTorch (`import_from_nir`) and
Norse (`from_nir`) and gives neurocc's float spikes there, exactly, wherever the framework can express it.

What each importer cannot express is in docs/frameworks.md (round trip matrix): snnTorch's importer assumes
dt = 1e-4 s and one threshold per layer; Norse's ignores r on LIF and IF; neither reads delays; snnTorch's
reads recurrence only in its own exporter's nested form."""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any

import nir
import numpy as np
import pytest

import neurocc
from neurocc.compiler.frontend.torch_export import from_torch

from .test_from_torch import _need, _norse_nets, _snntorch_nets

# (network, importer): each must reproduce neurocc's spikes exactly.
MATRIX = [
    ("snntorch_lif_mlp_scalar", "snntorch"),  # dt = 1e-4, r = tau/dt: snnTorch's own reading
    ("snntorch_cubalif_mlp", "snntorch"),
    ("snntorch_cubalif_mlp", "norse"),  # Norse's CubaLIF applies w_in and r: any dt, given from_nir(dt=...)
    ("norse_lif_mlp", "norse"),  # r = 1
    ("norse_cubalif_mlp", "norse"),
    ("norse_if_mlp", "norse"),  # IF with dt·r = 1: Norse's IAFCell adds the input unscaled
    ("snntorch_conv", "snntorch"),  # Conv2d, SumPool2d prefix, Flatten: written as conv nodes, not unrolled
    ("norse_conv", "norse"),  # strided Conv2d
]


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[neurocc.Network, Path, np.ndarray]]:
    torch, snn = _need("torch"), _need("snntorch")
    _need("norse")
    import norse.torch as norse

    nets = {f"snntorch_{k}": v for k, v in _snntorch_nets(torch, snn).items()}
    nets.update({f"norse_{k}": v for k, v in _norse_nets(torch, norse).items()})
    out = {}
    root = tmp_path_factory.mktemp("roundtrip")
    for name in {n for n, _ in MATRIX}:
        module, x = nets[name]
        net = neurocc.load(from_torch(module, torch.as_tensor(x[:1])))
        out[name] = (net, neurocc.save(net, root / f"{name}.nir"), x)
    return out


def _run_imported(module: Any, x: np.ndarray, framework: str) -> np.ndarray:
    import torch

    state, out = None, []
    with torch.no_grad():
        if framework == "snntorch":
            from snntorch import utils

            utils.reset(module)
        for t in range(len(x)):
            step = torch.as_tensor(x[t:t + 1])
            if framework == "snntorch":
                o = module(step)
            else:
                o, state = module(step, state)
            # batch of 1, flattened: snnTorch's importer turns NIR's Flatten(start_dim=0), which keeps the
            # batch, into torch's Flatten(0), which flattens it away
            out.append((o[0] if isinstance(o, tuple) else o).numpy().reshape(-1))
    return np.array(out)


def _import(graph: Any, framework: str, dt: float) -> Any:
    with contextlib.redirect_stdout(io.StringIO()):  # snnTorch's importer prints progress
        if framework == "snntorch":
            from snntorch.import_nir import import_from_nir

            return import_from_nir(graph)
        import norse.torch as norse

        logging.getLogger().disabled = True  # Norse logs a warning per node whose r it ignores
        try:
            return norse.from_nir(graph, dt=dt)
        finally:
            logging.getLogger().disabled = False


@pytest.mark.parametrize(("name", "framework"), MATRIX)
def test_framework_reads_neurocc_save(saved: dict, name: str, framework: str) -> None:
    net, path, x = saved[name]
    (out,) = net.outputs.values()
    want = neurocc.simulate_float(net, x, latency="framework").spikes[out]
    graph = nir.read(path)  # with NIR's type check
    assert graph.metadata["neurocc_dt"] == net.dt
    got = _run_imported(_import(graph, framework, net.dt), x, framework).reshape(want.shape)
    assert 0 < want.sum() < want.size
    assert int((got.astype(bool) != want).sum()) == 0, f"{name} in {framework}: spikes differ"


def test_bias_rides_on_an_affine(saved: dict) -> None:
    # Frameworks read a bias on the layer's own Affine; a zero-weight Affine from the input broke Norse's
    # executor (it returned the first layer's output).
    net, path, _ = saved["norse_lif_mlp"]
    graph = nir.read(path)
    assert not [n for n in graph.nodes if n.endswith(".__bias")]
    affines = [n for n, node in graph.nodes.items() if isinstance(node, nir.Affine)]
    assert len(affines) == 2
    again = neurocc.load(path)
    for name, pop in net.populations.items():
        np.testing.assert_array_equal(pop.bias_or_zero(), again.populations[name].bias_or_zero())
