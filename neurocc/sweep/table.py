"""The sweep's table on disk, and its summary in the terminal.

Format: Parquet (via pyarrow) when pyarrow imports, else CSV. Parquet because the table is typed: an
int column (cores) stays int, a bool stays bool (argmax_agree), an absent figure stays a null rather than
an empty string that reads back as NaN or "", and an error text with commas or newlines needs no quoting
rules; it is one compressed file that pandas, polars, DuckDB and Spark read directly. CSV is the fallback
because pyarrow is an optional extra ([parquet]; pyarrow >= 20 needs numpy 2, which lava holds back), and a
slim install must still get a table that any spreadsheet opens. `read_table` reads either back.

Both are written atomically: to a temporary file in the same directory, then `os.replace`, so a reader
(or a Ctrl-C) never sees half a table. Writing one format removes the other's stale file from an earlier
run, so the directory never holds two tables that disagree.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..runtime.report import table

PARQUET_NAME = "sweep.parquet"
CSV_NAME = "sweep.csv"


def _have_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


def _parquet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Object columns that mix kinds (a param that is 512 for one target and "auto" for another) as text:
    Arrow columns hold one type. Columns of one kind plus None stay typed (None becomes null)."""
    out = df
    for col in df.columns:
        if df[col].dtype != object:
            continue
        if len({_kind(v) for v in df[col] if not _is_missing(v)}) > 1:
            if out is df:
                out = df.copy()
            out[col] = [None if _is_missing(v) else str(v) for v in df[col]]
    return out


def _kind(v: Any) -> str:
    if isinstance(v, bool | np.bool_):
        return "bool"
    return "number" if isinstance(v, int | float | np.number) else type(v).__name__


def write_table(df: pd.DataFrame, out_dir: str | Path) -> Path:
    """Write the sweep table to out_dir/sweep.parquet (pyarrow) or out_dir/sweep.csv; returns the path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parquet = _have_pyarrow()
    path = out / (PARQUET_NAME if parquet else CSV_NAME)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=out)
    os.close(fd)
    try:
        if parquet:
            plain = _parquet_safe(df)
            plain.attrs = {k: v for k, v in df.attrs.items() if isinstance(v, str | int | float | bool)}
            plain.to_parquet(tmp, engine="pyarrow", index=False)
        else:
            df.to_csv(tmp, index=False)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    (out / (CSV_NAME if parquet else PARQUET_NAME)).unlink(missing_ok=True)
    return path


def read_table(path: str | Path) -> pd.DataFrame:
    """A table written by write_table: the file itself, or the directory holding it."""
    p = Path(path)
    if p.is_dir():
        p = p / PARQUET_NAME if (p / PARQUET_NAME).exists() else p / CSV_NAME
    # round_trip: the C parser's default may differ from the written float in the last digit
    return pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p, float_precision="round_trip")


# ---- terminal summary -------------------------------------------------------------------------------------

_SI = ((1e0, ""), (1e-3, "m"), (1e-6, "u"), (1e-9, "n"), (1e-12, "p"))


def si(value: Any, unit: str) -> str:
    """3 significant digits with an SI prefix: 1.23 uJ. '-' for an absent value."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    v = float(value)
    for scale, prefix in _SI:
        if abs(v) >= scale:
            return f"{v / scale:.3g} {prefix}{unit}"
    return f"{v:.3g} {unit}" if v == 0 else f"{v / 1e-12:.3g} p{unit}"


def target_name(target: Any) -> str:
    """A shipped name as is; a target file by its stem."""
    s = str(target)
    return Path(s).stem if s.endswith(".toml") else s


def param_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if str(c).startswith("params.")]


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA


def fmt_value(v: Any) -> str:
    """A parameter value for a label: 512.0 (an int column with NaN) shows as 512, absent as 'unset'."""
    if _is_missing(v):
        return "unset"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def params_text(row: pd.Series, cols: list[str]) -> str:
    parts = [f"{c.removeprefix('params.')}={fmt_value(row[c])}" for c in cols if not _is_missing(row[c])]
    return ", ".join(parts) or "-"


def ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    if "status" not in df.columns:
        return df.iloc[0:0]
    return df[df["status"] == "ok"]


def summary_text(df: pd.DataFrame) -> str:
    """Points ok / failed; per network the best point by energy per inference, by worst latency and by
    fewest cores (ties broken by the other two, then spec order); then every failed point with its error."""
    n = len(df)
    ok = ok_rows(df)
    failed = df[df["status"] != "ok"] if "status" in df.columns else df.iloc[0:0]
    lines = [f"{n} point{'s' if n != 1 else ''}: {len(ok)} ok, {len(failed)} failed"]
    pcols = param_columns(df)
    criteria = (("least energy / inference", ["energy_per_inference_j", "worst_latency_s", "cores"]),
                ("lowest worst latency", ["worst_latency_s", "energy_per_inference_j", "cores"]),
                ("fewest cores", ["cores", "energy_per_inference_j", "worst_latency_s"]))
    for network in dict.fromkeys(df["network"]) if "network" in df.columns else []:
        sub = ok[ok["network"] == network]
        lines += ["", f"network {network}: {len(sub)} ok of {int((df['network'] == network).sum())}"]
        sub = sub.dropna(subset=["energy_per_inference_j", "worst_latency_s", "cores"])
        if sub.empty:
            lines.append("  no point fits")
            continue
        rows = []
        for label, keys in criteria:
            best = sub.sort_values(keys, kind="stable").iloc[0]
            rows.append([label, target_name(best["target"]), params_text(best, pcols),
                         si(best["energy_per_inference_j"], "J"), si(best["worst_latency_s"], "s"),
                         int(best["cores"]), best["point_id"]])
        body = table(["best by", "target", "params", "energy/inf", "worst latency", "cores", "point_id"], rows)
        lines += ["  " + s for s in body.splitlines()]
    if len(failed):
        lines += ["", "failed points:"]
        rows = [[r["point_id"], r.get("network"), target_name(r.get("target")), params_text(r, pcols),
                 " ".join(str(r.get("error")).split())] for _, r in failed.iterrows()]
        lines += ["  " + s for s in table(["point_id", "network", "target", "params", "error"], rows).splitlines()]
    return "\n".join(lines)
