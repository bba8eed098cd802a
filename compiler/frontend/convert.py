"""ANN -> SNN: a ReLU network (ONNX file or torch module) as an IF network in NIR, calibrated on data.

Each ReLU becomes a population of IF neurons whose spike rate (spikes per step) stands for the ReLU's
activation divided by that layer's scale lambda_l, the chosen percentile of its positive activations on the
calibration set ("robust normalisation", Rueckauer et al. 2017; SpikingJelly's ann2snn mode "99.9%"):

    W'_l = W_l * lambda_{l-1} / lambda_l,   b'_l = b_l / lambda_l,   lambda_0 = 1 (inputs are rates in [0, 1])

With threshold 1 and one step's input W' s[t] + b', an IF neuron integrates its ANN pre-activation in units
of lambda_l per step, so its rate approaches clip(a_l / lambda_l, 0, 1). The bias is a constant current each
step (neurocc folds an Affine's bias into the neuron's bias, docs/neuron-model.md). The last linear segment
(the logits) becomes an IF output layer; the class is the neuron with the most spikes.

Reset: NIR's IF, neurocc's IR and every target reset to v_reset = 0 (Loihi cannot subtract), so a spike
drops the charge above threshold; docs/conversion.md gives the measured cost against reset-by-subtraction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CalibrationError, ConversionError, NonFiniteError
from .ann import WEIGHTED, AvgPool, Conv, Dense, Flatten, Layer, ReLU, check_finite, fold_batchnorm, forward
from .writer import write_graph

DT = 1e-3  # the IF has no time constant; one step of 1 ms is recorded so the file reads back with no flags
DEFAULT_STEPS = 64
DEFAULT_PERCENTILE = 99.9
NEURONS = ("IF",)
CODINGS = ("rate",)


THRESHOLD_GRID = np.round(np.linspace(0.5, 1.0, 11), 3)  # candidate thresholds, in units of lambda_l


@dataclass(frozen=True)
class Segment:
    """The linear layers up to one ReLU (or the output), that layer's scale lambda, and its IF threshold."""

    ops: tuple[Layer, ...]
    relu: bool
    scale: float
    threshold: float = 1.0


def read_ann(model: Any) -> tuple[list[Layer], tuple[int, ...] | None, str]:
    """(layers, declared input shape or None, 'onnx' | 'torch') of an ONNX path or a torch nn.Module."""
    if isinstance(model, str | Path):
        from .onnx_reader import read_onnx

        layers, shape = read_onnx(model)
        return layers, shape, "onnx"
    if hasattr(model, "named_modules") and callable(model):
        from .ann import layers_of_module

        return layers_of_module(model), None, "torch"
    raise ConversionError(f"convert takes an ONNX file path or a torch nn.Module, not {type(model).__name__}. "
                          "Fix: pass model.onnx or the module")


