"""The sweep spec: TOML and dict agree, the points it defines, named errors before any work, stable ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from neurocc.compiler.errors import NeuroccError
from neurocc.sweep import spec as spec_mod
from neurocc.sweep.spec import Point, SweepSpecError, build_input, build_network, build_target, parse_spec, point_id

EXAMPLES = Path(__file__).resolve().parents[1] / "neurocc" / "examples"

TOML = """
name = "core-budget"
targets = ["loihi2", "spinnaker2", "stm32f405"]

[overrides]
"core.neurons" = [256, 512, 1024, 2048]

[options]
seed = 3

[[networks]]
workload = "shd_delay_graph"
label = "SHD delay"
params = {seed = 0, max_delay = 24}
input = {generate = "poisson", rate = 0.05, steps = 40, seed = 1}

[[networks]]
workload = "nmnist_cnn_graph"
label = "N-MNIST CNN"
input = {path = "nmnist_input.npz"}
"""


def _dict_spec(npz: Path) -> dict:
    return {
        "name": "core-budget",
        "targets": ["loihi2", "spinnaker2", "stm32f405"],
        "overrides": {"core.neurons": [256, 512, 1024, 2048]},
        "options": {"seed": 3},
        "networks": [
            {"workload": "shd_delay_graph", "label": "SHD delay", "params": {"seed": 0, "max_delay": 24},
             "input": {"generate": "poisson", "rate": 0.05, "steps": 40, "seed": 1}},
            {"workload": "nmnist_cnn_graph", "label": "N-MNIST CNN", "input": {"path": str(npz)}},
        ],
    }


def _tiny(**extra) -> dict:
    return {"networks": [{"family": "random_network", "label": "tiny",
                          "params": {"n_neurons": 40, "synapses_per_neuron": 4, "n_populations": 2, "n_inputs": 8},
                          "input": {"steps": 5}}],
            "targets": ["spinnaker2"], **extra}


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    np.savez(tmp_path / "nmnist_input.npz", input=np.zeros((4, 2, 34, 34), np.float32))
    path = tmp_path / "sweep.toml"
    path.write_text(TOML)
    return path


def test_toml_and_dict_give_the_same_points(spec_file: Path) -> None:
    from_toml = parse_spec(spec_file)
    from_dict = parse_spec(_dict_spec(spec_file.parent / "nmnist_input.npz"))
    assert from_toml.name == from_dict.name == "core-budget"
    assert from_toml.points == from_dict.points
    assert from_toml.source == str(spec_file) and from_dict.source == "<dict>"


def test_acceptance_example_cross_product(spec_file: Path) -> None:
    """2 networks x (loihi2 4 + spinnaker2 4 + stm32f405 1): the MCU has no [core], so it runs once."""
    points = parse_spec(spec_file).points
    assert len(points) == 2 * (4 + 4 + 1)
    mcu = [p for p in points if p.target == "stm32f405"]
    assert len(mcu) == 2 and all(p.overrides == {} and p.params == {"core.neurons": None} for p in mcu)
    loihi = sorted(p.params["core.neurons"] for p in points if p.target == "loihi2")
    assert loihi == [256, 256, 512, 512, 1024, 1024, 2048, 2048]
    assert all(p.options == {"seed": 3, "rates": "input"} for p in points)
    # Point order: networks, then targets, then overrides (the spec's order).
    assert [p.network["label"] for p in points[:9]] == ["SHD delay"] * 9


def test_cross_product_multiplies_every_list() -> None:
    spec = _tiny(targets=["loihi2", "spinnaker2"], overrides={"core.neurons": [32, 64], "format.weight_bits": [6, 8]},
                 options={"seed": [0, 1], "rates": ["input", "default"]}, window=[None, 2])
    spec["networks"][0]["params"]["n_neurons"] = [40, 60]
    points = parse_spec(spec).points
    assert len(points) == 2 * 2 * 2 * 2 * 2 * 2 * 2
    assert set(points[0].params) == {"core.neurons", "format.weight_bits", "options.seed", "options.rates",
                                     "network.n_neurons", "window"}
    assert {p.network["label"] for p in points} == {"tiny[n_neurons=40]", "tiny[n_neurons=60]"}


def test_per_target_overrides_replace_the_global_ones() -> None:
    spec = _tiny(targets=["stm32f405", {"target": "loihi2", "overrides": {"core.neurons": [100, 200, 300]}}],
                 overrides={"core.neurons": [64], "format.weight_bits": [7, 8]})
    points = parse_spec(spec).points
    by_target: dict[str, list[Point]] = {}
    for p in points:
        by_target.setdefault(p.target, []).append(p)
    assert len(by_target["loihi2"]) == 3 * 2 and len(by_target["stm32f405"]) == 2
    assert {p.overrides["core.neurons"] for p in by_target["loihi2"]} == {100, 200, 300}
    assert all("core.neurons" not in p.overrides for p in by_target["stm32f405"])


def test_explicit_points() -> None:
    spec = _tiny(points=[{"network": "tiny", "target": "loihi2", "overrides": {"core.neurons": 64}},
                         {"network": "tiny", "target": ["spinnaker2", "stm32f405"], "options": {"seed": 5}}])
    del spec["targets"]
    points = parse_spec(spec).points
    assert [(p.target, p.overrides, p.options["seed"]) for p in points] == [
        ("loihi2", {"core.neurons": 64}, 0), ("spinnaker2", {}, 5), ("stm32f405", {}, 5)]
    assert points[0].params == {"core.neurons": 64, "options.seed": 0}


def test_point_ids_stable_distinct_and_kept_when_a_sweep_grows() -> None:
    a = parse_spec(_tiny(overrides={"core.neurons": [32, 64]})).points
    b = parse_spec(_tiny(overrides={"core.neurons": [32, 64]})).points
    assert [p.point_id for p in a] == [p.point_id for p in b]
    assert len({p.point_id for p in a}) == len(a) == 2
    assert all(len(p.point_id) == 16 and int(p.point_id, 16) >= 0 for p in a)
    p = a[0]
    assert len({*a, *b}) == 2 and hash(p) == hash(b[0])  # hashable (dict fields), by id
    assert p.network is not a[1].network  # each point owns its dicts
    assert p.point_id == point_id(p.network, p.target, p.overrides, p.options, p.input, p.window)
    grown = parse_spec(_tiny(targets=["spinnaker2", "loihi2"], overrides={"core.neurons": [32, 64, 128]})).points
    assert {p.point_id for p in a} <= {p.point_id for p in grown}


def test_builders(spec_file: Path) -> None:
    points = parse_spec(spec_file).points
    p = points[1]  # SHD delay on loihi2, 512 neurons per core
    target = build_target(p)
    assert target.core.neurons == 512 and target.family == "loihi"
    net = build_network(p)
    raster = build_input(p, net)
    assert raster.shape == (40, 140) and raster.dtype == np.float32
    assert np.array_equal(raster, build_input(p, net))  # seeded
    assert 0 < raster.mean() < 0.2


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation must not build a network or compile anything."""
    def boom(*args, **kwargs):
        raise AssertionError("parse_spec did work before validating")

    from neurocc.compiler import pipeline

    monkeypatch.setattr(pipeline, "compile_network", boom)
    monkeypatch.setattr(spec_mod, "build_network", boom)


