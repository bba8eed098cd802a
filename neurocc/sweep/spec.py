"""The sweep specification: which networks, targets, target overrides, compile options and inputs to try.

A spec is a TOML file (read with tomllib) or the same structure as a Python dict. Paths in it are
relative to the spec file (to the working directory for a dict). Example::

    name = "core-budget"
    targets = ["loihi2", "spinnaker2", "stm32f405"]  # shipped names, paths to target .toml files, or
                                                     # tables {target = "loihi2", overrides = {...}}
    window = 25                                      # optional: steps per placement window (or a list)
    input = {generate = "poisson", steps = 50}       # optional: the default input of networks without one

    [overrides]                                      # dotted target fields; a list is swept
    "core.neurons" = [256, 512, 1024, 2048]

    [options]                                        # compile options; a list is swept
    seed = 0                                         # placement (METIS) seed
    rates = "input"                                  # "input": weigh placement by the input's float rates
                                                     # (as `neurocc place --input`); "default": uniform rates
    [[networks]]
    workload = "shd_delay_graph"                     # built-in: also nmnist_cnn_graph, dvs_gesture_cnn_graph
    params = {seed = 0, max_delay = 24}
    input = {generate = "poisson", rate = 0.05, steps = 100, seed = 0}

    [[networks]]
    nir = "model.nir"                                # a NIR file; optional dt, convention, discretization
    label = "my model"
    input = {path = "model_input.npz"}               # an .npz holding `input` [T, *input_shape]

    [[networks]]
    family = "random_network"                        # a generated family; list-valued params are swept
    params = {n_neurons = [1000, 4000], synapses_per_neuron = 20}

The points are the cross product networks x targets x overrides x options x window. Or give an
explicit list instead of `targets`/`[overrides]`: `points = [{network = "my model", target = "loihi2",
overrides = {"core.neurons" = 512}, options = {seed = 1}}, ...]`; `network` names a label (or labels)
of `networks`, and each entry may itself hold lists (a small cross product of its own).

Overrides and targets that lack a section. An override in the top-level `[overrides]` applies to every
target whose TOML has that section; a target without it (a Cortex-M part has no [core], [mesh] or
[router]: one CPU) runs once with the field unset, shown as None in that point's params column. So the
example above gives 4 + 4 + 1 points per network, not 12 where 3 would be one error repeated 4 times.
A global override that no target can take is an error (a typo, most likely), as is a per-target
override for a section its target lacks: an explicit request the target cannot honour.

Validation happens in `parse_spec`, before any compile: unknown keys anywhere (named, with the allowed
ones), unknown workloads, families or targets, missing files, and every distinct (target, overrides)
pair is parsed by the real target parser (compiler/targets/target.py `parse_target`), so a bad value
gets its named error. Budgets that size the machine must also be >= 1 (POSITIVE_FIELDS).

`point_id`: sha1 of the canonical JSON of network, target, overrides, options, input and window (first
16 hex chars). `params` is left out: it is derived from the others and from which values the whole spec
sweeps, so extending a sweep keeps the ids (and the finished rows) of the points it already had.
Paths enter the id resolved to absolute; moving the spec's directory gives new ids.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import itertools
import json
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..compiler.errors import NeuroccError, TargetError
from ..compiler.frontend.timing import CONVENTIONS
from ..compiler.ir import Network
from ..compiler.targets.target import _SECTIONS, TARGET_DIR, Target, parse_target, shipped_targets


class SweepSpecError(NeuroccError):
    """A sweep specification is malformed: names the field, what is allowed and the fix."""


# name -> (builder, keyword arguments of neurocc.load for its NIR graph). These return nir.NIRGraph.
def _workloads() -> dict[str, tuple[Any, dict[str, Any]]]:
    from .. import workloads as w

    return {"shd_delay_graph": (w.shd_delay_graph, {"dt": 0.01}),
            "nmnist_cnn_graph": (w.nmnist_cnn_graph, {"dt": 1.0, "discretization": "exp"}),
            "dvs_gesture_cnn_graph": (w.dvs_gesture_cnn_graph, {"dt": 1e-3})}


def _families() -> dict[str, Any]:
    """Generated families: functions returning a float Network directly."""
    from .. import workloads as w

    return {"random_network": w.random_network, "population_graph": w.population_graph}


TOP_KEYS = ("name", "networks", "targets", "overrides", "options", "input", "window", "points")
NETWORK_KEYS = ("nir", "workload", "family", "params", "label", "input", "dt", "convention", "discretization")
TARGET_KEYS = ("target", "overrides")
POINT_KEYS = ("network", "target", "overrides", "options", "window")
OPTION_DEFAULTS: dict[str, Any] = {"seed": 0, "rates": "input"}
RATES = ("input", "default")
INPUT_DEFAULT: dict[str, Any] = {"generate": "poisson", "rate": 0.05, "steps": 100, "seed": 0}
GENERATE_KEYS = ("generate", "rate", "steps", "seed")
# Budgets that size the machine: 0 would mean a core holds nothing (partition could never finish).
POSITIVE_FIELDS = frozenset({
    "mesh.chips_x", "mesh.chips_y", "mesh.cores_per_chip", "core.neurons", "core.synapse_memory_bytes",
    "core.input_axons", "core.output_axons", "core.delay_slots", "router.entries_per_chip",
})


@dataclass(frozen=True)
class Point:
    point_id: str
    network: dict[str, Any]  # {"kind": "nir"|"workload"|"family", "path" | "name" + "params", "label"}
    target: str  # shipped name or absolute path of a target .toml
    overrides: dict[str, Any]  # dotted target field -> value
    options: dict[str, Any]  # compile options: seed, rates
    input: dict[str, Any] | None  # {"path": ...} or {"generate": "poisson", "rate", "steps", "seed"}
    window: int | None  # steps per placement window; None = one window
    params: dict[str, Any]  # swept values of this point, flat dotted name -> scalar (table columns)

    def __hash__(self) -> int:  # the dict fields are unhashable; equal points have equal ids
        return hash(self.point_id)


@dataclass(frozen=True)
class Spec:
    name: str
    points: list[Point]
    source: str  # the spec file's path, or "<dict>"


def _err(where: str, msg: str) -> SweepSpecError:
    return SweepSpecError(f"sweep spec {where}: {msg}")


def _check_keys(table: Any, allowed: tuple[str, ...], what: str, where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise _err(where, f"{what} must be a table, not {type(table).__name__} ({table!r})")
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise _err(where, f"unknown field(s) {unknown} in {what}; allowed: {', '.join(allowed)}. "
                          "Fix: remove or rename them")
    return table


def _values(value: Any, what: str = "", where: str = "") -> list[Any]:
    """A list is swept; a scalar is one value. An empty list would silently sweep nothing."""
    if isinstance(value, list) and not value:
        raise _err(where, f"{what or 'a swept value'} is an empty list. Fix: at least one value")
    return list(value) if isinstance(value, list) else [value]


def _canon(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def point_id(network: dict[str, Any], target: str, overrides: dict[str, Any], options: dict[str, Any],
             input: dict[str, Any] | None, window: int | None) -> str:  # noqa: A002 (the Point field's name)
    """sha1 of the canonical JSON of what a point runs, first 16 hex chars (params left out: derived)."""
    body = {"network": network, "target": target, "overrides": overrides, "options": options, "input": input,
            "window": window}
    return hashlib.sha1(_canon(body).encode()).hexdigest()[:16]


# ---- networks ---------------------------------------------------------------------------------------------


def _check_params(fn: Any, params: dict[str, Any], what: str, where: str) -> None:
    sig = inspect.signature(fn)
    allowed = tuple(sig.parameters)
    _check_keys(params, allowed, f"{what} params", where)
    for name, p in sig.parameters.items():
        if name not in params:
            if p.default is inspect.Parameter.empty:
                raise _err(where, f"{what} needs parameter {name!r}. Fix: params = {{{name} = ...}}")
            continue
        want = str(p.annotation)
        for v in _values(params[name], f"{what} parameter {name}", where):
            ok = (want == "int" and isinstance(v, int) and not isinstance(v, bool)) or \
                 (want == "float" and isinstance(v, int | float) and not isinstance(v, bool))
            if not ok or v < 0 or (name.startswith("n_") and v < 1):
                raise _err(where, f"{what} parameter {name} = {v!r} should be a non-negative {want}"
                                  f"{' >= 1' if name.startswith('n_') else ''}. Fix: a value of that type")


def _input(raw: Any, base: Path, where: str) -> dict[str, Any]:
    if isinstance(raw, str):
        raw = {"path": raw}
    _check_keys(raw, ("path", *GENERATE_KEYS), "input", where)
    if "path" in raw:
        if len(raw) > 1:
            raise _err(where, f"input has both a path and {sorted(set(raw) - {'path'})}. Fix: one of the two")
        path = (base / str(raw["path"])).resolve()
        if not path.is_file():
            raise _err(where, f"input file {path} does not exist. Fix: the path of an .npz holding `input` "
                              "(relative to the spec file)")
        return {"path": str(path)}
    out = {**INPUT_DEFAULT, **raw}
    if out["generate"] != "poisson":
        raise _err(where, f"input.generate = {out['generate']!r}; allowed: 'poisson'")
    rate, steps, seed = out["rate"], out["steps"], out["seed"]
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
        raise _err(where, f"input.rate = {rate!r} must be a spike probability per input per step in 0..1")
    for key, v in (("steps", steps), ("seed", seed)):
        if isinstance(v, bool) or not isinstance(v, int) or v < (1 if key == "steps" else 0):
            raise _err(where, f"input.{key} = {v!r} must be an integer >= {1 if key == 'steps' else 0}")
    return {"generate": "poisson", "rate": float(rate), "steps": steps, "seed": seed}


def _networks(raw: Any, base: Path, default_input: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """Each [[networks]] entry, expanded over its list-valued params."""
    if not isinstance(raw, list) or not raw:
        raise _err(where, "`networks` must be a non-empty list of tables ([[networks]]). Fix: add one, "
                          "e.g. workload = \"shd_delay_graph\"")
    out = []
    for k, entry in enumerate(raw):
        at = f"{where} networks[{k}]"
        _check_keys(entry, NETWORK_KEYS, "a network", at)
        kinds = [key for key in ("nir", "workload", "family") if key in entry]
        if len(kinds) != 1:
            raise _err(at, f"a network needs exactly one of nir, workload, family (has {kinds or 'none'})")
        kind = kinds[0]
        params = entry.get("params", {})
        _check_keys(params, tuple(params) if isinstance(params, dict) else (), "params", at)
        inp = _input(entry["input"], base, at) if "input" in entry else default_input
        if kind == "nir":
            if "params" in entry:
                raise _err(at, "a nir network takes no params (dt, convention, discretization are its options)")
            path = (base / str(entry["nir"])).resolve()
            if not path.is_file():
                raise _err(at, f"NIR file {path} does not exist. Fix: a path relative to the spec file")
            net: dict[str, Any] = {"kind": "nir", "path": str(path), "label": str(entry.get("label", path.stem))}
            for key in ("dt", "convention", "discretization"):
                if key in entry:
                    net[key] = entry[key]
            dt = entry.get("dt", 1.0)
            if isinstance(dt, bool) or not isinstance(dt, int | float) or not dt > 0:
                raise _err(at, f"dt = {dt!r} must be the model's time step in seconds, > 0")
            for key, allowed in (("convention", tuple(CONVENTIONS)), ("discretization", ("euler", "exp"))):
                if key in entry and entry[key] not in allowed:
                    raise _err(at, f"{key} = {entry[key]!r}; allowed: {', '.join(allowed)}")
            out.append({"network": net, "input": inp, "swept": {}})
            continue
        for key in ("dt", "convention", "discretization"):
            if key in entry:
                raise _err(at, f"`{key}` is an option of nir networks; for a {kind}, put it in params if "
                               "its builder takes it")
        table = _workloads() if kind == "workload" else _families()
        name = entry[kind]
        if name not in table:
            raise _err(at, f"unknown {kind} {name!r}; known: {', '.join(sorted(table))}")
        fn = table[name][0] if kind == "workload" else table[name]
        _check_params(fn, params, f"{kind} {name}", at)
        keys = sorted(params)
        swept = [key for key in keys if isinstance(params[key], list)]
        for combo in itertools.product(*(_values(params[key], f"params.{key}", at) for key in keys)):
            chosen = dict(zip(keys, combo, strict=True))
            label = str(entry.get("label", name))
            if swept:
                label += "[" + ",".join(f"{key}={chosen[key]}" for key in swept) + "]"
            net = {"kind": kind, "name": name, "params": chosen, "label": label}
            out.append({"network": net, "input": inp, "swept": {f"network.{key}": chosen[key] for key in swept}})
    owner: dict[str, str] = {}
    for n in out:  # a label is a row's `network` column: two different networks may not share one
        label, body = n["network"]["label"], _canon(n["network"])
        if owner.setdefault(label, body) != body:
            raise _err(where, f"two networks are labelled {label!r}. Fix: give each its own `label`")
    return out


def build_network(point: Point) -> Network:
    """The point's float Network (a NIR file read, a workload's graph loaded, a family generated)."""
    from ..compiler.frontend import load

    net = point.network
    if net["kind"] == "nir":
        return load(net["path"], **{k: net[k] for k in ("dt", "convention", "discretization") if k in net})
    if net["kind"] == "workload":
        builder, load_kw = _workloads()[net["name"]]
        params = dict(net["params"])
        if "dt" in params:
            load_kw = {**load_kw, "dt": params["dt"]}
        return load(builder(**params), **load_kw)
    return _families()[net["name"]](**net["params"])


def build_input(point: Point, net: Network) -> np.ndarray | dict[str, np.ndarray]:
    """The point's input raster [T, *input_shape] (a dict per input population when there are several)."""
    from ..api import read_raster

    spec = point.input or INPUT_DEFAULT
    if "path" in spec:
        return read_raster(spec["path"])
    rng = np.random.default_rng(spec["seed"])
    rasters = {name: (rng.random((spec["steps"], *net.populations[name].shape)) < spec["rate"]).astype(np.float32)
               for name in net.inputs}
    return next(iter(rasters.values())) if len(rasters) == 1 else rasters