def load_calibration(calibration: Any, in_shape: tuple[int, ...] | None) -> np.ndarray:
    """The calibration samples [N, *input shape] as float64, checked: present, finite, in [0, 1]."""
    if calibration is None:
        raise CalibrationError("convert needs a calibration set (samples the ANN sees, values in [0, 1]) to "
                               "normalise each layer. Fix: pass calibration=<array [N, *input]> or an .npz/.npy")
    if isinstance(calibration, str | Path):
        path = Path(calibration)
        if not path.is_file():
            raise CalibrationError(f"calibration file {path} does not exist. Fix: check the path")
        try:
            loaded = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise CalibrationError(f"calibration file {path} cannot be read as .npz/.npy ({exc}). "
                                   "Fix: np.savez(path, x=samples)") from None
        if isinstance(loaded, np.lib.npyio.NpzFile):
            keys = list(loaded.keys())
            key = "x" if "x" in keys else "calibration" if "calibration" in keys else keys[0] if len(keys) == 1 \
                else None
            if key is None:
                raise CalibrationError(f"calibration file {path} holds {keys}; convert reads 'x'. "
                                       "Fix: np.savez(path, x=samples)")
            calibration = loaded[key]
        else:
            calibration = loaded
    try:
        x = np.asarray(calibration, dtype=np.float64)
    except (TypeError, ValueError):
        raise CalibrationError(f"calibration set of type {type(calibration).__name__} is not numeric. "
                               "Fix: pass an array [N, *input]") from None
    if x.ndim < 2 or x.shape[0] == 0:
        raise CalibrationError(f"calibration set has shape {list(x.shape)}: no samples. Fix: pass at least one "
                               "sample, as an array [N, *input]")
    if not np.all(np.isfinite(x)):
        raise NonFiniteError("calibration set holds NaN/Inf values. Fix: clean the samples")
    if x.min() < 0 or x.max() > 1:
        raise CalibrationError(f"calibration values span {x.min():g}..{x.max():g}; the SNN's input is rate coded, "
                               "so samples must lie in [0, 1]. Fix: scale the inputs (and train the ANN on them)")
    if in_shape is not None and tuple(x.shape[1:]) != in_shape:
        if int(np.prod(x.shape[1:])) != int(np.prod(in_shape)):
            raise CalibrationError(f"calibration samples have shape {list(x.shape[1:])}, the model's input is "
                                   f"{list(in_shape)}. Fix: pass samples of the model's input shape")
        x = x.reshape(x.shape[0], *in_shape)
    return x


def segments_of(layers: Sequence[Layer], calibration: np.ndarray, percentile: float) -> list[Segment]:
    """Split the folded chain at its ReLUs and measure each segment's scale on the calibration set."""
    groups: list[list[Layer]] = [[]]
    relus: list[bool] = []
    for layer in layers:
        if isinstance(layer, ReLU):
            relus.append(True)
            groups.append([])
        else:
            groups[-1].append(layer)
    if groups[-1]:
        relus.append(False)
    else:
        groups.pop()
    for ops, _ in zip(groups, relus, strict=True):
        if not any(isinstance(op, WEIGHTED) for op in ops):
            what = ", ".join(f"{op.name!r} ({type(op).__name__})" for op in ops) or "nothing"
            raise ConversionError(f"a ReLU follows {what} with no Linear/Conv in between, so no weight can carry its "
                                  "scale. Fix: remove the repeated ReLU, or put a Linear/Conv before it")
    scales: list[float] = []
    x = calibration
    for ops, relu in zip(groups, relus, strict=True):
        x = forward([*ops, *([ReLU("relu")] if relu else [])], x)
        positive = x[x > 0]
        last = ops[-1].name
        if positive.size == 0:
            raise ConversionError(f"layer {last!r} never activates on the calibration set (all outputs <= 0): its "
                                  "spiking layer would be silent. Fix: use a calibration set the network responds "
                                  "to, or retrain")
        scales.append(float(np.percentile(positive, percentile)))
    return [Segment(tuple(ops), relu, s) for ops, relu, s in zip(groups, relus, scales, strict=True)]


def normalise(segments: Sequence[Segment]) -> list[Segment]:
    """W' = W lambda_{l-1} / lambda_l on each segment's first weighted op, every bias / lambda_l."""
    out = []
    prev = 1.0
    for seg in segments:
        ops: list[Layer] = []
        first = True
        for op in seg.ops:
            if isinstance(op, WEIGHTED):
                w = op.weight * (prev / seg.scale) if first else op.weight
                op = replace(op, weight=w, bias=op.bias / seg.scale)
                first = False
            ops.append(op)
        out.append(Segment(tuple(ops), seg.relu, seg.scale, seg.threshold))
        prev = seg.scale
    return out


