"""Read an ONNX ReLU network into `ann.Layer`s with the reference `onnx` package: parsed, never executed.

Only a single-input sequential chain converts. Constants (initializers, Constant nodes, Identity of a
constant, as torch.onnx.export writes them) are resolved by name; every other node must take the chain's
current tensor as its data input.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConversionError, InputError, ModelFileError, UnsupportedLayerError
from .ann import MAXPOOL_FIX, SUPPORTED_ONNX, AvgPool, BatchNorm, Conv, Dense, Flatten, Layer, ReLU

_PASS_THROUGH = {"Identity", "Dropout"}
_MAXPOOLS = {"MaxPool", "GlobalMaxPool", "MaxRoiPool", "MaxUnpool", "LpPool"}


def read_onnx(path: str | Path) -> tuple[list[Layer], tuple[int, ...] | None]:
    """The chain of layers and the declared input shape (no batch axis; None when not static)."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise InputError("reading an ONNX model needs the onnx package. Fix: pip install neurocc[onnx]") from None
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such ONNX file. Fix: check the path")
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise ModelFileError(f"{path}: cannot be parsed as ONNX ({type(exc).__name__}: {exc}). "
                             "Fix: re-export the model with torch.onnx.export") from None
    graph = model.graph
    consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t).astype(np.float64)
                                     if numpy_helper.to_array(t).dtype.kind == "f" else numpy_helper.to_array(t)
                                     for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in consts]
    if len(inputs) != 1:
        raise UnsupportedLayerError(f"{path}: the ONNX graph has {len(inputs)} data inputs "
                                    f"({[i.name for i in inputs]}); convert takes one. "
                                    "Fix: export a single-input model")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    in_shape = tuple(int(d) for d in dims[1:]) if dims and all(d for d in dims[1:]) else None
    current = inputs[0].name
    layers: list[Layer] = []
    for index, node in enumerate(graph.node):
        label = node.name or f"#{index}"
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        op = node.op_type
        if op == "Constant":
            consts[node.output[0]] = _constant(attrs, label)
            continue
        if op in _PASS_THROUGH and node.input[0] in consts:
            consts[node.output[0]] = consts[node.input[0]]
            continue
        if op in _MAXPOOLS:
            raise UnsupportedLayerError(f"{path}: ONNX node {label!r} (op_type {op}): {MAXPOOL_FIX}")
        if op not in _HANDLERS:
            raise UnsupportedLayerError(
                f"{path}: ONNX node {label!r} has op_type {op!r}, outside the supported set "
                f"({', '.join(SUPPORTED_ONNX)}). Fix: export the network with only these layers")
        data = [i for i in node.input if i and i not in consts]
        if data != [current] or node.input[0] != current:
            raise UnsupportedLayerError(
                f"{path}: ONNX node {label!r} ({op}) does not continue one sequential chain (inputs "
                f"{list(node.input)}; branches, skips and adds do not convert). Fix: convert a plain chain")
        operands = [consts.get(i) for i in node.input[1:]]
        _HANDLERS[op](layers, label, attrs, operands)
        current = node.output[0]
    if [o.name for o in graph.output] != [current]:
        raise UnsupportedLayerError(f"{path}: the ONNX graph's output {[o.name for o in graph.output]} is not the "
                                    f"end of its layer chain ({current!r}). Fix: export a single-output chain")
    return layers, in_shape


def _constant(attrs: dict[str, Any], label: str) -> np.ndarray:
    from onnx import numpy_helper

    if "value" in attrs:
        arr = numpy_helper.to_array(attrs["value"])
    elif "value_float" in attrs or "value_int" in attrs:
        arr = np.asarray(attrs.get("value_float", attrs.get("value_int")))
    elif "value_floats" in attrs or "value_ints" in attrs:
        arr = np.asarray(attrs.get("value_floats", attrs.get("value_ints")))
    else:
        raise UnsupportedLayerError(f"ONNX Constant {label!r} carries no numeric value. Fix: re-export the model")
    return arr.astype(np.float64) if arr.dtype.kind == "f" else arr


def _need(operands: list[np.ndarray | None], k: int, label: str, op: str, what: str) -> np.ndarray:
    if len(operands) <= k or operands[k] is None:
        raise UnsupportedLayerError(f"ONNX node {label!r} ({op}): its {what} is not a constant (an initializer). "
                                    "Fix: export with constant weights (do_constant_folding=True)")
    return np.asarray(operands[k])


def _gemm(layers: list[Layer], label: str, attrs: dict[str, Any], operands: list[Any]) -> None:
    w = _need(operands, 0, label, "Gemm", "B (weight)")
    if attrs.get("transA", 0):
        raise UnsupportedLayerError(f"ONNX node {label!r} (Gemm) has transA=1. Fix: export a plain Linear layer")
    w = w if attrs.get("transB", 0) else w.T  # ONNX B is [in, out] unless transB
    w = w * float(attrs.get("alpha", 1.0))
    n_out = w.shape[0]
    c = operands[1] if len(operands) > 1 and operands[1] is not None else np.zeros(n_out)
    bias = np.broadcast_to(np.asarray(c, np.float64) * float(attrs.get("beta", 1.0)), (n_out,)).copy()
    layers.append(Dense(label, w.astype(np.float64), bias))


def _matmul(layers: list[Layer], label: str, attrs: dict[str, Any], operands: list[Any]) -> None:
    w = _need(operands, 0, label, "MatMul", "weight")
    if w.ndim != 2:
        raise UnsupportedLayerError(f"ONNX node {label!r} (MatMul) has a {w.ndim}-d weight. Fix: use a 2-d Linear")
    layers.append(Dense(label, w.T.astype(np.float64), np.zeros(w.shape[1])))