# ---- targets ----------------------------------------------------------------------------------------------


def _target_data(name: str) -> tuple[dict[str, Any], str]:
    """A target's TOML dict, as load_target reads it."""
    path = Path(name)
    if path.suffix != ".toml":
        path = TARGET_DIR / f"{name}.toml"
        if not path.exists():
            raise TargetError(f"unknown target {name!r}. Shipped: {', '.join(shipped_targets())}; or the path of "
                              "your own .toml")
    if not path.is_file():
        raise TargetError(f"target file {path} does not exist")
    try:
        return tomllib.loads(path.read_text()), str(path)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TargetError(f"{path}: not valid TOML ({exc})") from None


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of a target's TOML dict with dotted fields replaced; a copied section is never shared."""
    out = dict(data)
    for key, value in overrides.items():
        section, fld = key.split(".", 1)
        out[section] = {**out.get(section, {}), fld: value}
    if overrides:
        out["name"] = f"{data.get('name', '?')}[" + ",".join(f"{k}={v}" for k, v in sorted(overrides.items())) + "]"
    return out


def build_target(point: Point) -> Target:
    """The point's Target: its TOML with the overrides applied, through the real target parser."""
    data, where = _target_data(point.target)
    return parse_target(apply_overrides(data, point.overrides), where)