def calibrate_thresholds(segments: Sequence[Segment], calibration: np.ndarray, steps: int) -> list[Segment]:
    """Per layer, the IF threshold whose reset-to-zero spike rates best match the ANN's normalised activations.

    Reset to zero drops the charge above threshold at every spike, so a neuron driven by z per step fires
    every floor(theta/z) + 1 steps: below z and worst at high rates (z = 1 fires every other step at theta = 1).
    A lower threshold gives the lost charge back on average. Chosen greedily, layer by layer, on the
    calibration set run as the SNN (rate-coded input, the thresholds already chosen upstream), minimising the
    squared error between the layer's spike rate and clip(a_l / lambda_l, 0, 1).
    """
    spikes = _rate_code(calibration, steps)  # [T, N, ...]
    target_in = calibration
    out = []
    for seg in segments:
        ideal = forward([*seg.ops, *([ReLU("relu")] if seg.relu else [])], target_in)  # normalised ANN activation
        want = np.clip(ideal, 0.0, 1.0)
        flat = forward(seg.ops, spikes.reshape(-1, *spikes.shape[2:]))  # all steps at once: linear, stateless
        drive = flat.reshape(steps, -1, *flat.shape[1:])  # the same for every threshold
        errors = []
        for theta in THRESHOLD_GRID:
            errors.append(float(np.mean((_integrate(drive, float(theta)).mean(0) - want) ** 2)))
        best = float(THRESHOLD_GRID[int(np.argmin(errors))])
        out.append(replace(seg, threshold=best))
        spikes, target_in = _integrate(drive, best), ideal  # the next layer follows the ANN, not a clipped copy
    return out


def _integrate(drive: np.ndarray, theta: float) -> np.ndarray:
    """IF with reset to zero over a drive [T, N, ...]: the spikes [T, N, ...] (float 0/1)."""
    v = np.zeros(drive.shape[1:])
    fired = np.zeros(drive.shape)
    for t in range(drive.shape[0]):
        v = v + drive[t]
        f = v > theta
        v[f] = 0.0
        fired[t] = f
    return fired


def _rate_code(x: np.ndarray, steps: int) -> np.ndarray:
    """The regular rate code of runtime/encoding.py (the compiler does not import the runtime): value v spikes
    at step t when floor((t+1) v) > floor(t v)."""
    t = np.arange(steps + 1, dtype=np.float64).reshape(-1, *([1] * x.ndim))
    return (np.diff(np.floor(t * x + 1e-9), axis=0) > 0).astype(np.float64)


def _if_node(shape: tuple[int, ...], threshold: float):
    import nir

    # dv/dt = r I with r = 1/dt: each step adds exactly W' s + b'; threshold 1 would be lambda_l in ANN units.
    return nir.IF(r=np.full(shape, 1.0 / DT), v_threshold=np.full(shape, threshold), v_reset=np.zeros(shape))


