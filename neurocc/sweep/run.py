"""Run a sweep's points as Dask tasks and collect one table (`neurocc sweep`, `neurocc.sweep`).

Where the points run:
  - `client` given: on that dask.distributed Client (the caller owns it; it is never closed here);
  - `scheduler="tcp://host:port"`: on an existing Dask cluster, connected with a short timeout
    (unreachable -> SchedulerUnreachableError before any point runs); the workers need neurocc installed;
  - neither: on an embedded LocalCluster sized to the machine (one single-threaded worker process per
    usable CPU, at most one per point to run), closed when the sweep ends;
  - `serial=True` (or client=False): in this process, one point after another, no Dask (the reference the
    tests compare to).

Nothing lost: each finished row is written atomically to `out_dir` as it arrives (store.py); a rerun
loads those and submits only the rest (`df.attrs["executed"]` counts the points that ran). A worker that
dies mid-point (killed, out of memory) is noticed by the scheduler, which hands that point to another
worker: up to `distributed.scheduler.allowed-failures` times (3 by default) before it raises KilledWorker.
(distributed 2026.8: the task goes back to "released" and is rescheduled; `retries=` does not count
deaths.) `retries=` adds re-runs for an exception escaping run_point (run_point returns NeuroccErrors as rows, so
this is for the unexpected: MemoryError, a lost file system). A point that still fails becomes a row with
status "error" and the exception named; that row is returned but not stored, so a rerun tries it again.
Ctrl-C cancels the outstanding points, closes the embedded cluster and re-raises: only complete rows are
on disk.

pandas: the table is a DataFrame: typed columns, None/NaN where a target has no figure (a one-CPU part
has no router), to_parquet/to_csv and groupby/pivot for the summary and plots come with it.

runtime.placement_sim.sweep (the seam ARCHITECTURE names) is kept as it is, for callers of the runtime
(which may not import neurocc/): for points this module supersedes it, because its client.map + gather
returns nothing until every configuration is done: no row written as it lands, no row for a failed one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd

from ..compiler.errors import NeuroccError
from .spec import Point, Spec, parse_spec, point_id
from .store import Store

CONNECT_TIMEOUT_S = 5.0  # to a user's scheduler: long enough for a remote host, short enough to fail fast
RETRIES = 1  # re-runs of a point whose task raised (worker deaths are the scheduler's allowed-failures)
ALLOWED_FAILURES = 3  # worker deaths one point may cause on the embedded cluster before KilledWorker
# The scheduler serves HTTP (health, metrics) even without a dashboard, by default on 8787: when another
# cluster holds that port it warns and moves. Any free port on loopback instead: no warning, nothing exposed.
_HTTP = "127.0.0.1:0"
# Run in each embedded worker process at start (a distributed preload, as script text): a terminal's Ctrl-C
# reaches the whole process group, and the workers' own KeyboardInterrupt tracebacks would bury the one-line
# "interrupted"; the sweep's process shuts them down itself.
# Their error logs too (a dropped client comm on shutdown): a point's failure comes back as its row anyway.
_WORKER_PRELOAD = """
import logging, signal, threading
if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
logging.getLogger("distributed").setLevel(logging.CRITICAL)
"""


class SchedulerUnreachableError(NeuroccError):
    """`--scheduler` names a Dask scheduler that cannot be reached."""


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the CPUs this process may use (containers, taskset)
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def with_window(point: Point, window: int | None) -> Point:
    """`point` with every placement run split into windows of `window` steps (--window); a new point_id."""
    if window == point.window:
        return point
    pid = point_id(point.network, point.target, point.overrides, point.options, point.input, window)
    params = {**point.params, "window": window} if "window" in point.params else point.params
    return dataclasses.replace(point, point_id=pid, window=window, params=params)


def _crash_row(point: Point, exc: BaseException) -> dict[str, Any]:
    """The row of a point whose task raised or whose workers died: run_point's columns, metrics None."""
    from .point import COLUMNS

    row: dict[str, Any] = {"point_id": point.point_id, "network": point.network.get("label"),
                           "target": point.target, "status": "error", "error": f"{type(exc).__name__}: {exc}"}
    row.update({f"params.{k}": v for k, v in point.params.items()})
    row.update(dict.fromkeys(COLUMNS))
    return row


