"""ANN -> SNN conversion (compiler/frontend/convert.py): folding, the two readers, the committed files, errors.

Fast: no training (the committed .onnx/.nir come from scripts/train_digits_ann.py), compile only (no executor
run). Accuracy on the committed data is tests/test_accuracy.py's.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

import neurocc
from neurocc.compiler.errors import (
    CalibrationError,
    ConversionError,
    InputError,
    NonFiniteError,
    UnsupportedLayerError,
    UnsupportedNodeError,
)
from neurocc.compiler.frontend.ann import fold_batchnorm, forward, layers_of_module
from neurocc.compiler.frontend.convert import convert
from neurocc.compiler.frontend.onnx_reader import read_onnx
from neurocc.compiler.frontend.writer import write_graph

DATA = Path(__file__).parent / "data" / "digits"
TARGETS = ("loihi1", "loihi2", "spinnaker1", "spinnaker2", "stm32f405", "nrf52840", "stm32h743")
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _need(module: str):
    try:
        return __import__(module)
    except ImportError:
        if CI:
            raise
        pytest.fail(f"{module} is not installed: make test installs neurocc[torch,onnx]")


@pytest.fixture(scope="module")
def torch():
    return _need("torch")


@pytest.fixture(scope="module")
def calib() -> np.ndarray:
    return np.load(DATA / "calibration.npz")["x"][:64]


@pytest.fixture(scope="module")
def small_net(torch):
    """A CNN with both BatchNorms in training-like (non-trivial) statistics, eval mode."""
    nn = torch.nn
    torch.manual_seed(1)
    m = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                      nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10))
    with torch.no_grad():
        for bn in (m[1], m[6]):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
    return m.eval()


def _export(torch, module, path: Path, shape=(1, 1, 8, 8)) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, torch.zeros(shape), str(path), dynamo=False)
    return path


def test_batchnorm_folding_equals_unfolded_ann(torch, small_net, calib):
    layers = layers_of_module(small_net)
    folded = fold_batchnorm(layers)
    assert sum(type(layer).__name__ == "BatchNorm" for layer in layers) == 2
    assert not any(type(layer).__name__ == "BatchNorm" for layer in folded)
    with torch.no_grad():
        ref = small_net(torch.tensor(calib, dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(forward(layers, calib), ref, atol=1e-5)
    np.testing.assert_allclose(forward(folded, calib), forward(layers, calib), atol=1e-10)


def test_onnx_and_torch_paths_give_the_same_nir(torch, small_net, calib, tmp_path):
    _need("onnx")
    from_torch = convert(small_net, calib, threshold=1.0)
    from_onnx = convert(_export(torch, small_net, tmp_path / "m.onnx"), calib, threshold=1.0)
    assert from_torch.metadata["neurocc_converted_from"] == "torch"
    assert from_onnx.metadata["neurocc_converted_from"] == "onnx"
    assert set(from_torch.nodes) == set(from_onnx.nodes)
    weighted = [k for k, n in from_torch.nodes.items() if hasattr(n, "weight")]
    assert len(weighted) == 3
    for k in weighted:  # the exporter folds the conv's BatchNorm in float32
        np.testing.assert_allclose(from_onnx.nodes[k].weight, from_torch.nodes[k].weight, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(from_onnx.nodes[k].bias, from_torch.nodes[k].bias, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_committed_snn_reads_back_with_no_flags_and_no_warning(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net = neurocc.load(DATA / f"snn_from_ann_{name}.nir")
    assert net.dt == pytest.approx(1e-3) and net.discretization == "euler"
    assert "recorded" in net.dt_source
    assert all(p.kind == "IF" for n, p in net.populations.items() if n not in net.inputs)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_committed_onnx_reproduces_committed_nir(name):
    _need("onnx")
    import nir

    stored = nir.read(str(DATA / f"snn_from_ann_{name}.nir"))
    meta = stored.metadata
    again = convert(DATA / f"ann_{name}.onnx", DATA / "calibration.npz", percentile=float(meta["neurocc_percentile"]),
                    steps=int(meta["neurocc_steps"]))
    assert set(again.nodes) == set(stored.nodes)
    for k, node in again.nodes.items():
        for field in ("weight", "bias", "v_threshold", "r", "v_reset"):
            if hasattr(node, field):
                np.testing.assert_array_equal(np.asarray(getattr(stored.nodes[k], field)), getattr(node, field))
    np.testing.assert_array_equal(np.asarray(meta["neurocc_thresholds"]), again.metadata["neurocc_thresholds"])


@pytest.fixture(scope="module")
def committed_nets():
    return {name: neurocc.load(DATA / f"snn_from_ann_{name}.nir") for name in ("mlp", "cnn")}


@pytest.mark.parametrize("target", TARGETS)
def test_converted_nets_compile_for_every_target(committed_nets, target):
    for net in committed_nets.values():
        mapping = neurocc.compile(net, target)
        assert mapping is not None


def test_written_file_roundtrips(small_net, calib, tmp_path):
    graph = convert(small_net, calib, steps=16)
    path = write_graph(graph, tmp_path / "out.nir")
    net = neurocc.load(path)
    assert set(net.populations) == {"input", "l0_if", "l1_if", "l2_if"}
    assert net.populations["l0_if"].shape == (4, 8, 8)
    assert not list(tmp_path.glob("*.tmp"))


# ---- named errors --------------------------------------------------------------------------------

def _onnx_graph(tmp_path: Path, op: str) -> Path:
    onnx = _need("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 1, 3, 3), np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv0", pads=[1, 1, 1, 1])]
    if op == "MaxPool":
        nodes.append(helper.make_node("MaxPool", ["c"], ["y"], name="pool_max", kernel_shape=[2, 2], strides=[2, 2]))
        out_shape = [1, 4, 4, 4]
    else:
        nodes.append(helper.make_node(op, ["c"], ["y"], name="act_sigmoid"))
        out_shape = [1, 4, 8, 8]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], [w])
    path = tmp_path / f"{op}.onnx"
    onnx.save(helper.make_model(graph), str(path))
    return path


def _overflowing_onnx(tmp_path: Path) -> Path:
    """Finite float64 weights (1e200) whose second layer's activations overflow to Inf."""
    onnx = _need("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w1 = numpy_helper.from_array(np.full((64, 8), 1e200), "w1")
    w2 = numpy_helper.from_array(np.full((8, 10), 1e200), "w2")
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc0"), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["y"], name="fc_overflow")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [1, 10])], [w1, w2])
    path = tmp_path / "overflow.onnx"
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_unsupported_onnx_op_is_named(tmp_path, calib):
    with pytest.raises(UnsupportedLayerError) as err:
        convert(_onnx_graph(tmp_path, "Sigmoid"), calib)
    msg = str(err.value)
    assert "act_sigmoid" in msg and "'Sigmoid'" in msg and "Gemm" in msg and "AveragePool" in msg and "Fix:" in msg
    assert isinstance(err.value, UnsupportedNodeError) and isinstance(err.value, ConversionError)


def test_onnx_maxpool_says_use_avgpool(tmp_path, calib):
    with pytest.raises(UnsupportedLayerError, match=r"pool_max.*MaxPool.*AvgPool2d"):
        read_onnx(_onnx_graph(tmp_path, "MaxPool"))


def test_unsupported_torch_layer_is_named(torch, calib):
    nn = torch.nn
    m = nn.Sequential(nn.Flatten(), nn.Sequential(nn.Linear(64, 8), nn.Tanh()), nn.Linear(8, 10))
    with pytest.raises(UnsupportedLayerError, match=r"'1\.1' \(Tanh\).*Fix:"):
        convert(m, calib.reshape(len(calib), -1))
    with pytest.raises(UnsupportedLayerError, match=r"'1' \(MaxPool2d\).*AvgPool"):
        layers_of_module(nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2)))


def test_missing_or_empty_calibration_set(small_net, tmp_path):
    with pytest.raises(CalibrationError, match="needs a calibration set"):
        convert(small_net, None)
    with pytest.raises(CalibrationError, match="no samples"):
        convert(small_net, np.zeros((0, 1, 8, 8)))
    with pytest.raises(CalibrationError, match="does not exist"):
        convert(small_net, tmp_path / "missing.npz")
    with pytest.raises(CalibrationError, match=r"\[0, 1\]"):
        convert(small_net, np.full((4, 1, 8, 8), 3.0))
    assert issubclass(CalibrationError, InputError)


def test_nan_weights_and_activations_name_the_layer(torch, small_net, calib, tmp_path):
    import copy

    bad = copy.deepcopy(small_net)
    with torch.no_grad():
        bad[5].weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match=r"layer '5' \(Dense\): weight holds NaN"):
        convert(bad, calib)
    with pytest.raises(NonFiniteError, match=r"layer 'fc_overflow' \(Dense\) gives NaN/Inf activations"):
        convert(_overflowing_onnx(tmp_path), calib.reshape(len(calib), -1))
    with pytest.raises(NonFiniteError, match="calibration set holds NaN"):
        convert(small_net, np.full((2, 1, 8, 8), np.nan))
