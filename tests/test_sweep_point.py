"""run_point: one complete, deterministic row per point; a point that does not fit is an error row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from neurocc.sweep import point as point_mod
from neurocc.sweep.point import COLUMNS, ENERGY_COMPONENTS, MEASUREMENT_COLUMNS, run_point
from neurocc.sweep.spec import parse_spec

EXAMPLES = Path(__file__).resolve().parents[1] / "neurocc" / "examples"
TINY = {"family": "random_network", "label": "tiny",
        "params": {"n_neurons": 48, "synapses_per_neuron": 8, "n_populations": 2, "n_inputs": 16, "max_delay": 3},
        "input": {"generate": "poisson", "rate": 0.4, "steps": 12, "seed": 0}}
HEAD = ("point_id", "network", "target", "status", "error")


def _points(targets: list, **extra) -> list:
    return parse_spec({"networks": [TINY], "targets": targets, **extra}).points


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    assert {k: v for k, v in a.items() if k not in MEASUREMENT_COLUMNS} == \
        {k: v for k, v in b.items() if k not in MEASUREMENT_COLUMNS}


@pytest.fixture(scope="module")
def rows() -> dict[str, dict]:
    points = _points(["spinnaker2", "loihi2", "stm32f405"], overrides={"core.neurons": 16})
    return {p.target: run_point(p) for p in points}


@pytest.mark.parametrize("target", ["spinnaker2", "loihi2", "stm32f405"])
def test_complete_row(rows: dict[str, dict], target: str) -> None:
    row = rows[target]
    assert row["status"] == "ok" and row["error"] is None, row["error"]
    assert set(row) == {*HEAD, *COLUMNS, "params.core.neurons"}
    assert all(row[c] is not None for c in COLUMNS), [c for c in COLUMNS if row[c] is None]
    assert all(isinstance(v, str | int | float | bool) or v is None for v in row.values())
    assert row["steps"] == 12 and row["network"] == "tiny" and row["target"] == target
    assert row["energy_per_inference_j"] > 0
    assert row["energy_per_inference_j"] == pytest.approx(sum(row[f"energy.{c}_j"] for c in ENERGY_COMPONENTS))
    assert 0.0 <= row["spike_agreement"] <= 1.0 and isinstance(row["argmax_agree"], bool)
    assert row["bottleneck_step_s"] > 0 and row["compile_s"] > 0 and row["peak_mem_mb"] >= 0


def test_mesh_and_one_cpu_rows(rows: dict[str, dict]) -> None:
    mcu, spin = rows["stm32f405"], rows["spinnaker2"]
    assert mcu["params.core.neurons"] is None and spin["params.core.neurons"] == 16
    assert (mcu["cores"], mcu["chips"], mcu["routing_entries"], mcu["link_load_total_packets"]) == (1, 1, 0, 0)
    # 48 neurons at 16 per core in 2 populations + the input's source cores.
    assert spin["cores"] >= 4 and spin["routing_entries"] >= 1
    assert spin["routing_entries_max_chip"] <= spin["routing_entries"]
    # A step's latency counts its compute, so a one-CPU part is not "instant": it has no transit only.
    assert mcu["spike_latency_s"] == 0 and mcu["worst_latency_s"] >= mcu["bottleneck_step_s"] > 0
    assert spin["worst_latency_s"] > spin["spike_latency_s"] > 0


def test_rows_deterministic_but_measurements() -> None:
    # Several chips, so placement (METIS, seeded) and links take part.
    p = _points([{"target": "spinnaker2", "overrides": {"core.neurons": 8, "mesh.cores_per_chip": 2}}])[0]
    a, b = run_point(p), run_point(p)
    _same(a, b)
    assert a["status"] == "ok" and a["chips"] > 1 and a["link_load_total_packets"] > 0
    assert a["link_load_max_packets"] <= a["link_load_total_packets"]


@pytest.mark.parametrize(("target", "needle"), [
    ({"target": "loihi2", "overrides": {"core.neurons": 4, "mesh.chips_x": 1, "mesh.chips_y": 1,
                                        "mesh.cores_per_chip": 2}}, "has 1 chips (2 cores): over by"),
    ({"target": "spinnaker2", "overrides": {"core.neurons": 4, "mesh.cores_per_chip": 2,
                                            "router.entries_per_chip": 1}}, "the router holds 1 (over by"),
    ({"target": "stm32f405", "overrides": {"memory.ram_bytes": 1000}}, "bytes of RAM, the part has 1000"),
])
def test_point_that_does_not_fit_is_an_error_row(target: dict, needle: str) -> None:
    row = run_point(_points([target])[0])
    assert row["status"] == "error"
    assert row["error"].startswith("TargetError: ") and needle in row["error"], row["error"]
    assert all(row[c] is None for c in COLUMNS if c not in MEASUREMENT_COLUMNS)
    assert row["compile_s"] is not None and row["peak_mem_mb"] is not None


def test_bad_input_is_an_error_row(tmp_path: Path) -> None:
    np.savez(tmp_path / "wrong.npz", input=np.zeros((5, 3), np.float32))  # the network has 16 inputs
    net = {**TINY, "input": {"path": str(tmp_path / "wrong.npz")}}
    row = run_point(parse_spec({"networks": [net], "targets": ["spinnaker2"]}).points[0])
    assert row["status"] == "error" and row["error"].startswith("InputError: "), row["error"]


def test_other_exceptions_propagate(monkeypatch: pytest.MonkeyPatch) -> None:
    def bug(*args, **kwargs):
        raise ZeroDivisionError("a bug, not a user error")

    monkeypatch.setattr(point_mod, "compile_network", bug)
    with pytest.raises(ZeroDivisionError):
        run_point(_points(["spinnaker2"])[0])


def test_nir_network_with_its_recording() -> None:
    spec = {"networks": [{"nir": str(EXAMPLES / "delay_rnn.nir"), "dt": 1e-3,
                          "input": {"path": str(EXAMPLES / "delay_rnn_input.npz")}}],
            "targets": ["spinnaker2"], "options": {"rates": "default"}}
    row = run_point(parse_spec(spec).points[0])
    assert row["status"] == "ok", row["error"]
    assert row["network"] == "delay_rnn" and row["steps"] > 0


def test_windowed_point_equals_one_window() -> None:
    """Through runtime/placement_window.py: its merged totals equal the single run's exactly."""
    one, windowed = _points([{"target": "spinnaker2", "overrides": {"core.neurons": 8, "mesh.cores_per_chip": 2}}],
                            window=[None, 3])
    a, b = run_point(one), run_point(windowed)
    assert a["status"] == b["status"] == "ok", (a["error"], b["error"])
    for row in (a, b):
        del row["point_id"], row["params.window"]
    _same(a, b)
