"""Sweep output: pareto_mask, the table on disk (Parquet and the CSV fallback), plots, the terminal summary.

Hand-made tables only (no compile, no cluster): these run in well under a second each.
"""

from __future__ import annotations

import builtins
import math

import numpy as np
import pandas as pd
import pytest

from neurocc.sweep import table as table_mod
from neurocc.sweep.plots import heatmap_pairs, pareto_mask, plot_sweep, swept_params
from neurocc.sweep.table import read_table, summary_text, write_table

ERROR = "PartitionError: population 'lif1' needs 300 neurons per core, core.neurons = 128. Fix: a larger core"


def _row(pid: str, network: str, target: str, neurons: int | None, delay_slots: int | None, energy: float,
         latency: float, cores: int) -> dict:
    return {"point_id": pid, "network": network, "target": target, "status": "ok", "error": None,
            "params.core.neurons": neurons, "params.core.delay_slots": delay_slots, "cores": cores, "chips": 1,
            "routing_entries": 3 * cores, "steps": 50, "bottleneck_step_s": 1e-6 * cores,
            "worst_latency_s": latency, "energy_per_inference_j": energy, "energy.synaptic_j": energy * 0.7,
            "energy.neuron_j": energy * 0.3, "spike_agreement": 0.999, "argmax_agree": True, "compile_s": 0.01,
            "peak_mem_mb": 12.5}


