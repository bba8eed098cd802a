"""Read a .nir file or a nir.NIRGraph into flat raw nodes and edges.

We read the HDF5 ourselves (h5py) rather than through `nir.read`, because real
files fail nir's own type check (leaked batch axes, missing input_shape) and
because a broken file must give a named error, not an h5py traceback.
Nested NIRGraphs are flattened: node `x` inside subgraph `g` becomes `g.x`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GraphError, ModelFileError

KNOWN_TYPES = frozenset({
    "Input", "Output", "Affine", "Linear", "Scale", "Conv1d", "Conv2d", "SumPool2d", "AvgPool2d",
    "Flatten", "Delay", "Threshold", "I", "IF", "LI", "LIF", "CubaLI", "CubaLIF", "NIRGraph",
})


@dataclass
class RawNode:
    name: str
    type: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class RawGraph:
    nodes: dict[str, RawNode]
    edges: list[tuple[str, str]]
    source: str
    metadata: dict[str, Any] = field(default_factory=dict)


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray) and value.dtype.kind in ("O", "S"):
        # Variable-length strings come back as object arrays, fixed-length ones (h5py writers other
        # than nir's) as bytes arrays; both hold node names.
        return np.array([_decode(v) for v in value.ravel()], dtype=object).reshape(value.shape)
    return value


def read_file(path: str | Path) -> RawGraph:
    """Read a .nir (HDF5) file; any failure is a ModelFileError naming the file."""
    import h5py

    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: no such file. Fix: check the path")
    if path.is_dir():
        raise ModelFileError(f"{path}: is a directory, not a .nir file. Fix: pass the .nir file itself")
    try:
        with h5py.File(path, "r") as f:
            if "node" not in f:
                raise ModelFileError(
                    f"{path}: HDF5 file has no 'node' group, so it is not a NIR file. "
                    "Fix: export the model with nir.write"
                )
            nodes: dict[str, RawNode] = {}
            edges: list[tuple[str, str]] = []
            _read_group(f["node"], "", nodes, edges, str(path))
            meta_group = f["node"].get("metadata")
            metadata = ({k: _decode(meta_group[k][()]) for k in meta_group if not hasattr(meta_group[k], "keys")}
                        if meta_group is not None and hasattr(meta_group, "keys") else {})
    except ModelFileError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise ModelFileError(
            f"{path}: cannot be read as NIR/HDF5 ({type(exc).__name__}: {' '.join(str(exc).split())}); the file "
            "is truncated or not a .nir file. Fix: re-export it"
        ) from None
    return RawGraph(nodes, edges, str(path), metadata)


def _read_group(group: Any, prefix: str, nodes: dict[str, RawNode], edges: list[tuple[str, str]],
                where: str) -> None:
    if "type" not in group:
        raise ModelFileError(f"{where}: group {group.name!r} has no 'type'. Fix: re-export the file")
    gtype = _decode(group["type"][()])
    if gtype != "NIRGraph":
        raise ModelFileError(f"{where}: top-level node is {gtype!r}, expected 'NIRGraph'. "
                             "Fix: export the whole model with nir.write")
    if "nodes" not in group:
        raise ModelFileError(f"{where}: graph {group.name!r} has no 'nodes'. Fix: re-export the file")
    for name in group["nodes"]:
        sub = group["nodes"][name]
        full = prefix + name
        if "type" not in sub:
            raise ModelFileError(f"{where}: node {full!r} has no 'type' dataset. Fix: re-export the file")
        ntype = _decode(sub["type"][()])
        if ntype == "NIRGraph":
            nodes[full] = RawNode(full, "NIRGraph")
            _read_group(sub, full + ".", nodes, edges, where)
            continue
        params: dict[str, Any] = {}
        for key in sub:
            if key == "type":
                continue
            item = sub[key]
            if hasattr(item, "keys"):  # a sub-group, e.g. input_type dicts of newer files
                params[key] = {k: _decode(item[k][()]) for k in item}
            else:
                params[key] = _decode(item[()])
        nodes[full] = RawNode(full, str(ntype), params)
    if "edges" in group:
        raw = _decode(group["edges"][()])
        raw = np.asarray(raw, dtype=object).reshape(-1, 2) if np.size(raw) else np.zeros((0, 2), object)
        for src, dst in raw:
            edges.append((prefix + str(src), prefix + str(dst)))


def read_graph(graph: Any) -> RawGraph:
    """Convert a nir.NIRGraph object into raw nodes (same form as read_file)."""
    nodes: dict[str, RawNode] = {}
    edges: list[tuple[str, str]] = []
    _walk_graph(graph, "", nodes, edges)
    return RawGraph(nodes, edges, "<nir.NIRGraph>", dict(getattr(graph, "metadata", None) or {}))


def _walk_graph(graph: Any, prefix: str, nodes: dict[str, RawNode], edges: list[tuple[str, str]]) -> None:
    import dataclasses

    if not hasattr(graph, "nodes") or not hasattr(graph, "edges"):
        raise GraphError(f"{type(graph).__name__} is not a nir.NIRGraph. Fix: pass a .nir path or a NIRGraph")
    for name, node in graph.nodes.items():
        full = prefix + str(name)
        ntype = type(node).__name__
        if ntype == "NIRGraph":
            nodes[full] = RawNode(full, "NIRGraph")
            _walk_graph(node, full + ".", nodes, edges)
            continue
        params: dict[str, Any] = {}
        if dataclasses.is_dataclass(node):
            for f in dataclasses.fields(node):
                if f.name in ("metadata", "output_type"):
                    continue
                if f.name == "input_type":
                    if ntype in ("Input", "Flatten"):
                        it = node.input_type or {}
                        val = it.get("input") if isinstance(it, dict) else it
                        if val is not None:
                            params["shape" if ntype == "Input" else "input_type"] = np.asarray(val)
                    continue
                params[f.name] = getattr(node, f.name)
        if ntype == "Output":
            ot = getattr(node, "output_type", None) or {}
            val = ot.get("output") if isinstance(ot, dict) else None
            if val is not None:
                params["shape"] = np.asarray(val)
        nodes[full] = RawNode(full, ntype, params)
    for src, dst in graph.edges:
        edges.append((prefix + str(src), prefix + str(dst)))