def _override_key(key: Any, where: str) -> tuple[str, str]:
    if not isinstance(key, str) or key.count(".") != 1:
        raise _err(where, f"override {key!r} must be a dotted target field such as \"core.neurons\"; sections: "
                          f"{', '.join(_SECTIONS)}")
    section, fld = key.split(".")
    if section not in _SECTIONS:
        raise _err(where, f"override {key!r}: unknown section [{section}]; allowed: {', '.join(_SECTIONS)}")
    names = [f.name for f in fields(_SECTIONS[section])]
    if fld not in names:
        raise _err(where, f"override {key!r}: unknown field {fld!r} of [{section}]; allowed: {', '.join(names)}")
    return section, fld


def _overrides(raw: Any, where: str) -> dict[str, list[Any]]:
    _check_keys(raw, tuple(raw) if isinstance(raw, dict) else (), "overrides", where)
    out = {}
    for key, value in raw.items():
        _override_key(key, where)
        values = _values(value, f"override {key!r}", where)
        for v in values:
            if key in POSITIVE_FIELDS and isinstance(v, int | float) and not isinstance(v, bool) and v < 1:
                raise _err(where, f"override {key} = {v!r}: must be >= 1 (it sizes the machine). Fix: a value >= 1")
        out[key] = values
    return out


