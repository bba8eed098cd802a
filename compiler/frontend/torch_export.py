"""PyTorch SNN (snnTorch, Norse) -> plain NIR, through the frameworks' own exporters, with their defects fixed.

The exporters' module maps (snnTorch's `_extract_snntorch_module`, Norse's `_extract_norse_module`) run under
nirtorch's tracer exactly as `snntorch.export_to_nir` / `norse.torch.to_nir` run them, then every node is
rewritten so that the graph holds NIR's own semantics at the dt recorded in its metadata:

* snnTorch hard-codes dt = 1e-4 s (tau = dt/(1-beta), r = tau/dt): kept, and dt is recorded.
* snnTorch's scalar beta/threshold come out 0-d and its own `infer_types()` fails: broadcast per neuron.
* neither exporter drops the batch axis unless told (`ignore_dims`): passed, and Input/Output retyped.
* Norse writes tau = dt·tau_true: rewritten as tau_true = 1/tau_mem_inv; its LIFCell adds the input to i
  unscaled (w_in = tau_syn/dt); its IAFCell adds it to v unscaled (r = 1/dt); its v_reset is not exported.
* Norse's Conv2d has input_shape=None and its parameters may be 0-d: types inferred, scalars broadcast.

Everything that depends on torch is imported inside the functions: `import neurocc` must not need it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import InputError, ParameterError, UnsupportedNodeError

# snnTorch's exporter discretises every neuron with this step (snntorch/export_nir.py, 1.0.0).
SNNTORCH_DT = 1e-4
FRAMEWORKS = ("snntorch", "norse")
_INSTALL = "pip install neurocc[torch]"


def from_torch(module: Any, sample: Any, framework: str | None = None) -> Any:  # -> nir.NIRGraph
    """Export an snnTorch or Norse module to a plain NIR graph that neurocc (and other NIR readers) run as is.

    `sample` is one time step of input with a leading batch axis, e.g. `torch.zeros(1, 20)` or
    `torch.zeros(1, 2, 34, 34)`; the batch axis is dropped from every type. `framework` is 'snntorch' or
    'norse'; None detects it from the module's layer classes. The graph's metadata records `neurocc_dt`,
    `neurocc_discretization`, `neurocc_framework`, `neurocc_framework_version` and `neurocc_convention`,
    so `nir.write(path, graph)` gives a file that `neurocc.load(path)` reads with no flags.
    """
    torch = _require("torch")
    nir = _require("nir")
    fw = _framework(module, framework)
    lib = _require(fw)
    if not isinstance(module, torch.nn.Module):
        raise InputError(f"from_torch needs a torch.nn.Module, got {type(module).__name__}. "
                         "Fix: pass the network module itself")
    x = torch.as_tensor(np.asarray(sample.detach().cpu() if hasattr(sample, "detach") else sample),
                        dtype=torch.float32)
    if x.ndim < 2:
        raise InputError(f"sample must be one time step with a leading batch axis (B, *input_shape); got shape "
                         f"{list(x.shape)}. Fix: pass sample[None] (e.g. torch.zeros(1, {x.numel()}))")
    x = x[:1]
    spec = _SPECS[fw]()
    _check_layers(module, spec)
    shapes = _traced_shapes(module, x, spec, fw)
    dt, dt_source = spec.dt(module)
    layers = dict(module.named_modules())
    raw = _export(module, x, spec, dt, {id(layers[n]): shape for n, shape in shapes.items()})
    graph = _plain_graph(nir, raw, module, shapes, spec, dt, tuple(x.shape[1:]))
    graph.metadata = {
        "neurocc_dt": float(dt),
        "neurocc_discretization": "euler",
        "neurocc_dt_source": dt_source,
        "neurocc_framework": fw,
        "neurocc_framework_version": str(getattr(lib, "__version__", "unknown")),
        "neurocc_convention": fw,
        "neurocc_fixes": "; ".join(spec.fixes),
    }
    return graph


class _Spec(Protocol):
    """What one framework's exporter maps, and how each of its neuron layers reads in plain NIR."""

    name: str
    layers: tuple[type, ...]  # leaf layers its exporter maps
    neurons: tuple[type, ...]  # of which the neuron cells, whose nodes are rebuilt from the module
    opaque: tuple[type, ...]  # exported whole (a recurrent cell's own Linear is part of it)
    fixes: tuple[str, ...]

    def dt(self, module: Any) -> tuple[float, str]: ...

    def mapper(self, dt: float, sizes: dict[int, tuple[int, ...]]) -> Callable[[Any], Any]: ...

    def check(self, name: str, layer: Any) -> None: ...

    def neuron(self, nir: Any, layer: Any, node: Any, shape: tuple[int, ...], dt: float, name: str) -> Any: ...