def _probe(scheduler: str) -> None:
    """Open and close one comm to the scheduler: a bad address or a dead host fails here, within the timeout."""
    from distributed.comm import connect

    async def probe() -> None:
        comm = await connect(scheduler, timeout=CONNECT_TIMEOUT_S)
        await comm.close()

    # in a thread of its own: asyncio.run needs a thread without a running loop (a notebook's has one)
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, probe()).result()


def _connect(scheduler: str) -> Any:
    from distributed import Client

    try:
        # probed first: a Client that fails in __init__ leaves a half-made object whose __del__ hangs at exit
        _probe(scheduler)
        return Client(scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except ValueError as exc:
        raise SchedulerUnreachableError(f"--scheduler {scheduler!r} is not a Dask scheduler address ({exc}). "
                                        "Fix: give tcp://host:port, as `dask scheduler` prints it") from None
    except (OSError, TimeoutError) as exc:
        raise SchedulerUnreachableError(
            f"Dask scheduler {scheduler} unreachable within {CONNECT_TIMEOUT_S:g} s ({type(exc).__name__}: "
            f"{exc}). Fix: start one (`dask scheduler` and `dask worker {scheduler}`) and check host, port and "
            "firewall, or drop --scheduler to run on this machine") from None


def _local_client(n_workers: int) -> Any:
    import dask
    from distributed import Client, LocalCluster

    with dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES}):
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.ERROR, preload=[_WORKER_PRELOAD],
                               scheduler_kwargs={"dashboard_address": _HTTP})
    try:
        return Client(cluster, set_as_default=False)
    except BaseException:
        cluster.close()
        raise


def _close(client: Any) -> None:
    cluster = getattr(client, "cluster", None)
    try:
        client.close()
    finally:
        if cluster is not None:
            cluster.close()


def _bar(total: int, progress: bool | None, name: str) -> Any:
    from tqdm import tqdm

    # None: a bar only on a terminal (tqdm's disable=None), as `neurocc compile`'s progress
    return tqdm(total=total, desc=f"sweep {name}", unit="point", disable=None if progress is None else not progress)


Done = Callable[[Point, dict[str, Any], bool], None]  # (point, row, store it?)


def _run_serial(todo: list[Point], run: Callable[[Point], dict[str, Any]], done: Done) -> None:
    for point in todo:
        try:
            row = run(point)
        except Exception as exc:  # noqa: BLE001 - as a task that erred on a worker: a row, the sweep goes on
            done(point, _crash_row(point, exc), False)
            continue
        done(point, row, True)