def _resolve_target(name: Any, base: Path, where: str) -> tuple[str, dict[str, Any]]:
    if not isinstance(name, str):
        raise _err(where, f"a target is a shipped name or a .toml path, not {name!r}")
    resolved = str((base / name).resolve()) if name.endswith(".toml") else name
    try:
        data, _ = _target_data(resolved)
    except TargetError as exc:
        raise _err(where, str(exc)) from None
    return resolved, data


def _targets(raw: Any, base: Path, where: str) -> list[dict[str, Any]]:
    """[{"target": resolved name/path, "data": TOML dict, "overrides": {...} (per-target, strict)}]."""
    if isinstance(raw, str | dict):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise _err(where, f"`targets` must be a non-empty list; shipped: {', '.join(shipped_targets())}")
    out = []
    for k, item in enumerate(raw):
        at = f"{where} targets[{k}]"
        if isinstance(item, str):
            item = {"target": item}
        _check_keys(item, TARGET_KEYS, "a target", at)
        if "target" not in item:
            raise _err(at, "a target table needs `target` (a shipped name or a .toml path)")
        name, data = _resolve_target(item["target"], base, at)
        own = _overrides(item.get("overrides", {}), at)
        for key in own:
            if key.split(".")[0] not in data:
                raise _err(at, f"override {key!r}: target {name!r} has no [{key.split('.')[0]}] section. Fix: "
                               "drop the override for this target")
        out.append({"target": name, "data": data, "overrides": own})
    return out


