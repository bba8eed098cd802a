"""Write a float Network back to NIR: one Linear per (projection, delay), Delay nodes for delays.

A population's bias rides on its first delay-0 projection as an Affine, the form the frameworks' own exporters
write and their importers (snnTorch, Norse) read; only a population with no such projection gets the bias as
a zero-weight Affine from the first input.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from ..errors import ModelFileError
from ..ir import INPUT, KIND_PARAMS, Network


def to_nir_graph(net: Network):  # -> nir.NIRGraph
    import nir

    nodes: dict[str, object] = {}
    edges: list[tuple[str, str]] = []
    bias_on: dict[str, int] = {}  # population -> index of the projection whose Affine carries its bias
    for k, proj in enumerate(net.projections):
        pop = net.populations[proj.post]
        if (proj.post not in bias_on and pop.bias is not None and np.any(pop.bias)
                and proj.weights.nnz and np.any(proj.delays == 0)):
            bias_on[proj.post] = k
    for name, pop in net.populations.items():
        if pop.kind == INPUT:
            nodes[name] = nir.Input(input_type={"input": np.array(pop.shape)})
            continue
        params = {k: pop.params[k].reshape(pop.shape) for k in KIND_PARAMS[pop.kind]}
        nodes[name] = getattr(nir, pop.kind)(**params)
        if pop.bias is not None and np.any(pop.bias) and name not in bias_on:
            # A constant input current: an Affine with zero weight from the first input.
            src = net.inputs[0]
            bname = f"{name}.__bias"
            nodes[bname] = nir.Affine(weight=np.zeros((pop.size, net.populations[src].size)),
                                      bias=pop.bias.copy())
            edges += [(src, bname), (bname, name)]
    for k, proj in enumerate(net.projections):
        n_post, n_pre = proj.weights.shape
        rows, cols, vals, dels = proj.coo()
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
                edges += [(proj.pre, dname), (dname, lname)]
            else:
                edges.append((proj.pre, lname))
            edges.append((lname, proj.post))
    for out, pop in net.outputs.items():
        nodes[out] = nir.Output(output_type={"output": np.array(net.populations[pop].shape)})
        edges.append((pop, out))
    metadata = {"neurocc_dt": float(net.dt), "neurocc_discretization": net.discretization,
                "neurocc_dt_source": net.dt_source}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=False)


def save(net: Network, path: str | Path) -> Path:
    """Write `net` as a .nir file; written to a temp file first so a failure leaves nothing behind."""
    import nir

    path = Path(path)
    graph = to_nir_graph(net)
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
    try:
        nir.write(tmp, graph)
        os.replace(tmp, path)
    except Exception as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ModelFileError(
            f"{path}: could not write NIR ({exc}). Fix: save to a writable path that is not a directory"
        ) from exc
    return path
