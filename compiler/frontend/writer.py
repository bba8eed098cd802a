"""Write a float Network back to NIR: one Linear per (projection, delay), Delay nodes for delays.

A convolution projection (`Projection.conv`) is written as its own nodes, as the exporters write it:
SumPool2d (its pool prefix, if any) then Conv2d/Conv1d, then Flatten when it feeds a flat population; a
dense projection out of a (C, H, W) population reads it through a Flatten. nir.read's shape check then
accepts the file and the frameworks' importers build the same layers.

A population's bias rides on its first delay-0 projection as an Affine (or on a Conv's per-channel bias),
the form the frameworks' own exporters write and their importers (snnTorch, Norse) read; only a
population with no such projection gets the bias as a zero-weight Affine from the first input.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelFileError
from ..ir import INPUT, KIND_PARAMS, Network, Population, Projection
from ..ir.conv import Conv, conv_output_size


def _uniform_delay(proj: Projection) -> int | None:
    return int(proj.delays[0]) if proj.delays.size and np.all(proj.delays == proj.delays[0]) else None


def _conv_padding(conv: Conv) -> tuple[int, int] | str | None:
    """NIR's padding for `conv`: symmetric integers, 'same' (torch's uneven split), or None if neither fits."""
    (_, h, w), (_, ho, wo) = conv.pooled_shape, conv.out_shape
    kh, kw = conv.kernel_size
    sym = all(conv_output_size(n, k, s, p, d) == o for n, k, s, p, d, o in zip(
        (h, w), (kh, kw), conv.stride, conv.padding, conv.dilation, (ho, wo), strict=True))
    if sym:
        return conv.padding
    same = conv.stride == (1, 1) and (ho, wo) == (h, w) and conv.padding == (
        conv.dilation[0] * (kh - 1) // 2, conv.dilation[1] * (kw - 1) // 2)
    return "same" if same else None


def _channel_bias(pop: Population, conv: Conv) -> np.ndarray | None:
    """The population's bias as one value per output channel, or None when it varies within a channel."""
    per_channel = pop.bias_or_zero().reshape(conv.out_shape[0], -1)
    return per_channel[:, 0].copy() if np.all(per_channel == per_channel[:, :1]) else None


def _expressible_as_conv(net: Network, proj: Projection) -> bool:
    conv = proj.conv
    if conv is None or _uniform_delay(proj) is None or _conv_padding(conv) is None:
        return False
    pre, post = net.populations[proj.pre].shape, net.populations[proj.post].shape
    if len(pre) == 2:  # Conv1d over (C, L): the IR's (C, 1, L) with a 1 x k kernel
        return conv.pool is None and conv.kernel_size[0] == 1 and post in ((conv.out_shape[0], conv.out_shape[2]),
                                                                             (conv.n_out,))
    return tuple(pre) == conv.in_shape and tuple(post) in (conv.out_shape, (conv.n_out,))


def _conv_chain(name: str, conv: Conv, pre_shape: tuple[int, ...], post_shape: tuple[int, ...],
                bias: np.ndarray | None) -> list[tuple[str, object]]:
    """The NIR nodes, in order, that compute `conv` from a population of `pre_shape`."""
    import nir

    bias = np.zeros(conv.out_shape[0]) if bias is None else bias
    padding = _conv_padding(conv)
    chain: list[tuple[str, object]] = []
    if len(pre_shape) == 2:
        chain.append((f"{name}.conv", nir.Conv1d(
            input_shape=int(pre_shape[1]), weight=conv.kernel[:, :, 0, :].copy(), stride=conv.stride[1],
            padding=padding if isinstance(padding, str) else padding[1], dilation=conv.dilation[1],
            groups=conv.groups, bias=bias)))
        out_shape: tuple[int, ...] = (conv.out_shape[0], conv.out_shape[2])
    else:
        if conv.pool is not None:
            pool = conv.pool
            chain.append((f"{name}.pool", nir.SumPool2d(kernel_size=np.array(pool.kernel), stride=np.array(
                pool.stride), padding=np.array(pool.padding))))
        chain.append((f"{name}.conv", nir.Conv2d(
            input_shape=conv.pooled_shape[1:], weight=conv.kernel.copy(), stride=conv.stride, padding=padding,
            dilation=conv.dilation, groups=conv.groups, bias=bias)))
        out_shape = conv.out_shape
    if tuple(post_shape) != out_shape:
        chain.append((f"{name}.flatten", nir.Flatten(input_type={"input": np.array(out_shape)}, start_dim=0)))
    return chain


def _bias_carriers(net: Network) -> dict[str, int]:
    """Population -> index of the projection whose Affine (or Conv bias) carries its bias."""
    bias_on: dict[str, int] = {}
    for k, proj in enumerate(net.projections):
        pop = net.populations[proj.post]
        if proj.post in bias_on or pop.bias is None or not np.any(pop.bias) or not proj.weights.nnz:
            continue
        if _expressible_as_conv(net, proj):
            if _uniform_delay(proj) == 0 and _channel_bias(pop, proj.conv) is not None:
                bias_on[proj.post] = k
        elif np.any(proj.delays == 0) and len(pop.shape) <= 1:
            bias_on[proj.post] = k
    return bias_on