# ---- options, points --------------------------------------------------------------------------------------


def _options(raw: Any, where: str) -> dict[str, list[Any]]:
    _check_keys(raw, tuple(OPTION_DEFAULTS), "options", where)
    out = {}
    for key, default in OPTION_DEFAULTS.items():
        values = _values(raw.get(key, default), f"options.{key}", where)
        for v in values:
            if key == "seed" and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise _err(where, f"options.seed = {v!r} must be an integer >= 0")
            if key == "rates" and v not in RATES:
                raise _err(where, f"options.rates = {v!r}; allowed: {', '.join(RATES)}")
        out[key] = values
    return out


def _windows(raw: Any, where: str) -> list[int | None]:
    values = _values(raw, "window", where)
    for v in values:
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise _err(where, f"window = {v!r} must be a number of steps >= 1 (or absent: one window)")
    return values


def _grid(table: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = sorted(table)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(table[k] for k in keys))]


def _expand(nets: list[dict[str, Any]], targets: list[dict[str, Any]], overrides: dict[str, list[Any]],
            options: dict[str, list[Any]], windows: list[int | None], where: str) -> list[dict[str, Any]]:
    for key in overrides:
        if not any(key.split(".")[0] in t["data"] for t in targets):
            raise _err(where, f"override {key!r}: no target has a [{key.split('.')[0]}] section "
                              f"({', '.join(t['target'] for t in targets)}). Fix: drop it or add such a target")
    raws = []
    for net, tgt in itertools.product(nets, targets):
        # Global overrides this target can take, then its own (which replace a global one of the same field).
        table = {k: v for k, v in overrides.items() if k.split(".")[0] in tgt["data"]}
        table.update(tgt["overrides"])
        for ov, opt, win in itertools.product(_grid(table), _grid(options), windows):
            raws.append({**net, "target": tgt["target"], "data": tgt["data"], "overrides": ov, "options": opt,
                         "window": win})
    return raws


def _explicit(raw: Any, nets: list[dict[str, Any]], base: Path, options: dict[str, list[Any]],
              windows: list[int | None], where: str) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        raise _err(where, "`points` must be a non-empty list of tables")
    by_label: dict[str, list[dict[str, Any]]] = {}
    for n in nets:  # a swept entry answers to its own label and to each expanded one
        label = n["network"]["label"]
        for key in {label, label.split("[")[0]}:
            by_label.setdefault(key, []).append(n)
    raws = []
    for k, entry in enumerate(raw):
        at = f"{where} points[{k}]"
        _check_keys(entry, POINT_KEYS, "a point", at)
        for key in ("network", "target"):
            if key not in entry:
                raise _err(at, f"a point needs `{key}`")
        chosen = []
        for label in _values(entry["network"], "network", at):
            if label not in by_label:
                raise _err(at, f"network {label!r} is no label of `networks`; labels: "
                               f"{', '.join(sorted({n['network']['label'] for n in nets}))}")
            chosen += by_label[label]
        tgts = _targets(_values(entry["target"], "target", at), base, at)
        opts = dict(options)
        if "options" in entry:  # validated with the defaults filled in; only the keys it names replace the spec's
            own = _options(entry["options"], at)
            opts.update({key: own[key] for key in entry["options"]})
        wins = _windows(entry["window"], at) if "window" in entry else windows
        for t in tgts:
            t["overrides"].update(_overrides(entry.get("overrides", {}), at))
            for key in t["overrides"]:
                if key.split(".")[0] not in t["data"]:
                    raise _err(at, f"override {key!r}: target {t['target']!r} has no [{key.split('.')[0]}] "
                                   "section. Fix: drop the override for this target")
        raws += _expand(chosen, tgts, {}, opts, wins, at)
    return raws