def _add(layers: list[Layer], label: str, attrs: dict[str, Any], operands: list[Any]) -> None:
    """A constant Add after MatMul/Conv is that layer's bias (MatMul+Add is how some exporters write Linear)."""
    b = _need(operands, 0, label, "Add", "addend")
    prev = layers[-1] if layers else None
    if not isinstance(prev, Dense | Conv):
        raise UnsupportedLayerError(f"ONNX node {label!r} (Add) is not the bias of a MatMul/Gemm/Conv. "
                                    "Fix: export the network with only the supported layers")
    n_out = prev.weight.shape[0]
    flat = np.asarray(b, np.float64).reshape(-1)
    if flat.size not in (1, n_out):
        raise ConversionError(f"ONNX node {label!r} (Add): a constant of {flat.size} values cannot be the bias of "
                              f"{prev.name!r} ({n_out} outputs). Fix: add one bias per output")
    layers[-1] = replace(prev, bias=prev.bias + np.broadcast_to(flat, (n_out,)))


def _symmetric(pads: list[int], label: str, op: str) -> tuple[int, int]:
    pads = list(pads) or [0, 0, 0, 0]
    if len(pads) != 4 or pads[0] != pads[2] or pads[1] != pads[3]:
        raise UnsupportedLayerError(f"ONNX node {label!r} ({op}): pads {pads} are not symmetric 2-d padding. "
                                    "Fix: use the same padding on both sides")
    return int(pads[0]), int(pads[1])


def _auto_pad(attrs: dict[str, Any], label: str, op: str) -> None:
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto not in ("NOTSET", "VALID"):
        raise UnsupportedLayerError(f"ONNX node {label!r} ({op}): auto_pad={auto}. Fix: export explicit pads")


def _conv(layers: list[Layer], label: str, attrs: dict[str, Any], operands: list[Any]) -> None:
    w = _need(operands, 0, label, "Conv", "weight")
    if w.ndim != 4:
        raise UnsupportedLayerError(f"ONNX node {label!r} (Conv) is {w.ndim - 2}-d; only Conv2d converts. "
                                    "Fix: use a 2-d convolution")
    _auto_pad(attrs, label, "Conv")
    bias = operands[1] if len(operands) > 1 and operands[1] is not None else np.zeros(w.shape[0])
    layers.append(Conv(label, w.astype(np.float64), np.asarray(bias, np.float64),
                       tuple(int(s) for s in attrs.get("strides", (1, 1))),
                       _symmetric(attrs.get("pads", []), label, "Conv"),
                       tuple(int(d) for d in attrs.get("dilations", (1, 1))), int(attrs.get("group", 1))))


def _avgpool(layers: list[Layer], label: str, attrs: dict[str, Any], operands: list[Any]) -> None:
    _auto_pad(attrs, label, "AveragePool")
    kernel = tuple(int(k) for k in attrs["kernel_shape"])
    pad = _symmetric(attrs.get("pads", []), label, "AveragePool")
    if len(kernel) != 2 or attrs.get("ceil_mode", 0) or (any(pad) and not attrs.get("count_include_pad", 0)):
        raise UnsupportedLayerError(
            f"ONNX node {label!r} (AveragePool): kernel {list(kernel)}, ceil_mode={attrs.get('ceil_mode', 0)}, "
            f"count_include_pad={attrs.get('count_include_pad', 0)}; the SNN pool is 2-d and divides every window "
            "by its full size. Fix: a 2-d AvgPool without ceil_mode (count_include_pad=1 if padded)")
    layers.append(AvgPool(label, kernel, tuple(int(s) for s in attrs.get("strides", kernel)), pad))


def _batchnorm(layers: list[Layer], label: str, attrs: dict[str, Any], operands: list[Any]) -> None:
    gamma, beta, mean, var = (_need(operands, k, label, "BatchNormalization", what)
                              for k, what in enumerate(("scale", "B", "mean", "var")))
    layers.append(BatchNorm.of(label, gamma, beta, mean, var, float(attrs.get("epsilon", 1e-5))))


def _flatten(layers: list[Layer], label: str, attrs: dict[str, Any], operands: list[Any]) -> None:
    if int(attrs.get("axis", 1)) != 1:
        raise UnsupportedLayerError(f"ONNX node {label!r} (Flatten) has axis={attrs.get('axis')}. "
                                    "Fix: flatten from axis 1")
    layers.append(Flatten(label))


def _reshape(layers: list[Layer], label: str, attrs: dict[str, Any], operands: list[Any]) -> None:
    shape = [int(s) for s in _need(operands, 0, label, "Reshape", "shape").reshape(-1)]
    # [N, -1], [-1, K], [1, K], [0, -1]: keep the batch axis, flatten the rest (checked against shapes later)
    if len(shape) != 2:
        raise UnsupportedLayerError(f"ONNX node {label!r} (Reshape) to {shape} is not a flatten to [batch, "
                                    "features]. Fix: use Flatten / x.view(x.size(0), -1)")
    layers.append(Flatten(label, shape[1] if shape[1] > 0 else None))


def _relu(layers: list[Layer], label: str, attrs: dict[str, Any], operands: list[Any]) -> None:
    layers.append(ReLU(label))


def _identity(layers: list[Layer], label: str, attrs: dict[str, Any], operands: list[Any]) -> None:
    """Identity / inference Dropout on the chain's tensor: nothing to convert."""


_HANDLERS = {"Gemm": _gemm, "MatMul": _matmul, "Add": _add, "Conv": _conv, "AveragePool": _avgpool,
             "BatchNormalization": _batchnorm, "Flatten": _flatten, "Reshape": _reshape, "Relu": _relu,
             "Identity": _identity, "Dropout": _identity}
