"""A ReLU ANN as a chain of plain numpy layers: what `convert` reads from ONNX or torch, folds and runs.

Both readers (onnx_reader.py, `layers_of_module` here) produce the same `Layer` list, so the two paths
cannot drift apart: normalisation, BatchNorm folding and the SNN graph are built from this one form.
Arrays have no batch axis in the layers; `forward` takes a batch [N, *shape].
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import ConversionError, InputError, NonFiniteError, UnsupportedLayerError

# What converts, in the words the errors use (ONNX op types and torch classes).
SUPPORTED_ONNX = ("Gemm", "MatMul+Add", "Conv", "AveragePool", "Flatten", "Reshape (as flatten)", "Relu",
                  "BatchNormalization (after Gemm/MatMul/Conv)", "Identity", "Dropout", "Constant")
SUPPORTED_TORCH = ("Linear", "Conv2d", "AvgPool2d", "Flatten", "ReLU", "BatchNorm1d/BatchNorm2d (after "
                   "Linear/Conv2d)", "Identity", "Dropout", "Sequential", "F.relu", "torch.flatten",
                   "view/reshape(N, -1)")
MAXPOOL_FIX = ("max-pooling has no rate-coded IF equivalent (a spike count cannot take a max). "
               "Fix: train with AvgPool2d (nn.AvgPool2d / ONNX AveragePool) instead")


@dataclass(frozen=True)
class Dense:
    name: str
    weight: np.ndarray  # [out, in]
    bias: np.ndarray  # [out]


@dataclass(frozen=True)
class Conv:
    name: str
    weight: np.ndarray  # [C_out, C_in/groups, kh, kw]
    bias: np.ndarray  # [C_out]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)  # symmetric, per side
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1


@dataclass(frozen=True)
class BatchNorm:
    """Inference BatchNorm as y = scale * x + shift per channel (feature for 1-d input)."""

    name: str
    scale: np.ndarray
    shift: np.ndarray

    @staticmethod
    def of(name: str, gamma: Any, beta: Any, mean: Any, var: Any, eps: float) -> BatchNorm:
        scale = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps)
        return BatchNorm(name, scale, np.asarray(beta, np.float64) - np.asarray(mean, np.float64) * scale)


@dataclass(frozen=True)
class ReLU:
    name: str


@dataclass(frozen=True)
class AvgPool:
    name: str
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class Flatten:
    name: str
    features: int | None = None  # a Reshape's declared feature count, checked when it runs


Layer = Dense | Conv | BatchNorm | ReLU | AvgPool | Flatten
WEIGHTED = (Dense, Conv)


# ---- numpy forward (the ANN's own activations, for calibration and the folding test) ------------------

def _conv2d(x: np.ndarray, layer: Conv) -> np.ndarray:
    (ph, pw), (sh, sw), (dh, dw) = layer.padding, layer.stride, layer.dilation
    co, cig, kh, kw = layer.weight.shape
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    win = sliding_window_view(x, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))[..., ::dh, ::dw]
    win = win[:, :, ::sh, ::sw]  # [N, C_in, Ho, Wo, kh, kw]
    g = layer.groups
    n, _, ho, wo = win.shape[:4]
    win = win.reshape(n, g, cig, ho, wo, kh, kw)
    w = layer.weight.reshape(g, co // g, cig, kh, kw)
    out = np.einsum("ngchwij,gocij->ngohw", win, w, optimize=True).reshape(n, co, ho, wo)
    return out + layer.bias[None, :, None, None]


def _avgpool(x: np.ndarray, layer: AvgPool) -> np.ndarray:
    (ph, pw), (sh, sw), (kh, kw) = layer.padding, layer.stride, layer.kernel
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))  # padding counts in the mean, as NIR's AvgPool2d
    win = sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    return win.mean(axis=(-2, -1))


def apply(layer: Layer, x: np.ndarray) -> np.ndarray:
    """One layer on a batch [N, *shape]."""
    if isinstance(layer, Dense):
        if x.ndim != 2:
            raise ConversionError(f"layer {layer.name!r}: a Linear/Gemm needs a flat input, got shape "
                                  f"{list(x.shape[1:])}. Fix: flatten before it")
        return x @ layer.weight.T + layer.bias
    if isinstance(layer, Conv):
        if x.ndim != 4:
            raise ConversionError(f"layer {layer.name!r}: a Conv2d needs a (C, H, W) input, got shape "
                                  f"{list(x.shape[1:])}. Fix: feed it an image-shaped tensor")
        return _conv2d(x, layer)
    if isinstance(layer, BatchNorm):
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return x * layer.scale.reshape(shape) + layer.shift.reshape(shape)
    if isinstance(layer, ReLU):
        return np.maximum(x, 0.0)
    if isinstance(layer, AvgPool):
        return _avgpool(x, layer)
    if layer.features is not None and int(np.prod(x.shape[1:])) != layer.features:
        raise UnsupportedLayerError(f"layer {layer.name!r}: a reshape to {layer.features} features of a "
                                    f"{list(x.shape[1:])} tensor is not a flatten. Fix: flatten from axis 1")
    return x.reshape(x.shape[0], -1)


def forward(layers: Sequence[Layer], x: np.ndarray,
            record: Callable[[int, np.ndarray], None] | None = None) -> np.ndarray:
    """Run the chain in float64; a NaN/Inf output names the layer that produced it."""
    x = np.asarray(x, np.float64)
    for k, layer in enumerate(layers):
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported below, by layer name
            x = apply(layer, x)
        if not np.all(np.isfinite(x)):
            raise NonFiniteError(f"layer {layer.name!r} ({type(layer).__name__}) gives NaN/Inf activations on the "
                                 "calibration set. Fix: check its weights and the calibration data")
        if record is not None:
            record(k, x)
    return x


def check_finite(layers: Sequence[Layer]) -> None:
    for layer in layers:
        for field_name in ("weight", "bias", "scale", "shift"):
            arr = getattr(layer, field_name, None)
            if arr is not None and not np.all(np.isfinite(arr)):
                raise NonFiniteError(f"layer {layer.name!r} ({type(layer).__name__}): {field_name} holds NaN/Inf. "
                                     "Fix: retrain or repair the model before converting")


def fold_batchnorm(layers: Sequence[Layer]) -> list[Layer]:
    """Fold each BatchNorm into the Linear/Conv before it (exact: BN is affine per output channel)."""
    out: list[Layer] = []
    for layer in layers:
        if not isinstance(layer, BatchNorm):
            out.append(layer)
            continue
        prev = out[-1] if out else None
        if not isinstance(prev, WEIGHTED):
            after = type(prev).__name__ if prev is not None else "the input"
            raise UnsupportedLayerError(
                f"BatchNorm {layer.name!r} follows {after}, not a Linear/Conv, so it cannot be folded into "
                "weights. Fix: place each BatchNorm directly after a Linear/Gemm or Conv2d")
        n_out = prev.weight.shape[0]
        if layer.scale.size != n_out:
            raise ConversionError(f"BatchNorm {layer.name!r} has {layer.scale.size} channels, the layer before it "
                                  f"({prev.name!r}) {n_out}. Fix: export a consistent model")
        shape = (-1,) + (1,) * (prev.weight.ndim - 1)
        out[-1] = replace(prev, weight=prev.weight * layer.scale.reshape(shape),
                          bias=prev.bias * layer.scale + layer.shift)
    return out


# ---- torch modules -------------------------------------------------------------------------------

def layers_of_module(module: Any) -> list[Layer]:
    """A torch nn.Module's layers in execution order, read by tracing it with torch.fx (not running it).

    Tracing handles Sequential stacks and custom forward()s built from supported layers; a layer or call
    outside the supported set is named with its module path and class.
    """
    try:
        import torch
        import torch.fx
        import torch.nn.functional as F
    except ImportError:
        raise InputError("converting a torch module needs torch. Fix: pip install neurocc[torch]") from None
    nn = torch.nn
    was_training = module.training
    module.eval()  # BatchNorm's running statistics are what inference (and so the SNN) uses
    try:
        traced = torch.fx.symbolic_trace(module)
    except Exception as exc:
        raise UnsupportedLayerError(
            f"torch module {type(module).__name__} cannot be traced ({type(exc).__name__}: {exc}); convert reads "
            "a sequential chain of layers. Fix: export it to ONNX, or express forward() as a chain of "
            f"supported layers: {', '.join(SUPPORTED_TORCH)}") from None
    finally:
        module.train(was_training)
    modules = dict(traced.named_modules())
    layers: list[Layer] = []
    current = None  # the fx node carrying the chain's tensor
    relu_fns = {F.relu, torch.relu}
    flatten_fns = {torch.flatten}

    def arr(t: Any) -> np.ndarray:
        return t.detach().cpu().double().numpy().copy()

    def chain_input(node: Any) -> None:
        tensors = [a for a in node.all_input_nodes if a.op != "get_attr"]
        data = [a for a in tensors if not (a.op == "call_method" and a.target == "size")]
        if len(data) != 1 or data[0] is not current:
            raise UnsupportedLayerError(
                f"torch node {node.name!r} ({node.target}) does not continue one sequential chain (branches, "
                "skips and adds do not convert). Fix: convert a plain chain of layers")

    for node in traced.graph.nodes:
        if node.op == "placeholder":
            if current is not None:
                raise UnsupportedLayerError("the torch module takes more than one input. Fix: convert a "
                                            "single-input network")
            current = node
            continue
        if node.op == "output":
            if node.args[0] is not current:
                raise UnsupportedLayerError("the torch module's output is not the end of its layer chain. "
                                            "Fix: return the last layer's output")
            continue
        if node.op == "call_method" and node.target == "size":
            continue  # x.size(0) in x.view(x.size(0), -1)
        path = str(node.target)
        if node.op == "call_module":
            mod = modules[path]
            chain_input(node)
            if isinstance(mod, nn.Linear):
                bias = arr(mod.bias) if mod.bias is not None else np.zeros(mod.out_features)
                layers.append(Dense(path, arr(mod.weight), bias))
            elif isinstance(mod, nn.Conv2d):
                if mod.padding_mode != "zeros" or isinstance(mod.padding, str):
                    raise UnsupportedLayerError(
                        f"torch layer {path!r} (Conv2d): padding={mod.padding!r}, padding_mode={mod.padding_mode!r}; "
                        "only numeric zero padding converts. Fix: use padding=<int> with padding_mode='zeros'")
                bias = arr(mod.bias) if mod.bias is not None else np.zeros(mod.out_channels)
                layers.append(Conv(path, arr(mod.weight), bias, tuple(mod.stride), tuple(mod.padding),
                                   tuple(mod.dilation), int(mod.groups)))
            elif isinstance(mod, nn.BatchNorm1d | nn.BatchNorm2d):
                gamma = np.ones(mod.num_features) if mod.weight is None else arr(mod.weight)
                beta = np.zeros(mod.num_features) if mod.bias is None else arr(mod.bias)
                if mod.running_mean is None:
                    raise UnsupportedLayerError(f"torch layer {path!r} ({type(mod).__name__}) tracks no running "
                                                "statistics. Fix: train it with track_running_stats=True")
                layers.append(BatchNorm.of(path, gamma, beta, arr(mod.running_mean), arr(mod.running_var),
                                           float(mod.eps)))
            elif isinstance(mod, nn.ReLU):
                layers.append(ReLU(path))
            elif isinstance(mod, nn.AvgPool2d):
                layers.append(_torch_avgpool(path, mod.kernel_size, mod.stride, mod.padding, mod.ceil_mode,
                                             mod.count_include_pad, mod.divisor_override))
            elif isinstance(mod, nn.Flatten):
                if mod.start_dim != 1 or mod.end_dim != -1:
                    raise UnsupportedLayerError(f"torch layer {path!r} (Flatten) flattens dims {mod.start_dim}.."
                                                f"{mod.end_dim}. Fix: flatten from dim 1 (nn.Flatten())")
                layers.append(Flatten(path))
            elif isinstance(mod, nn.Identity | nn.Dropout):
                pass  # no-ops at inference
            elif isinstance(mod, nn.MaxPool2d | nn.MaxPool1d | nn.AdaptiveMaxPool2d):
                raise UnsupportedLayerError(f"torch layer {path!r} ({type(mod).__name__}): {MAXPOOL_FIX}")
            else:
                raise UnsupportedLayerError(
                    f"torch layer {path!r} ({type(mod).__name__}) is not supported by convert. Fix: use only "
                    f"{', '.join(SUPPORTED_TORCH)}")
        elif node.op == "call_function" and node.target in relu_fns:
            chain_input(node)
            layers.append(ReLU(node.name))
        elif node.op == "call_function" and node.target in flatten_fns:
            chain_input(node)
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            if start != 1:
                raise UnsupportedLayerError(f"torch node {node.name!r}: torch.flatten(x, {start}) would flatten "
                                            "the batch axis. Fix: torch.flatten(x, 1)")
            layers.append(Flatten(node.name))
        elif node.op == "call_function" and node.target is F.avg_pool2d:
            chain_input(node)
            args = list(node.args[1:])
            kw = dict(node.kwargs)
            names = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")
            vals = {n: (args[i] if i < len(args) else kw.get(n)) for i, n in enumerate(names)}
            layers.append(_torch_avgpool(node.name, vals["kernel_size"], vals["stride"] or vals["kernel_size"],
                                         vals["padding"] or 0, bool(vals["ceil_mode"]),
                                         True if vals["count_include_pad"] is None else vals["count_include_pad"],
                                         vals["divisor_override"]))
        elif node.op == "call_method" and node.target == "relu":
            chain_input(node)
            layers.append(ReLU(node.name))
        elif node.op == "call_method" and node.target in ("view", "reshape", "flatten"):
            chain_input(node)
            shape = node.args[1:]
            ok = (node.target == "flatten" and (shape[:1] == (1,) or node.kwargs.get("start_dim") == 1)) or (
                len(shape) == 2 and shape[1] == -1)
            if not ok:
                raise UnsupportedLayerError(f"torch node {node.name!r}: x.{node.target}{tuple(shape)} is not a "
                                            "flatten. Fix: use x.flatten(1) or x.view(x.size(0), -1)")
            layers.append(Flatten(node.name))
        elif node.op == "call_function" and node.target in (F.max_pool2d, torch.max_pool2d):
            raise UnsupportedLayerError(f"torch node {node.name!r} (max_pool2d): {MAXPOOL_FIX}")
        else:
            what = getattr(node.target, "__name__", str(node.target))
            if node.target in (operator.add, torch.add):
                what += " (a skip connection)"
            raise UnsupportedLayerError(
                f"torch node {node.name!r} ({node.op} {what}) is not supported by convert. Fix: use only "
                f"{', '.join(SUPPORTED_TORCH)}")
        current = node  # every handled call continues the chain (no-op modules included)
    return layers


def _pair(value: Any) -> tuple[int, int]:
    return (int(value), int(value)) if np.isscalar(value) else (int(value[0]), int(value[1]))


def _torch_avgpool(path: str, kernel: Any, stride: Any, padding: Any, ceil_mode: bool, count_include_pad: bool,
                   divisor_override: Any) -> AvgPool:
    pad = _pair(padding)
    if ceil_mode or divisor_override is not None or (any(pad) and not count_include_pad):
        raise UnsupportedLayerError(
            f"torch layer {path!r} (AvgPool2d): ceil_mode={ceil_mode}, count_include_pad={count_include_pad}, "
            f"divisor_override={divisor_override}; the SNN pool divides every window by its full size. "
            "Fix: use AvgPool2d(k, stride, padding) with ceil_mode=False (and count_include_pad=True if padded)")
    return AvgPool(path, _pair(kernel), _pair(stride if stride is not None else kernel), pad)