class _SnnTorch:
    def __init__(self) -> None:
        import snntorch as snn
        import torch

        self.snn = snn
        self.name = "snntorch"
        self.neurons = (snn.Leaky, snn.Synaptic, snn.RLeaky, snn.RSynaptic)
        self.opaque = (snn.RLeaky, snn.RSynaptic)
        self.layers = (*self.neurons, torch.nn.Linear, torch.nn.Conv2d, torch.nn.AvgPool2d, torch.nn.Flatten)
        self.fixes = (f"dt = {SNNTORCH_DT:g} s hard-coded by the exporter, recorded",
                      "scalar beta/alpha/threshold broadcast per neuron", "ignore_dims=[0] (batch axis)")

    def dt(self, module: Any) -> tuple[float, str]:
        return SNNTORCH_DT, f"snnTorch's exporter discretises at dt = {SNNTORCH_DT:g} s (from_torch)"

    def mapper(self, dt: float, sizes: dict[int, tuple[int, ...]]) -> Callable[[Any], Any]:
        from snntorch.export_nir import _extract_snntorch_module

        def mapped(layer: Any) -> Any:
            # The exporter builds nir.LIF from beta and threshold as they are: a scalar next to a vector fails
            # NIR's same-shape check, two scalars fail type inference. Export a copy with both per neuron.
            if isinstance(layer, (self.snn.Leaky, self.snn.Synaptic)) and id(layer) in sizes:
                layer = _per_neuron_copy(layer, ("beta", "alpha", "threshold"), sizes[id(layer)])
            return _extract_snntorch_module(layer)

        return mapped

    def check(self, name: str, layer: Any) -> None:
        if not isinstance(layer, self.neurons):
            return
        cls = type(layer).__name__
        mech = getattr(layer, "reset_mechanism", "zero")
        if mech != "zero":
            # NIR resets to v_reset; snnTorch's default subtracts the threshold, which NIR cannot express.
            raise UnsupportedNodeError(
                f"layer {name!r} ({cls}): reset_mechanism={mech!r} cannot be expressed in NIR, which resets the "
                f"membrane to v_reset. Fix: build the layer with reset_mechanism='zero' (and retrain)")
        if getattr(layer, "reset_delay", False) and not isinstance(layer, self.snn.Leaky):
            # Leaky's delayed zero reset zeroes v before the next step's decay: the same spikes as NIR's reset.
            # Synaptic's and RLeaky's zero the whole next step's update instead (a refractory step).
            raise UnsupportedNodeError(
                f"layer {name!r} ({cls}): reset_delay=True zeroes the step after a spike (input included), which "
                "NIR cannot express. Fix: build the layer with reset_delay=False")
        for attr, ok, why in (("graded_spikes_factor", 1.0, "graded spikes"), ("inhibition", False, "inhibition"),
                              ("state_quant", False, "state quantization")):
            value = getattr(layer, attr, ok)
            value = float(value) if attr == "graded_spikes_factor" else bool(value)
            if value != ok:
                raise UnsupportedNodeError(f"layer {name!r} ({cls}): {why} ({attr}={value!r}) has no NIR form. "
                                           f"Fix: build the layer with {attr}={ok!r}")

    def neuron(self, nir: Any, layer: Any, node: Any, shape: tuple[int, ...], dt: float, name: str) -> Any:
        # The exporter's values are NIR at dt = 1e-4 already; only 0-d parameters need a shape.
        params = {k: _full(v, shape) for k, v in _node_params(node).items()}
        return type(node)(**params)


