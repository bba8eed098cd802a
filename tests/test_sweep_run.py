"""neurocc.sweep on a real dask.distributed LocalCluster with 2 worker processes (no mock cluster).

One cluster is shared by the module (starting one costs seconds). The points are tiny generated
networks; the kill test's points are a little larger so that a point is really running when its
worker is killed.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import dask
import pandas as pd
import pytest
from distributed import Client, LocalCluster

import neurocc
from neurocc.cli import main
from neurocc.sweep.point import MEASUREMENT_COLUMNS
from neurocc.sweep.run import SchedulerUnreachableError, sweep, with_window
from neurocc.sweep.spec import parse_spec
from neurocc.sweep.store import Store


def _spec(neurons: int, steps: int, core_neurons: list[int]) -> dict:
    return {"name": "tiny", "targets": ["loihi2", "spinnaker2"], "overrides": {"core.neurons": core_neurons},
            "networks": [{"family": "population_graph",
                          "params": {"n_populations": 4, "neurons": neurons, "p_connect": 0.5, "seed": 0},
                          "input": {"generate": "poisson", "rate": 0.1, "steps": steps, "seed": 0}}]}


TINY = _spec(40, 30, [32, 64])  # 4 points, ~0.05 s each
TINY_TOML = """name = "tiny"
targets = ["loihi2", "spinnaker2"]
[overrides]
"core.neurons" = [32, 64]
[[networks]]
family = "population_graph"
params = {n_populations = 4, neurons = 40, p_connect = 0.5, seed = 0}
input = {generate = "poisson", rate = 0.1, steps = 30, seed = 0}
"""  # TINY as a TOML file
SLOW = _spec(300, 500, [128, 256, 512])  # 6 points, ~0.5-1 s each: long enough to be killed mid-point


@pytest.fixture(scope="module")
def client():
    with dask.config.set({"distributed.scheduler.allowed-failures": 3}):
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.ERROR, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
    c = Client(cluster, set_as_default=False)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


@pytest.fixture
def ready(client):
    client.wait_for_workers(2, timeout=30)  # the kill test's worker is restarted by its nanny
    return client


def _metrics(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=list(MEASUREMENT_COLUMNS)).reset_index(drop=True)


@pytest.fixture(scope="module")
def serial_tiny():
    return sweep(TINY, serial=True, progress=False)


def test_cluster_equals_serial_row_for_row(ready, serial_tiny, tmp_path):
    spec = parse_spec(TINY)
    assert len(spec.points) == 4
    assert list(serial_tiny["point_id"]) == [p.point_id for p in spec.points]  # spec order
    assert (serial_tiny["status"] == "ok").all(), serial_tiny["error"].tolist()
    df = sweep(spec, client=ready, out_dir=tmp_path / "r", progress=False)
    assert df.attrs["executed"] == 4 and df.attrs["reused"] == 0
    pd.testing.assert_frame_equal(_metrics(df), _metrics(serial_tiny))
    # the stored rows (JSON) give back the same table: ints, floats, None and bools survive
    again = sweep(spec, client=ready, out_dir=tmp_path / "r", progress=False)
    assert again.attrs["executed"] == 0 and again.attrs["reused"] == 4
    pd.testing.assert_frame_equal(again, df)


def test_second_run_executes_nothing_and_temp_files_do_not_count(tmp_path, serial_tiny):
    out = tmp_path / "r"
    first = neurocc.sweep(TINY, serial=True, out_dir=out, progress=False)  # the package is callable
    assert first.attrs["executed"] == 4
    assert len(list((out / "points").glob("*.json"))) == 4 and (out / "spec.json").is_file()
    second = sweep(TINY, serial=True, out_dir=out, progress=False)
    assert second.attrs["executed"] == 0
    pd.testing.assert_frame_equal(second, first)
    # a torn write (temp file) and a damaged row are not finished: only those points run again
    victim, damaged = (out / "points" / f"{pid}.json" for pid in first["point_id"][:2])
    victim.rename(out / "points" / f".{victim.name}.abc.tmp")
    damaged.write_text('{"format": 1, "point_id": "')
    third = sweep(TINY, serial=True, out_dir=out, progress=False)
    assert third.attrs["executed"] == 2 and third.attrs["reused"] == 2
    pd.testing.assert_frame_equal(_metrics(third), _metrics(serial_tiny))
    # a different spec in the same directory is merged by point_id: the shared points are reused
    wider = sweep(_spec(40, 30, [32, 64, 128]), serial=True, out_dir=out, progress=False)
    assert wider.attrs["executed"] == 2 and wider.attrs["reused"] == 4 and len(wider) == 6
    assert len(Store(out).load(wider["point_id"])) == 6


def test_killed_worker_still_gives_every_row(ready, tmp_path):
    spec = parse_spec(SLOW)
    out = tmp_path / "r"
    box: dict = {}

    def run() -> None:
        try:
            box["df"] = sweep(spec, client=ready, out_dir=out, progress=False)
        except BaseException as exc:  # re-raised in the test's thread
            box["exc"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not list((out / "points").glob("*.json")):  # the first row has landed
            assert time.monotonic() < deadline and thread.is_alive(), box
            time.sleep(0.01)
        for _ in range(100):  # a worker between two points holds none for a moment
            busy = [addr for addr, keys in ready.processing().items() if keys]
            if busy:
                break
            time.sleep(0.01)
        assert busy, "no point running when the first row landed: make SLOW's points larger"
        victim = busy[0]
        running = set(ready.processing()[victim])
        pid = ready.run(os.getpid, workers=[victim])[victim]
        os.kill(pid, signal.SIGKILL)
    finally:
        thread.join(120)
    assert "exc" not in box, box.get("exc")
    df = box["df"]
    assert running, "the killed worker held no point"
    assert len(df) == len(spec.points) == 6
    assert (df["status"] == "ok").all(), df["error"].tolist()
    assert df.attrs["executed"] == 6 and df.attrs["failed"] == 0
    assert list(df["point_id"]) == [p.point_id for p in spec.points]
    assert len(list((out / "points").glob("*.json"))) == 6


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed when the with-block ends: nothing listens there


def test_unreachable_scheduler_is_a_named_error_before_any_work(tmp_path, monkeypatch, capsys):
    import neurocc.sweep.run as run

    monkeypatch.setattr(run, "CONNECT_TIMEOUT_S", 1.0)
    ran = []
    monkeypatch.setattr("neurocc.sweep.point.run_point", lambda p: ran.append(p))
    address = f"tcp://127.0.0.1:{_closed_port()}"
    t0 = time.monotonic()
    with pytest.raises(SchedulerUnreachableError, match=address):
        sweep(TINY, scheduler=address, out_dir=tmp_path / "r", progress=False)
    assert time.monotonic() - t0 < 10
    with pytest.raises(SchedulerUnreachableError, match="not a Dask scheduler address"):
        sweep(TINY, scheduler="localhost", out_dir=tmp_path / "r", progress=False)  # no port
    assert not ran and not (tmp_path / "r").exists()  # no point ran, nothing written
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY_TOML)
    assert main(["sweep", str(spec), "-o", str(tmp_path / "r"), "--scheduler", address]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"neurocc: error: Dask scheduler {address} unreachable") and "Fix:" in err
    assert not ran and not (tmp_path / "r").exists()


def test_cli_end_to_end_on_an_existing_scheduler(ready, tmp_path, capsys, serial_tiny):
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY_TOML)
    out = tmp_path / "results"
    address = ready.scheduler.address  # the shared cluster stands in for a user's: --scheduler, no code change
    assert main(["sweep", str(spec), "-o", str(out), "--scheduler", address, "--quiet", "--plot"]) == 0
    text = capsys.readouterr().out
    assert "4 points: 4 run now, 0 already in" in text
    table = [p for p in out.iterdir() if p.name.startswith("sweep.") and p.suffix in (".parquet", ".csv")]
    assert len(table) == 1, sorted(p.name for p in out.iterdir())
    read = pd.read_parquet if table[0].suffix == ".parquet" else pd.read_csv
    assert sorted(read(table[0])["point_id"]) == sorted(serial_tiny["point_id"])
    assert any(Path(line.split()[-1]).suffix == ".png" for line in text.splitlines() if line.startswith("wrote"))
    assert main(["sweep", str(spec), "-o", str(out), "--serial", "--quiet"]) == 0
    assert "4 points: 0 run now, 4 already in" in capsys.readouterr().out


def test_window_override_gives_the_single_run_metrics(serial_tiny):
    windowed = sweep(TINY, serial=True, window=8, progress=False)  # 30 steps: 4 windows
    assert (windowed["status"] == "ok").all(), windowed["error"].tolist()
    assert not set(windowed["point_id"]) & set(serial_tiny["point_id"])  # another configuration, other ids
    pd.testing.assert_frame_equal(_metrics(windowed).drop(columns="point_id"),
                                  _metrics(serial_tiny).drop(columns="point_id"))


def test_a_crashing_point_is_a_row_not_stored(tmp_path, monkeypatch):
    from neurocc.sweep import point

    real = point.run_point
    first = parse_spec(TINY).points[0].point_id

    def flaky(p):
        if p.point_id == first:
            raise RuntimeError("disk gone")
        return real(p)

    monkeypatch.setattr(point, "run_point", flaky)
    df = sweep(TINY, serial=True, out_dir=tmp_path, progress=False)
    assert df.attrs["failed"] == 1 and len(df) == 4
    assert df.loc[0, "status"] == "error" and df.loc[0, "error"] == "RuntimeError: disk gone"
    assert list(df.columns) == list(sweep(TINY, serial=True, progress=False).columns)
    monkeypatch.setattr(point, "run_point", real)
    again = sweep(TINY, serial=True, out_dir=tmp_path, progress=False)
    assert again.attrs["executed"] == 1 and (again["status"] == "ok").all()


def test_ctrl_c_leaves_only_complete_rows_and_no_workers(tmp_path):
    spec = tmp_path / "slow.toml"
    spec.write_text(TINY_TOML.replace("neurons = 40", "neurons = 200").replace("steps = 30", "steps = 300")
                    .replace("[32, 64]", "[64, 128, 256, 512, 1024, 2048]"))  # 12 points, ~0.3 s each
    out = tmp_path / "res"
    proc = subprocess.Popen([sys.executable, "-m", "neurocc.cli", "sweep", str(spec), "-o", str(out), "--quiet",
                             "--workers", "2"], start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not list((out / "points").glob("*.json")):
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130 and err.strip().endswith("neurocc: interrupted"), err
    assert "Traceback" not in err
    files = list((out / "points").iterdir())
    assert files and all(f.suffix == ".json" for f in files)  # no temp files left
    rows = Store(out).load(f.stem for f in files)
    assert len(rows) == len(files) < 12  # every file a complete row, and the sweep did stop
    deadline = time.monotonic() + 10
    while _alive_in_group(proc.pid):  # the embedded cluster's worker processes are gone too
        assert time.monotonic() < deadline, _alive_in_group(proc.pid)
        time.sleep(0.1)


def _alive_in_group(pgid: int) -> list[int]:
    """Processes of group `pgid` that are not zombies (a reparented zombie waits for init to reap it)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


def test_placement_sim_sweep_seam_still_runs_on_a_client(ready):
    from neurocc.runtime.placement_sim import sweep as seam

    configs = [{"a": 1}, {"a": 2, "b": 3}]
    assert seam(configs, dict, ready) == configs == seam(configs, dict)


def test_window_override_ids_are_the_specs_own():
    # --window must give the point the spec would have had with that window: same id, same stored row
    with_windows = parse_spec({**TINY, "window": [5, 10]})
    assert [p.params["window"] for p in with_windows.points[:2]] == [5, 10]
    for w in (10, None):
        plain = parse_spec({**TINY, "window": w} if w else TINY)
        assert [with_window(p, w).point_id for p in with_windows.points[1::2]] == [p.point_id for p in plain.points]