def to_nir(segments: Sequence[Segment], in_shape: tuple[int, ...], metadata: dict[str, Any]):  # -> nir.NIRGraph
    import nir

    nodes: dict[str, Any] = {"input": nir.Input(input_type={"input": np.array(in_shape)})}
    edges: list[tuple[str, str]] = []
    prev, shape = "input", tuple(in_shape)
    probe = np.zeros((1, *in_shape))
    for k, seg in enumerate(segments):
        for j, op in enumerate(seg.ops):
            name = f"l{k}_{j}_{type(op).__name__.lower()}"
            if isinstance(op, Dense):
                node = nir.Affine(weight=op.weight.copy(), bias=op.bias.copy())
            elif isinstance(op, Conv):
                node = nir.Conv2d(input_shape=shape[1:], weight=op.weight.copy(), stride=op.stride,
                                  padding=op.padding, dilation=op.dilation, groups=op.groups, bias=op.bias.copy())
            elif isinstance(op, AvgPool):
                node = nir.AvgPool2d(kernel_size=np.array(op.kernel), stride=np.array(op.stride),
                                     padding=np.array(op.padding))
            elif isinstance(op, Flatten):
                # neurocc's shapes carry no batch axis: flatten every dim
                node = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
            else:  # pragma: no cover - segments hold linear layers only
                raise ConversionError(f"internal: {type(op).__name__} inside a linear segment")
            nodes[name] = node
            edges.append((prev, name))
            probe = forward([op], probe)
            prev, shape = name, tuple(probe.shape[1:])
        name = f"l{k}_if"
        nodes[name] = _if_node(shape, seg.threshold)
        edges.append((prev, name))
        prev = name
    nodes["output"] = nir.Output(output_type={"output": np.array(shape)})
    edges.append((prev, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=False)


def convert(model: Any, calibration: Any, *, percentile: float = DEFAULT_PERCENTILE, steps: int = DEFAULT_STEPS,
            neuron: str = "IF", input_coding: str = "rate",
            threshold: float | str = "calibrate"):  # -> nir.NIRGraph
    """Convert a ReLU ANN (ONNX path or torch nn.Module) to an IF SNN in NIR, normalised on `calibration`.

    `calibration`: samples [N, *input] with values in [0, 1] (array, or a .npz with key 'x' / a .npy).
    `percentile`: of each layer's positive activations, the activation that maps to one spike per step
    (100 = the maximum, Diehl et al. 2015). `steps`: the simulation length the network is meant for, recorded
    in the metadata with the input coding (rate: `neurocc.runtime.encoding.rate_code(x, steps)`), and the
    length over which `threshold="calibrate"` matches rates. `threshold`: "calibrate" (per layer, the threshold
    that best offsets reset-to-zero's lost charge on the calibration set, `calibrate_thresholds`) or a number
    (every layer's threshold in units of lambda_l; 1.0 is plain robust normalisation).
    """
    if neuron not in NEURONS:
        raise ConversionError(f"neuron={neuron!r}: convert builds {', '.join(NEURONS)} neurons (no time constant, "
                              "so rates follow ReLU activations). Fix: neuron='IF'")
    if input_coding not in CODINGS:
        raise ConversionError(f"input_coding={input_coding!r}: supported {', '.join(CODINGS)}. Fix: 'rate'")
    if not (0 < float(percentile) <= 100):
        raise ConversionError(f"percentile={percentile!r} must lie in (0, 100]. Fix: e.g. 99.9")
    if int(steps) < 1:
        raise ConversionError(f"steps={steps!r} must be a positive number of steps. Fix: e.g. {DEFAULT_STEPS}")
    layers, declared, origin = read_ann(model)
    if not layers:
        raise ConversionError("the model has no layers to convert. Fix: pass a network with a Linear/Conv")
    check_finite(layers)
    x = load_calibration(calibration, declared)
    folded = fold_batchnorm(layers)
    segments = normalise(segments_of(folded, x, float(percentile)))
    if threshold == "calibrate":
        segments = calibrate_thresholds(segments, x, int(steps))
    elif isinstance(threshold, int | float) and np.isfinite(threshold) and threshold > 0:
        segments = [replace(seg, threshold=float(threshold)) for seg in segments]
    else:
        raise ConversionError(f"threshold={threshold!r}: pass 'calibrate' or a positive number. Fix: 'calibrate'")
    meta = {"neurocc_dt": DT, "neurocc_discretization": "euler", "neurocc_converted_from": origin,
            "neurocc_percentile": float(percentile), "neurocc_input_coding": input_coding,
            "neurocc_steps": int(steps), "neurocc_reset": "zero",
            "neurocc_layer_scales": np.array([s.scale for s in segments]),
            "neurocc_thresholds": np.array([s.threshold for s in segments]),
            "neurocc_threshold_mode": threshold if isinstance(threshold, str) else "fixed",
            "neurocc_readout": "spike counts of the last IF layer (argmax)"}
    return to_nir(segments, tuple(x.shape[1:]), meta)


def convert_file(model: str | Path, calibration: str | Path, out: str | Path, **options: Any) -> Path:
    """`neurocc convert model.onnx --calibration x.npz -o snn.nir`: convert and write the .nir."""
    return write_graph(convert(model, calibration, **options), out)