class _Norse:
    def __init__(self) -> None:
        import norse.torch as norse
        import torch

        self.name = "norse"
        self.neurons = (norse.LIFCell, norse.LIFBoxCell, norse.LIBoxCell, norse.IAFCell)
        self.opaque = ()
        self.layers = (*self.neurons, torch.nn.Linear, torch.nn.Conv2d)
        self.fixes = ("tau = dt·tau_true rewritten as tau_true = 1/tau_mem_inv",
                      "LIFCell w_in = tau_syn/dt (input added to i unscaled)",
                      "IAFCell r = 1/dt (input added to v unscaled)", "v_reset from the module",
                      "Conv2d input_shape inferred", "0-d parameters broadcast per neuron",
                      "ignore_dims=[0] (batch axis)")

    def dt(self, module: Any) -> tuple[float, str]:
        steps = {float(m.dt) for m in module.modules() if isinstance(m, self.neurons)}
        if len(steps) > 1:
            raise UnsupportedNodeError(f"the norse cells run at different dt ({sorted(steps)}); one NIR graph "
                                       "has one time step. Fix: give every cell the same dt")
        step = steps.pop() if steps else 1e-3
        return step, f"the norse cells' dt = {step:g} s (from_torch)"

    def mapper(self, dt: float, sizes: dict[int, tuple[int, ...]]) -> Callable[[Any], Any]:
        from norse.torch.utils.export_nir import _extract_norse_module

        return partial(_extract_norse_module, dt=dt)

    def check(self, name: str, layer: Any) -> None:
        return None

    def neuron(self, nir: Any, layer: Any, node: Any, shape: tuple[int, ...], dt: float, name: str) -> Any:
        import norse.torch as norse

        p = layer.p
        f = partial(_full, shape=shape)
        thr = f(p.v_th) if hasattr(p, "v_th") else None
        reset = f(getattr(p, "v_reset", 0.0))
        if isinstance(layer, norse.LIFCell):
            # v += dt/tau_mem (v_leak - v + i), i = (i + input)(1 - dt/tau_syn): w_in = tau_syn/dt restores the jump.
            tau_syn = 1.0 / f(p.tau_syn_inv)
            return nir.CubaLIF(tau_syn=tau_syn, tau_mem=1.0 / f(p.tau_mem_inv), r=f(1.0), v_leak=f(p.v_leak),
                               v_threshold=thr, v_reset=reset, w_in=tau_syn / dt)
        if isinstance(layer, norse.LIFBoxCell):
            return nir.LIF(tau=1.0 / f(p.tau_mem_inv), r=f(1.0), v_leak=f(p.v_leak), v_threshold=thr, v_reset=reset)
        if isinstance(layer, norse.LIBoxCell):
            return nir.LI(tau=1.0 / f(p.tau_mem_inv), r=f(1.0), v_leak=f(p.v_leak))
        # IAFCell: v += input (no dt); NIR's IF integrates dt·r·I.
        return nir.IF(r=f(1.0 / dt), v_threshold=thr, v_reset=reset)


_SPECS: dict[str, Callable[[], _Spec]] = {"snntorch": _SnnTorch, "norse": _Norse}


def module_from_entry_point(entry: str) -> Any:
    """The torch module an entry point names: `package.module:attr` or `path/to/file.py:attr`.

    `attr` is a module instance, or a callable taking no arguments that builds one (a factory, a class).
    """
    where, sep, attr = entry.rpartition(":")
    if not sep or not where or not attr:
        raise InputError(f"entry point {entry!r} is not 'module:attr'. Fix: e.g. mypkg.nets:build or "
                         "nets.py:build (attr names a module instance or a no-argument factory)")
    try:
        if where.endswith(".py"):
            path = Path(where)
            if not path.is_file():
                raise InputError(f"entry point {entry!r}: no file {path}. Fix: give an existing .py file")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            if spec is None or spec.loader is None:
                raise InputError(f"entry point {entry!r}: {path} cannot be imported. Fix: give a Python file")
            owner = importlib.util.module_from_spec(spec)
            sys.modules.setdefault(path.stem, owner)
            spec.loader.exec_module(owner)
        else:
            owner = importlib.import_module(where)
    except ImportError as exc:
        raise InputError(f"entry point {entry!r}: cannot import {where!r} ({exc}). Fix: install the package or "
                         "run from the directory that holds it") from None
    if not hasattr(owner, attr):
        raise InputError(f"entry point {entry!r}: {where!r} has no attribute {attr!r}. Fix: name the module "
                         "instance or its factory")
    value = getattr(owner, attr)
    torch = _require("torch")
    if not isinstance(value, torch.nn.Module) and callable(value):
        value = value()
    if not isinstance(value, torch.nn.Module):
        raise InputError(f"entry point {entry!r} gives a {type(value).__name__}, not a torch.nn.Module. Fix: "
                         "name a module instance or a factory that returns one")
    return value