def _unexpressible(what: str, why: str) -> ModelFileError:
    return ModelFileError(f"{what}: {why}; NIR has no node for it (no reshape to a multi-dimensional "
                          "population). Fix: keep such a network in neurocc's own artifacts, or flatten "
                          "the population in the model")


def to_nir_graph(net: Network):  # -> nir.NIRGraph
    import nir

    nodes: dict[str, object] = {}
    edges: list[tuple[str, str]] = []
    bias_on = _bias_carriers(net)
    for name, pop in net.populations.items():
        if pop.kind == INPUT:
            nodes[name] = nir.Input(input_type={"input": np.array(pop.shape)})
            continue
        params = {k: pop.params[k].reshape(pop.shape) for k in KIND_PARAMS[pop.kind]}
        nodes[name] = getattr(nir, pop.kind)(**params)
        if pop.bias is not None and np.any(pop.bias) and name not in bias_on:
            if len(pop.shape) > 1:
                raise _unexpressible(f"population {name!r} of shape {pop.shape}",
                                     "its bias is not one value per channel on a delay-0 convolution into it")
            # A constant input current: an Affine with zero weight from the first input.
            src = net.inputs[0]
            bname = f"{name}.__bias"
            nodes[bname] = nir.Affine(weight=np.zeros((pop.size, net.populations[src].size)),
                                      bias=pop.bias.copy())
            edges += [(src, bname), (bname, name)]
    for k, proj in enumerate(net.projections):
        pre_shape, post_shape = net.populations[proj.pre].shape, net.populations[proj.post].shape
        if _expressible_as_conv(net, proj):
            d = _uniform_delay(proj)
            bias = _channel_bias(net.populations[proj.post], proj.conv) if bias_on.get(proj.post) == k else None
            chain = _conv_chain(f"{proj.post}.__c{k}", proj.conv, pre_shape, post_shape, bias)
            if d:
                chain.insert(0, (f"{proj.post}.__delay{k}_d{d}",
                                 nir.Delay(delay=np.full(pre_shape, float(d) * net.dt))))
            nodes.update(chain)
            names = [proj.pre, *(n for n, _ in chain), proj.post]
            edges += list(zip(names[:-1], names[1:], strict=True))
            continue
        if len(post_shape) > 1:
            raise _unexpressible(f"projection {proj.pre!r} -> {proj.post!r}",
                                 f"a dense map into a population of shape {post_shape}")
        n_post, n_pre = proj.weights.shape
        rows, cols, vals, dels = proj.coo()
        source = proj.pre
        if len(pre_shape) > 1:  # a dense map reads the (C, H, W) population flattened
            source = f"{proj.post}.__flatten{k}"
            nodes[source] = nir.Flatten(input_type={"input": np.array(pre_shape)}, start_dim=0)
            edges.append((proj.pre, source))
        for d in np.unique(dels):
            sel = dels == d
            w = np.zeros((n_post, n_pre))
            w[rows[sel], cols[sel]] = vals[sel]
            lname = f"{proj.post}.__w{k}_d{int(d)}"
            if d == 0 and bias_on.get(proj.post) == k:
                nodes[lname] = nir.Affine(weight=w, bias=net.populations[proj.post].bias.copy())
            else:
                nodes[lname] = nir.Linear(weight=w)
            if d:
                dname = f"{proj.post}.__delay{k}_d{int(d)}"
                nodes[dname] = nir.Delay(delay=np.full(n_pre, float(d) * net.dt))
                edges += [(source, dname), (dname, lname)]
            else:
                edges.append((source, lname))
            edges.append((lname, proj.post))
    for out, pop in net.outputs.items():
        nodes[out] = nir.Output(output_type={"output": np.array(net.populations[pop].shape)})
        edges.append((pop, out))
    metadata = {"neurocc_dt": float(net.dt), "neurocc_discretization": net.discretization,
                "neurocc_dt_source": net.dt_source}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=False)


def write_graph(graph: Any, path: str | Path) -> Path:
    """Write a NIR graph as `path`; written to a temp file first so a failure leaves nothing behind."""
    import nir

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".nir.tmp", dir=path.parent)
    except OSError as exc:  # a parent is a file, or not writable
        blocker = next((q for q in [path.parent, *path.parent.parents] if q.exists()), path.parent)
        why = f"{blocker} is not a directory" if not blocker.is_dir() else (exc.strerror or str(exc))
        raise ModelFileError(
            f"{path}: cannot create a file in {path.parent} ({why}). Fix: save to a path in a writable directory"
        ) from None
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp's 0600 is not what a saved model file should be
    try:
        nir.write(tmp, graph)
        os.replace(tmp, path)
    except Exception as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ModelFileError(
            f"{path}: could not write NIR ({exc}). Fix: save to a writable path that is not a directory"
        ) from exc
    return path


def save(net: Network, path: str | Path) -> Path:
    """Write `net` as a .nir file (atomically: nothing is left behind on failure)."""
    return write_graph(to_nir_graph(net), path)