@pytest.mark.usefixtures("no_work")
@pytest.mark.parametrize(("change", "needle"), [
    ({"colour": "red"}, "unknown field(s) ['colour'] in the spec; allowed: name, networks"),
    ({"options": {"seed": 0, "partitioner": "metis"}}, "unknown field(s) ['partitioner'] in options; allowed: seed"),
    ({"overrides": {"core.neuron": 64}}, "unknown field 'neuron' of [core]; allowed: neurons"),
    ({"overrides": {"cores.neurons": 64}}, "unknown section [cores]"),
    ({"overrides": {"core.neurons": -1}}, "core.neurons = -1: must be >= 1"),
    ({"overrides": {"core.neurons": 0}}, "core.neurons = 0: must be >= 1"),
    ({"overrides": {"core.neurons": "512"}}, "'core.neurons' = '512' should be int"),
    ({"overrides": {"format.weight_bits": 40}}, "'format.weight_bits' = 40 is outside 1..24"),
    ({"targets": ["loihi2"], "overrides": {"format.weight_bits": 12}}, "Lava's Dense takes 8-bit"),
    ({"targets": ["stm32f405"], "overrides": {"core.neurons": 64}}, "no target has a [core] section"),
    ({"targets": [{"target": "stm32f405", "overrides": {"mesh.chips_x": 2}}]}, "has no [mesh] section"),
    ({"targets": ["loihi3"]}, "unknown target 'loihi3'. Shipped: loihi1, loihi2"),
    ({"targets": ["nowhere.toml"]}, "nowhere.toml does not exist"),
    ({"options": {"rates": "measured"}}, "options.rates = 'measured'; allowed: input, default"),
    ({"window": 0}, "window = 0 must be a number of steps >= 1"),
    ({"networks": [{"nir": "missing.nir"}]}, "missing.nir does not exist"),
    ({"networks": [{"workload": "mnist_mlp"}]}, "unknown workload 'mnist_mlp'; known: dvs_gesture_cnn_graph"),
    ({"networks": [{"family": "random_network", "params": {"n_neurons": 10, "fanout": 3}}]},
     "unknown field(s) ['fanout'] in family random_network params"),
    ({"networks": [{"family": "random_network"}]}, "needs parameter 'n_neurons'"),
    ({"networks": [{"family": "random_network", "params": {"n_neurons": "big"}}]}, "n_neurons = 'big' should be"),
    ({"networks": [{"workload": "shd_delay_graph", "input": {"path": "nope.npz"}}]}, "nope.npz does not exist"),
    ({"networks": [{"workload": "shd_delay_graph", "input": {"rate": 2.0}}]}, "input.rate = 2.0 must be"),
    ({"networks": [{"workload": "shd_delay_graph", "input": {"steps": 5, "hz": 3}}]}, "unknown field(s) ['hz']"),
    ({"points": [{"network": "other", "target": "loihi2"}]}, "network 'other' is no label of `networks`"),
    ({"overrides": {"core.neurons": []}}, "override 'core.neurons' is an empty list"),
    ({"networks": [{"nir": str(EXAMPLES / "delay_rnn.nir"), "convention": "keras"}]},
     "convention = 'keras'; allowed: nir, snntorch"),
    ({"networks": [{"workload": "shd_delay_graph"}, {"workload": "shd_delay_graph", "params": {"seed": 1}}]},
     "two networks are labelled 'shd_delay_graph'. Fix: give each its own `label`"),
])
def test_named_errors_before_any_work(change: dict, needle: str) -> None:
    spec = _tiny()
    if "points" in change:
        del spec["targets"]
    spec.update(change)
    with pytest.raises(SweepSpecError) as info:
        parse_spec(spec)
    assert needle in str(info.value)
    assert isinstance(info.value, NeuroccError)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(SweepSpecError, match="does not exist"):
        parse_spec(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("targets = [loihi2")
    with pytest.raises(SweepSpecError, match="not valid TOML"):
        parse_spec(bad)


def test_nir_network_relative_to_the_spec_file(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "net.nir").write_bytes((EXAMPLES / "delay_rnn.nir").read_bytes())
    spec = tmp_path / "s.toml"
    spec.write_text('targets = ["spinnaker2", "my.toml"]\n[[networks]]\nnir = "models/net.nir"\n')
    (tmp_path / "my.toml").write_text((spec_mod.TARGET_DIR / "loihi2.toml").read_text())
    points = parse_spec(spec).points
    assert points[0].network == {"kind": "nir", "path": str(tmp_path / "models" / "net.nir"), "label": "net"}
    assert points[1].target == str(tmp_path / "my.toml")
    assert build_target(points[1]).name == "loihi2"