def sample_of(source: str) -> np.ndarray:
    """One time step of input with a batch axis, from an input shape ('20', '2,34,34') or a .npy/.npz file
    (its 'sample' array, or its only one; a first axis of time or batch is cut to one)."""
    if Path(source).suffix in (".npy", ".npz"):
        try:
            data = np.load(source, allow_pickle=False)
            if isinstance(data, np.lib.npyio.NpzFile):
                names = data.files
                if "sample" not in names and len(names) != 1:
                    raise InputError(f"{source}: holds {names}; name the array 'sample'. Fix: np.savez(path, "
                                     "sample=x)")
                data = data["sample" if "sample" in names else names[0]]
        except (OSError, ValueError) as exc:
            raise InputError(f"{source}: cannot read the sample ({exc}). Fix: give a .npy/.npz array") from None
        x = np.asarray(data, np.float32)
        return x[:1] if x.ndim >= 2 else x[None]
    try:
        shape = tuple(int(v) for v in source.replace("x", ",").split(",") if v.strip())
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise InputError(f"--sample {source!r} is neither an input shape nor a .npy/.npz file. Fix: e.g. "
                         "--sample 20 or --sample 2,34,34 (one step, no batch axis)")
    return np.zeros((1, *shape), np.float32)


def export_file(entry: str, sample: str, out: Any, framework: str | None = None) -> Any:
    """`neurocc from-torch mypkg.nets:build --sample 2,34,34 -o net.nir`: export and write the .nir."""
    from .writer import write_graph

    return write_graph(from_torch(module_from_entry_point(entry), sample_of(sample), framework), out)