def _validate_targets(raws: list[dict[str, Any]], where: str) -> None:
    """Every distinct (target, overrides) pair through parse_target, once."""
    seen: set[str] = set()
    for r in raws:
        key = _canon([r["target"], r["overrides"]])
        if key in seen:
            continue
        seen.add(key)
        try:
            parse_target(apply_overrides(r["data"], r["overrides"]), r["target"])
        except TargetError as exc:
            shown = ", ".join(f"{k} = {v!r}" for k, v in sorted(r["overrides"].items())) or "no overrides"
            raise _err(where, f"target {r['target']} with {shown}: {exc}. Fix: a value the target parser "
                              "accepts") from None


def _points(raws: list[dict[str, Any]], where: str) -> list[Point]:
    _validate_targets(raws, where)
    # params: every override field of the spec (None where a target lacks it), and whatever else varies.
    ov_keys = sorted({k for r in raws for k in r["overrides"]})
    varying = {}
    for key in sorted({k for r in raws for k in r["options"]}):
        if len({_canon(r["options"].get(key)) for r in raws}) > 1:
            varying[f"options.{key}"] = lambda r, key=key: r["options"].get(key)
    for key in sorted({k for r in raws for k in r["swept"]}):
        varying[key] = lambda r, key=key: r["swept"].get(key)
    if len({r["window"] for r in raws}) > 1:
        varying["window"] = lambda r: r["window"]
    points, ids = [], set()
    for r in raws:
        pid = point_id(r["network"], r["target"], r["overrides"], r["options"], r["input"], r["window"])
        if pid in ids:
            continue  # the same configuration twice (e.g. two explicit entries overlap): run it once
        ids.add(pid)
        params = {k: r["overrides"].get(k) for k in ov_keys}
        params.update({k: f(r) for k, f in varying.items()})
        own = copy.deepcopy({k: r[k] for k in ("network", "overrides", "options", "input")})  # no shared dicts
        points.append(Point(pid, own["network"], r["target"], own["overrides"], own["options"], own["input"],
                            r["window"], params))
    return points


def parse_spec(spec: dict[str, Any] | str | Path) -> Spec:
    """A TOML path or a dict -> the validated Spec with every point; SweepSpecError before any work."""
    if isinstance(spec, dict):
        data, base, source = spec, Path.cwd(), "<dict>"
    else:
        path = Path(spec)
        if not path.is_file():
            raise SweepSpecError(f"sweep spec {path} does not exist. Fix: the path of a .toml spec")
        try:
            data = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SweepSpecError(f"sweep spec {path}: not valid TOML ({exc})") from None
        base, source = path.resolve().parent, str(path)
    where = source
    _check_keys(data, TOP_KEYS, "the spec", where)
    name = data.get("name", Path(source).stem if source != "<dict>" else "sweep")
    if not isinstance(name, str):
        raise _err(where, f"name = {name!r} must be a string")
    default_input = _input(data["input"], base, where) if "input" in data else dict(INPUT_DEFAULT)
    nets = _networks(data.get("networks"), base, default_input, where)
    options = _options(data.get("options", {}), where)
    windows = _windows(data.get("window"), where)
    if "points" in data:
        clash = [k for k in ("targets", "overrides") if k in data]
        if clash:
            raise _err(where, f"`points` is an explicit list; {clash} belong to the cross product. Fix: move them "
                              "into the points, or drop `points`")
        raws = _explicit(data["points"], nets, base, options, windows, where)
    else:
        if "targets" not in data:
            raise _err(where, "no `targets`. Fix: targets = [\"loihi2\", ...]; shipped: "
                              + ", ".join(shipped_targets()))
        raws = _expand(nets, _targets(data["targets"], base, where), _overrides(data.get("overrides", {}), where),
                       options, windows, where)
    return Spec(name, _points(raws, where), source)