class _CancelRace(logging.Filter):
    """Drops one known, harmless traceback: distributed 2026.8's sync() schedules a cancel callback when
    Ctrl-C lands in a blocking call; if that is before its future exists, the callback raises
    NameError('future') on the client's loop and tornado logs it, burying the one-line "interrupted"."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, NameError) and "'future'" in str(exc))


_TORNADO_LOG = logging.getLogger("tornado.application")


def _run_dask(client: Any, todo: list[Point], run: Callable[[Point], dict[str, Any]], done: Done,
              embedded: bool) -> None:
    from distributed import as_completed

    if not any(isinstance(f, _CancelRace) for f in _TORNADO_LOG.filters):
        _TORNADO_LOG.addFilter(_CancelRace())  # before any wait: the callback may run before our except does
    futures = {client.submit(run, p, pure=False, retries=RETRIES, key=f"neurocc-point-{p.point_id}-{time.time_ns()}"):
               p for p in todo}
    try:
        for fut in as_completed(futures, loop=client.loop):
            point = futures[fut]
            if fut.status == "finished":
                done(point, fut.result(), True)
            else:  # erred after its retries, KilledWorker after allowed-failures deaths, or cancelled
                try:
                    exc = fut.exception()
                except (Exception, asyncio.CancelledError) as err:  # cancelled by someone else on that cluster
                    exc = err
                done(point, _crash_row(point, exc), False)
            fut.release()
    except BaseException as exc:
        if embedded and isinstance(exc, KeyboardInterrupt):
            # our own scheduler's "couldn't gather" logs as it cancels would bury the one-line "interrupted"
            logging.getLogger("distributed").setLevel(logging.CRITICAL)
        client.cancel(list(futures))  # Ctrl-C or an error here: nothing keeps running for a gone sweep
        raise


def sweep(spec: Spec | dict[str, Any] | str | Path, client: Any = None, out_dir: str | Path | None = None,
          progress: bool | None = None, scheduler: str | None = None, workers: int | None = None,
          serial: bool = False, window: int | None = None) -> pd.DataFrame:
    """Run every point of `spec` (a Spec, a dict or a TOML path) and return one row per point, in spec order.

    `out_dir`: finished rows are stored there and reused on a rerun (see store.py). `workers`: size of the
    embedded LocalCluster (default: usable CPUs, at most one per point). `window`: steps per placement
    window for every point, overriding the spec. `df.attrs`: "executed" (points run now), "reused"
    (rows loaded from out_dir), "failed" (crash rows), "spec" (its name).
    """
    from .point import run_point

    if not isinstance(spec, Spec):
        spec = parse_spec(spec)
    if sum(x is not None and x is not False for x in (client, scheduler)) + bool(serial) > 1:
        raise NeuroccError("sweep: give at most one of client, scheduler and serial=True")
    if workers is not None and (client is not None or scheduler is not None or serial):
        raise NeuroccError("sweep: workers sizes the embedded LocalCluster; a client or scheduler brings its own "
                           "workers and serial=True runs here. Fix: drop workers")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise NeuroccError(f"sweep: workers = {workers!r} must be an integer >= 1. Fix: e.g. --workers 2")
    if window is not None and (not isinstance(window, int) or window < 1):
        raise NeuroccError(f"sweep: window = {window!r} must be a number of steps >= 1. Fix: e.g. --window 100")
    points = list(spec.points)
    if window is not None:  # points that differed only in their window are one point now
        unique: dict[str, Point] = {}
        for p in points:
            unique.setdefault((q := with_window(p, window)).point_id, q)
        points = list(unique.values())
    own = None
    log_level = logging.getLogger("distributed").level
    if scheduler is not None:
        own = client = _connect(scheduler)  # before the store and any work: fail fast on a wrong address
    try:
        store = Store(out_dir) if out_dir is not None else None
        rows: dict[str, dict[str, Any]] = store.load(p.point_id for p in points) if store else {}
        if store is not None:
            store.save_spec(dataclasses.replace(spec, points=points))
        reused = len(rows)
        todo, seen = [], set(rows)
        for p in points:
            if p.point_id not in seen:
                seen.add(p.point_id)
                todo.append(p)
        executed, failed = 0, 0
        bar = _bar(len(points), progress, spec.name)
        bar.update(reused)

        def done(point: Point, row: dict[str, Any], keep: bool) -> None:
            nonlocal executed, failed
            executed += 1
            failed += not keep
            if keep and store is not None:
                store.save(point.point_id, row)  # as it arrives: a crash later loses nothing finished
            rows[point.point_id] = row
            bar.update(1)

        try:
            if todo:
                if serial or client is False:
                    _run_serial(todo, run_point, done)
                else:
                    if client is None:
                        own = client = _local_client(workers or max(1, min(len(todo), usable_cpus())))
                    _run_dask(client, todo, run_point, done, embedded=own is not None and scheduler is None)
        finally:
            bar.close()
    finally:
        if own is not None:
            _close(own)
        logging.getLogger("distributed").setLevel(log_level)
    df = pd.DataFrame([rows[p.point_id] for p in points])
    df.attrs.update({"executed": executed, "reused": reused, "failed": failed, "spec": spec.name})
    return df