def _require(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise InputError(f"from_torch needs {name!r}, which is not installed ({exc}). Fix: {_INSTALL}") from None


def _framework(module: Any, framework: str | None) -> str:
    if framework is not None:
        if framework == "sinabs":
            raise UnsupportedNodeError(
                "framework 'sinabs' is not supported by from_torch: sinabs 3.1.3 pins nir<=1.0.4 and neurocc "
                "needs nir 1.0.8 (docs/frameworks.md). Fix: export with sinabs.to_nir in an environment of its "
                "own, nir.write the graph, and load the file with neurocc.load(path, convention='sinabs')")
        if framework not in FRAMEWORKS:
            raise InputError(f"unknown framework {framework!r}. Fix: use one of {', '.join(FRAMEWORKS)} (or None "
                             "to detect it)")
        return framework
    found = {type(m).__module__.split(".")[0] for m in module.modules()} if hasattr(module, "modules") else set()
    hits = [fw for fw in FRAMEWORKS if fw in found]
    if "sinabs" in found:
        return _framework(module, "sinabs")
    if len(hits) != 1:
        what = "both snnTorch and Norse layers" if hits else "no snnTorch or Norse layer"
        raise UnsupportedNodeError(f"cannot tell the framework of {type(module).__name__}: it has {what}. "
                                   "Fix: pass framework='snntorch' or 'norse' (one framework per module)")
    return hits[0]


def _check_layers(module: Any, spec: _Spec) -> None:
    inside_opaque: set[str] = set()
    for name, layer in module.named_modules():
        if any(name.startswith(p + ".") for p in inside_opaque):
            continue
        if isinstance(layer, spec.opaque):
            inside_opaque.add(name)
        if isinstance(layer, spec.layers):
            spec.check(name, layer)
            continue
        if next(layer.children(), None) is None and not _is_container(layer):
            known = ", ".join(sorted({c.__name__ for c in spec.layers}))
            raise UnsupportedNodeError(
                f"layer {name or '<root>'!r} ({type(layer).__module__}.{type(layer).__name__}) has no NIR mapping "
                f"in {spec.name}'s exporter. Fix: use only {known}")


def _is_container(layer: Any) -> bool:
    # An empty container exports nothing; every other leaf module is a layer the exporter must map.
    return type(layer).__name__ in ("Sequential", "SequentialState", "ModuleList")


def _traced_shapes(module: Any, x: Any, spec: _Spec, fw: str) -> dict[str, tuple[int, ...]]:
    """Each neuron layer's per-sample shape, from one forward pass (the layer's input, batch axis dropped)."""
    import torch

    shapes: dict[str, tuple[int, ...]] = {}
    hooks = []
    for name, layer in module.named_modules():
        if isinstance(layer, spec.neurons):
            def hook(_m: Any, args: tuple, _out: Any, name: str = name) -> None:
                shapes[name] = tuple(int(d) for d in args[0].shape[1:])
            hooks.append(layer.register_forward_hook(hook))
    try:
        with torch.no_grad():
            module(x)
    finally:
        for h in hooks:
            h.remove()
        _reset_state(module, fw)
    return shapes


def _reset_state(module: Any, fw: str) -> None:
    # snnTorch's init_hidden layers keep the traced step's membrane; leave the module as it came.
    if fw == "snntorch":
        from snntorch import utils

        utils.reset(module)


def _export(module: Any, x: Any, spec: _Spec, dt: float, sizes: dict[int, tuple[int, ...]]) -> Any:
    import nirtorch

    kwargs: dict[str, Any] = {"model_name": spec.name, "ignore_dims": [0]}
    if spec.opaque:
        kwargs["ignore_submodules_of"] = list(spec.opaque)
    try:
        graph = nirtorch.extract_nir_graph(module, spec.mapper(dt, sizes), x, **kwargs)
    finally:
        _reset_state(module, spec.name)
    return graph


def _plain_graph(nir: Any, raw: Any, module: Any, shapes: dict[str, tuple[int, ...]], spec: _Spec, dt: float,
                 in_shape: tuple[int, ...]) -> Any:
    layers = dict(module.named_modules())
    nodes: dict[str, Any] = {}
    for name, node in raw.nodes.items():
        if node is None:
            owner = layers.get(name)
            cls = type(owner).__name__ if owner is not None else "?"
            raise UnsupportedNodeError(f"layer {name!r} ({cls}) has no NIR mapping in {spec.name}'s exporter. "
                                       "Fix: remove or replace the layer")
        if isinstance(node, nir.NIRGraph):
            raise UnsupportedNodeError(f"layer {name!r} exported as a nested graph, which from_torch does not "
                                       "flatten. Fix: report the layer; flattened recurrence (snnTorch RLeaky) works")
        owner_name = _owner(name, shapes)
        if owner_name is not None and _is_neuron_node(nir, node):
            nodes[name] = spec.neuron(nir, layers[owner_name], node, shapes[owner_name], dt, name)
        elif isinstance(node, nir.Input):
            nodes[name] = nir.Input(input_type={"input": np.array(in_shape)})
        elif isinstance(node, nir.Output):
            nodes[name] = nir.Output(output_type={"output": None})  # typed by infer_types: no batch axis
        else:
            params = {k: _np(v) for k, v in _node_params(node).items()}
            if isinstance(node, nir.Flatten):
                params["input_type"] = None  # inferred below, without the batch axis
            nodes[name] = type(node)(**params)
    graph = nir.NIRGraph(nodes=nodes, edges=list(raw.edges), type_check=False)
    graph.infer_types()  # also fills Conv2d input_shape and Flatten input_type from the unbatched Input
    return nir.NIRGraph(nodes=graph.nodes, edges=graph.edges, type_check=True)


def _per_neuron_copy(layer: Any, names: tuple[str, ...], shape: tuple[int, ...]) -> Any:
    """A shallow copy of `layer` whose `names` tensors have the layer's shape; `layer` itself is not touched."""
    import copy

    import torch

    dup = copy.copy(layer)
    dup._parameters = dict(layer._parameters)
    dup._buffers = dict(layer._buffers)
    for key in names:
        value = getattr(layer, key, None)
        if value is None:
            continue
        full = torch.as_tensor(_full(value, shape), dtype=torch.float32)
        dup._parameters.pop(key, None)
        dup._buffers.pop(key, None)
        dup.__dict__.pop(key, None)
        dup.register_buffer(key, full)
    return dup


def _owner(node_name: str, shapes: dict[str, tuple[int, ...]]) -> str | None:
    """The neuron layer a node came from: 'lif1' itself, or 'rlif' for a recurrent cell's 'rlif.lif'."""
    if node_name in shapes:
        return node_name
    head = node_name.rsplit(".", 1)[0]
    return head if "." in node_name and head in shapes else None


def _is_neuron_node(nir: Any, node: Any) -> bool:
    return isinstance(node, (nir.LIF, nir.CubaLIF, nir.LI, nir.IF, nir.CubaLI, nir.I))


_SKIP = ("input_type", "output_type", "metadata")


def _node_params(node: Any) -> dict[str, Any]:
    import dataclasses

    return {f.name: getattr(node, f.name) for f in dataclasses.fields(node)
            if f.name not in _SKIP and f.init}


def _np(value: Any) -> Any:
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return value


def _full(value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A parameter as a float array of the layer's shape (0-d and size-1 values broadcast)."""
    arr = np.asarray(_np(value), dtype=np.float64)
    if arr.shape == shape:
        return arr.copy()
    if arr.size == 1:
        return np.full(shape, float(arr.ravel()[0]))
    try:
        return np.broadcast_to(arr, shape).copy()
    except ValueError:
        raise ParameterError(f"a neuron parameter of shape {list(arr.shape)} does not fit its layer's shape "
                             f"{list(shape)}. Fix: give one value, or one per neuron") from None
