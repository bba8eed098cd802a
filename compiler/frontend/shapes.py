"""Phase 3: every node's output shape, from the Inputs forward; edge sizes checked; neuron params broadcast."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import GraphError, ParameterError, UnsupportedNodeError
from ..ir import KIND_PARAMS, NEURON_KINDS
from ..ir.conv import conv_output_size
from .diagnostics import Warner, guard
from .graph import Graph
from .params import Params
from .timing import Timing


@dataclass(frozen=True)
class Layout:
    """How a Conv or Pool node reads its input: (C, *spatial), the leading zero padding of each spatial
    axis, and its output shape (which fixes the trailing padding: 'same' pads an even extent unevenly)."""

    in_shape: tuple[int, ...]
    padding: tuple[int, ...]
    out_shape: tuple[int, ...]


@dataclass(frozen=True)
class Shapes:
    """Output shape of every node, and the input layout of every Conv and Pool node."""

    shape: Mapping[str, tuple[int, ...]]
    layout: Mapping[str, Layout]


def infer_shapes(graph: Graph, params: Params, timing: Timing, warn: Warner) -> Shapes:
    """Input shapes (leaked batch axes stripped), then a fixpoint over the nodes whose inputs are known."""
    shape: dict[str, tuple[int, ...]] = {}
    layout: dict[str, Layout] = {}
    for name, node in graph.nodes.items():
        if node.type == "Input":
            declared = params[name]["shape"]
            if declared is None:
                raise GraphError(f"Input node {name!r} has no shape. Fix: export with a sample input")
            want = [_expected_in_ndim(graph, params, s) for s in graph.succs[name]]
            want = [w for w in want if w is not None]
            if want and not timing.written_by_neurocc:  # neurocc.save's shapes are exact
                stripped = _strip_ones(declared, max(want))
                if stripped != declared:
                    warn(f"batch-{name}", f"Input {name!r} declares shape {list(declared)}; a batch axis "
                         f"leaked into it, using {list(stripped)}")
                    declared = stripped
            shape[name] = declared
    changed = True
    while changed:
        changed = False
        for name in graph.nodes:
            if name in shape:
                continue
            with guard(name, graph.nodes[name].type, "inferring its shape"):
                out = _out_shape(graph, params, shape, name)
            if out is not None:
                shape[name], node_layout = out
                if node_layout is not None:
                    layout[name] = node_layout
                changed = True
    missing = [n for n in graph.nodes if n not in shape]
    if missing:
        raise GraphError(
            f"cannot infer the shape of {', '.join(repr(m) for m in missing)}: no Input reaches them "
            "through nodes of known shape. Fix: connect them to an Input, or break a cycle that has no "
            "neuron in it"
        )
    return Shapes(shape, layout)


def check_edges(graph: Graph, params: Params, shapes: Shapes, warn: Warner) -> None:
    """Each edge carries as many values as its destination takes; Outputs get what they declare."""
    shape = shapes.shape
    for dst in graph.nodes:
        want = _in_size(graph, params, shapes, dst)
        for src in graph.preds[dst]:
            have = int(np.prod(shape[src]))
            if want is not None and have != want:
                raise GraphError(
                    f"shape mismatch on edge {src!r} -> {dst!r}: {src!r} outputs {list(shape[src])} "
                    f"({have} values) but {dst!r} ({graph.nodes[dst].type}) takes {want}. Fix: make the "
                    "layer sizes agree"
                )
        if graph.nodes[dst].type == "Output":
            declared = params[dst]["shape"]
            have_shape = shape[dst]
            if declared is not None and int(np.prod(declared)) != int(np.prod(have_shape)):
                raise GraphError(
                    f"Output {dst!r} declares shape {list(declared)} but receives {list(have_shape)}. "
                    "Fix: correct the Output shape"
                )
            if declared is not None and tuple(declared) != tuple(have_shape):
                warn(f"out-{dst}", f"Output {dst!r} declares shape {list(declared)}, its input is "
                     f"{list(have_shape)}; leaked batch/time axes ignored")


def broadcast_neuron_params(graph: Graph, params: Params, shapes: Shapes) -> Params:
    """Neuron parameters as flat float64 arrays of one value per neuron (0-d ones broadcast)."""
    out: dict[str, Mapping[str, Any]] = {}
    for name, node in graph.nodes.items():
        if node.type not in NEURON_KINDS:
            out[name] = params[name]
            continue
        n = int(np.prod(shapes.shape[name]))
        per_neuron: dict[str, Any] = {}
        for key, value in params[name].items():
            val = np.asarray(value, dtype=np.float64)
            if val.size not in (1, n):
                raise ParameterError(
                    f"node {name!r} ({node.type}): {key} has {val.size} values for "
                    f"{n} neurons. Fix: one value, or one per neuron"
                )
            per_neuron[key] = np.broadcast_to(val.reshape(-1), (n,)).astype(np.float64).copy()
        out[name] = per_neuron
    return out


def _strip_ones(shape: tuple[int, ...], ndim: int) -> tuple[int, ...]:
    while len(shape) > ndim and shape[0] == 1:
        shape = shape[1:]
    return shape


def _param_shape(graph: Graph, params: Params, name: str) -> tuple[int, ...] | None:
    node, p = graph.nodes[name], params[name]
    if node.type in NEURON_KINDS:
        shapes = [np.shape(p[k]) for k in KIND_PARAMS[node.type] if np.ndim(p[k]) > 0]
        return max(shapes, key=lambda s: int(np.prod(s))) if shapes else None
    if node.type in ("Scale",) and np.ndim(p["scale"]) > 0:
        return tuple(np.shape(p["scale"]))
    if node.type == "Delay" and np.ndim(p["steps"]) > 0:
        return tuple(np.shape(p["steps"]))
    return None


def _expected_in_ndim(graph: Graph, params: Params, name: str) -> int | None:
    t = graph.nodes[name].type
    if t in ("Affine", "Linear"):
        return 1
    if t in ("Conv2d", "SumPool2d", "AvgPool2d"):
        return 3
    if t == "Conv1d":
        return 2
    ps = _param_shape(graph, params, name)
    return len(ps) if ps is not None else None


def _pred_shape(graph: Graph, shape: Mapping[str, tuple[int, ...]], name: str) -> tuple[int, ...] | None:
    shapes = [shape.get(p) for p in graph.preds[name]]
    known = [s for s in shapes if s is not None]
    return known[0] if known else None


def _out_shape(graph: Graph, params: Params, shape: Mapping[str, tuple[int, ...]],
               name: str) -> tuple[tuple[int, ...], Layout | None] | None:
    """`name`'s output shape (and a Conv/Pool node's input layout), or None while its input is unknown."""
    node, p = graph.nodes[name], params[name]
    t = node.type
    if t in ("Affine", "Linear"):
        return (p["weight"].shape[0],), None
    if t in NEURON_KINDS or t in ("Scale", "Delay"):
        own = _param_shape(graph, params, name)
        return _known(own if own is not None else _pred_shape(graph, shape, name))
    if t == "Threshold":
        own = tuple(np.shape(p["threshold"])) or None
        return _known(own if own is not None else _pred_shape(graph, shape, name))
    src = _pred_shape(graph, shape, name)
    if src is None:
        return None
    if t in ("Identity", "Output"):
        return src, None
    if t in ("Conv1d", "Conv2d"):
        nd = 1 if t == "Conv1d" else 2
        w = p["weight"]
        c_in = w.shape[1] * p["groups"]
        spatial = p["input_shape"]
        if spatial is None:
            if len(src) == nd + 1:
                spatial = tuple(src[1:])
            elif int(np.prod(src)) % c_in == 0 and nd == 1:
                spatial = (int(np.prod(src)) // c_in,)
            else:
                raise GraphError(
                    f"{t} {name!r}: input_shape is missing and its input has shape {list(src)}, from "
                    f"which the {nd}-d spatial size is ambiguous. Fix: export with input_shape set"
                )
        spatial = tuple(spatial)[-nd:]
        if c_in * int(np.prod(spatial)) != int(np.prod(src)):
            raise GraphError(
                f"{t} {name!r} expects {c_in} channels x {list(spatial)} = {c_in * int(np.prod(spatial))} "
                f"inputs but receives shape {list(src)} ({int(np.prod(src))}). Fix: correct input_shape or "
                "the layer before it"
            )
        pad, trail = _resolve_padding(name, p, spatial)
        out = [conv_output_size(spatial[d], w.shape[2 + d], p["stride"][d], pad[d], p["dilation"][d], trail[d])
               for d in range(nd)]
        if min(out) < 1:
            extent = [p["dilation"][d] * (w.shape[2 + d] - 1) + 1 for d in range(nd)]
            raise GraphError(f"{t} {name!r}: kernel extent {extent} is larger than the padded input "
                             f"{[spatial[d] + pad[d] + trail[d] for d in range(nd)]} (input {list(src)}), so the "
                             "output is empty. Fix: check the kernel, dilation, padding and input_shape")
        return (w.shape[0], *out), Layout((c_in, *spatial), pad, (w.shape[0], *out))
    if t in ("SumPool2d", "AvgPool2d"):
        if len(src) != 3:
            raise GraphError(f"{t} {name!r} needs a (C, H, W) input, got shape {list(src)}. "
                             "Fix: put it after a Conv2d or give the input a 3-d shape")
        out = [conv_output_size(src[1 + d], p["kernel_size"][d], p["stride"][d], p["padding"][d], 1)
               for d in range(2)]
        if min(out) < 1:
            raise GraphError(f"{t} {name!r}: kernel {list(p['kernel_size'])} is larger than the padded input "
                             f"{[src[1 + d] + 2 * p['padding'][d] for d in range(2)]}, so the output is empty. "
                             "Fix: check kernel_size, padding and the input shape")
        return (src[0], *out), Layout(src, p["padding"], (src[0], *out))
    if t == "Flatten":
        start, end = p["start_dim"], p["end_dim"]
        nd = len(src)
        start = start + nd if start < 0 else start
        end = end + nd if end < 0 else end
        if not (0 <= start <= end < nd):
            return (int(np.prod(src)),), None
        return (*src[:start], int(np.prod(src[start:end + 1])), *src[end + 1:]), None
    raise UnsupportedNodeError(f"node {name!r}: type {t!r} is not handled. Fix: export it as a NIR 1.0 node")


def _known(shape: tuple[int, ...] | None) -> tuple[tuple[int, ...], None] | None:
    return (shape, None) if shape is not None else None


def _resolve_padding(name: str, p: Mapping[str, Any],
                     spatial: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(leading, trailing) zero padding per spatial axis; 'same' as torch does it (an odd total puts the
    extra zero at the end)."""
    pad = p["padding"]
    nd = len(spatial)
    if isinstance(pad, str):
        if pad == "valid":
            return (0,) * nd, (0,) * nd
        if pad == "same":
            k = p["weight"].shape[2:]
            if any(s != 1 for s in p["stride"]):
                raise ParameterError(f"node {name!r}: padding='same' needs stride 1 (torch refuses it too). "
                                     "Fix: give the padding as integers")
            total = [p["dilation"][d] * (k[d] - 1) for d in range(nd)]
            return tuple(t // 2 for t in total), tuple(t - t // 2 for t in total)
        raise ParameterError(f"node {name!r}: padding {pad!r} is not 'same', 'valid' or integers. "
                             "Fix: give the padding as integers")
    return pad, pad


def _in_size(graph: Graph, params: Params, shapes: Shapes, name: str) -> int | None:
    node, p = graph.nodes[name], params[name]
    if node.type in ("Affine", "Linear"):
        return int(p["weight"].shape[1])
    if node.type in ("Conv1d", "Conv2d", "SumPool2d", "AvgPool2d"):
        return int(np.prod(shapes.layout[name].in_shape))
    if node.type in ("Flatten", "Identity", "Output"):
        return None
    return int(np.prod(shapes.shape[name]))