@pytest.fixture
def df() -> pd.DataFrame:
    rows = []
    k = 0
    for network in ("net-a", "net-b"):
        for neurons in (128, 256, 512):
            for slots in (16, 32):
                k += 1
                rows.append(_row(f"p{k:02d}", network, "loihi2", neurons, slots, 1e-6 * (1 + neurons / 512),
                                 (3 + slots / 16) * 1e-9, max(1, 512 // neurons)))
        k += 1
        rows.append(_row(f"p{k:02d}", network, "stm32f405", None, None, 3e-3, 0.0, 1))
    # one point that does not fit: no figures, its named error
    bad = {key: None for key in rows[0]}
    bad.update({"point_id": "bad0", "network": "net-a", "target": "loihi2", "status": "error", "error": ERROR,
                "params.core.neurons": 64, "params.core.delay_slots": 16, "compile_s": 0.002, "peak_mem_mb": 1.0})
    rows.append(bad)
    return pd.DataFrame(rows)


# ---- pareto_mask ------------------------------------------------------------------------------------------


def test_pareto_mask_simple_2d() -> None:
    v = np.array([[1, 5], [2, 2], [5, 1], [3, 3], [6, 6]])
    assert pareto_mask(v).tolist() == [True, True, True, False, False]


def test_pareto_mask_three_objectives_not_a_projection() -> None:
    # (2, 2, 1) loses to (1, 1, 5) on the first two objectives but wins on the third: non-dominated
    v = np.array([[1, 1, 5], [2, 2, 1], [2, 2, 5], [3, 3, 3]])
    assert pareto_mask(v).tolist() == [True, True, False, False]


def test_pareto_mask_duplicates_and_ties() -> None:
    v = np.array([[1, 2, 3], [1, 2, 3], [1, 2, 4], [0, 5, 3], [1, 2, 3]])
    # equal rows never dominate each other: all three copies stay; a tie on two objectives and worse on
    # the third is dominated
    assert pareto_mask(v).tolist() == [True, True, False, True, True]
    # a weak tie: equal on one objective, better on another -> dominates
    assert pareto_mask(np.array([[1, 1], [1, 2], [2, 1]])).tolist() == [True, False, False]


def test_pareto_mask_nan_rows_and_edges() -> None:
    v = np.array([[np.nan, 0, 0], [1, 1, 1], [2, 2, 2]])
    assert pareto_mask(v).tolist() == [False, True, False]  # NaN: not on the front, dominates nothing
    assert pareto_mask(np.empty((0, 3))).tolist() == []
    assert pareto_mask(np.array([[4.0, 4.0, 4.0]])).tolist() == [True]
    with pytest.raises(ValueError, match="2-D"):
        pareto_mask(np.array([1.0, 2.0]))


# ---- the table on disk ------------------------------------------------------------------------------------


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns)
    assert len(a) == len(b)
    for col in a.columns:
        for x, y in zip(a[col], b[col], strict=True):
            missing = [v is None or (isinstance(v, float) and math.isnan(v)) for v in (x, y)]
            assert missing[0] == missing[1], (col, x, y)
            if not missing[0]:
                assert x == y or float(x) == float(y), (col, x, y)


def test_write_table_parquet_round_trip(df: pd.DataFrame, tmp_path) -> None:
    path = write_table(df, tmp_path)
    assert path == tmp_path / "sweep.parquet"
    back = read_table(tmp_path)
    _same(df, back)
    assert back["cores"].dtype == df["cores"].dtype  # typed: Parquet keeps what CSV would lose
    assert not list(tmp_path.glob(".*tmp"))  # the temp file was renamed, nothing left over


def test_write_table_csv_without_pyarrow(df: pd.DataFrame, tmp_path, monkeypatch) -> None:
    real_import = builtins.__import__

    def no_pyarrow(name, *args, **kwargs):
        if name == "pyarrow" or name.startswith("pyarrow."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    write_table(df, tmp_path)  # a stale Parquet table from an earlier run with pyarrow
    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    assert not table_mod._have_pyarrow()
    path = write_table(df, tmp_path)
    assert path == tmp_path / "sweep.csv"
    assert not (tmp_path / "sweep.parquet").exists()  # never two tables that disagree
    _same(df, read_table(path))


def test_write_table_mixed_kinds_column(tmp_path) -> None:
    df = pd.DataFrame({"point_id": ["a", "b"], "params.options.mode": [512, "auto"], "status": ["ok", "ok"]})
    back = read_table(write_table(df, tmp_path))
    assert back["params.options.mode"].tolist() == ["512", "auto"]


# ---- plots and summary ------------------------------------------------------------------------------------


def test_plot_sweep_writes_pngs(df: pd.DataFrame, tmp_path) -> None:
    assert swept_params(df) == ["params.core.neurons", "params.core.delay_slots"]
    assert heatmap_pairs(df) == [("params.core.neurons", "params.core.delay_slots")]
    files = plot_sweep(df[df["network"] == "net-a"], tmp_path)  # one network (with the error row): fewer panels
    names = sorted(p.name for p in files)
    assert names == ["heatmap_core_neurons__core_delay_slots.png", "pareto.png"]
    for p in files:
        data = p.read_bytes()
        assert len(data) > 5000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_heatmap_pairs_one_param_pairs_with_target(df: pd.DataFrame) -> None:
    one = df.drop(columns=["params.core.delay_slots"])
    assert heatmap_pairs(one) == [("params.core.neurons", "target")]  # as the shipped example sweeps
    assert heatmap_pairs(one[one["target"] == "loihi2"]) == []


def test_plot_sweep_all_failed_writes_no_pareto(df: pd.DataFrame, tmp_path) -> None:
    bad = df[df["status"] == "error"]
    assert [p.name for p in plot_sweep(bad, tmp_path)] == []


def test_summary_text(df: pd.DataFrame) -> None:
    text = summary_text(df)
    assert text.splitlines()[0] == "15 points: 14 ok, 1 failed"
    assert "network net-a: 7 ok of 8" in text and "network net-b: 7 ok of 7" in text
    # net-a's least energy: 128 neurons per core; fewest cores: a tie at 1 core with
    # stm32f405 goes to the lower energy (loihi2 at 512 neurons), then the lower latency (16 slots)
    a = text.split("network net-a")[1].split("network net-b")[0]
    assert "least energy / inference  loihi2     core.neurons=128, core.delay_slots=16" in a
    assert "lowest worst latency      stm32f405" in a
    assert "fewest cores              loihi2     core.neurons=512, core.delay_slots=16" in a
    failed = text.split("failed points:")[1]
    assert "bad0" in failed and ERROR in failed


def test_summary_text_no_point_fits() -> None:
    df = pd.DataFrame([{"point_id": "x", "network": "n", "target": "loihi2", "status": "error",
                        "error": "TargetError: too big", "params.core.neurons": 1,
                        "energy_per_inference_j": None, "worst_latency_s": None, "cores": None}])
    text = summary_text(df)
    assert "1 point: 0 ok, 1 failed" in text and "no point fits" in text and "TargetError: too big" in text


def test_shipped_example_spec() -> None:
    """neurocc/examples/sweep.toml (docs/sweeps.md, README): 2 networks x (4 loihi2 + 4 spinnaker2 + 1 stm32f405)."""
    from importlib.resources import files

    from neurocc.sweep.spec import parse_spec

    spec = parse_spec(str(files("neurocc") / "examples" / "sweep.toml"))
    assert len(spec.points) == 18
    assert {p.network["label"] for p in spec.points} == {"shd-delay", "nmnist-cnn"}
    by_target = {t: sorted(p.params["core.neurons"] or 0 for p in spec.points if p.target == t)
                 for t in ("loihi2", "spinnaker2", "stm32f405")}
    assert by_target == {"loihi2": [256, 256, 512, 512, 1024, 1024, 2048, 2048],
                         "spinnaker2": [256, 256, 512, 512, 1024, 1024, 2048, 2048], "stm32f405": [0, 0]}
