"""`neurocc sweep --plot`: Pareto fronts and parameter heatmaps of a sweep table (matplotlib, Agg).

pareto.png, one row of panels per network: energy per inference vs worst latency, energy vs cores,
worst latency vs cores (all three minimised, log axes). Dominance is computed over all THREE objectives
at once, per network: a point is non-dominated when no other point of that network is at least as good on
energy, latency and cores and strictly better on one. Each panel is a 2-D view of that 3-D front, so a
non-dominated point may sit above and to the right of another in one panel (it wins on the third
objective). Non-dominated points are coloured by target; dominated points are grey. The line in each panel
joins the non-dominated points that are also non-dominated in that panel's two objectives (the panel's
own staircase front). Failed points have no figures; their count is in the panel title.

heatmap_<a>__<b>.png for each pair of swept parameters (params.* columns with >= 2 distinct values; when
only one parameter is swept, it is paired with the target): cell = energy per inference (log colour),
one panel per network (and per target when the target is not an axis), each with the values present in
it (a Cortex-M part has no core.neurons: its panel shows 'unset' only). A cell several points fall into
(other parameters vary too) shows their minimum. An error point is a red cross on its cell; a cell
with only error points is hatched.
"""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .table import fmt_value, ok_rows, param_columns, target_name

OBJECTIVES = ("energy_per_inference_j", "worst_latency_s", "cores")
AXIS_LABEL = {"energy_per_inference_j": "energy / inference", "worst_latency_s": "worst latency", "cores": "cores"}
UNIT = {"energy_per_inference_j": "J", "worst_latency_s": "s"}
PANELS = (("energy_per_inference_j", "worst_latency_s"), ("energy_per_inference_j", "cores"),
          ("worst_latency_s", "cores"))
MAX_ANNOTATED_CELLS = 150  # beyond this the numbers in the cells are unreadable


def pareto_mask(values: np.ndarray) -> np.ndarray:
    """Non-dominated rows of `values` [n, k], every column minimised.

    Row i is dominated when some row j is <= it in every column and < in at least one. Equal rows do not
    dominate each other, so duplicates of a front point are all on the front. A row with a NaN is never on
    the front and dominates nothing (a failed point has no figures)."""
    v = np.asarray(values, dtype=float)
    if v.ndim != 2:
        raise ValueError(f"pareto_mask: values must be 2-D [points, objectives], got shape {v.shape}")
    valid = ~np.isnan(v).any(axis=1)
    mask = valid.copy()
    w = v[valid]
    idx = np.flatnonzero(valid)
    for a, row in zip(idx, w, strict=True):  # O(n^2 k) in numpy: sweeps have hundreds to thousands of points
        dominated = np.all(w <= row, axis=1) & np.any(w < row, axis=1)
        mask[a] = not dominated.any()
    return mask


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _slug(s: str) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "_", s).strip("_") or "x"


def _colours(targets: list[str]) -> dict[str, Any]:
    plt = _plt()
    cmap = plt.get_cmap("tab10")
    return {t: cmap(k % 10) for k, t in enumerate(targets)}


def _figures(df: pd.DataFrame) -> pd.DataFrame:
    ok = ok_rows(df)
    cols = [c for c in OBJECTIVES if c in ok.columns]
    if len(cols) < len(OBJECTIVES):
        return ok.iloc[0:0]
    ok = ok.copy()
    for c in OBJECTIVES:
        ok[c] = pd.to_numeric(ok[c], errors="coerce")
    return ok.dropna(subset=list(OBJECTIVES))


def _count(v: float, _pos: int) -> str:
    return f"{v:g}"  # cores on a log axis: 10, not 10^1


def _short_params(row: pd.Series, cols: list[str]) -> str:
    """The swept values of a point, for a label next to it: '512' or '512/8'."""
    return "/".join(fmt_value(row[c]) for c in cols if fmt_value(row[c]) != "unset")


def _annotate(ax: Any, x: np.ndarray, y: np.ndarray, labels: list[str]) -> None:
    """Label front points with their swept values; points at one spot share a label ('256..2048 (x4)')."""
    spots: dict[tuple[float, float], list[str]] = {}
    for xi, yi, lab in zip(x, y, labels, strict=True):
        spots.setdefault((float(xi), float(yi)), []).append(lab)
    for (xi, yi), labs in spots.items():
        labs = [s for s in labs if s]
        if not labs:
            continue
        text = labs[0] if len(labs) == 1 else f"{labs[0]}..{labs[-1]} (x{len(labs)})"
        ax.annotate(text, (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=6, color="0.25")


def plot_pareto(df: pd.DataFrame, out_dir: str | Path) -> Path | None:
    """pareto.png (see the module doc); None when no point has figures."""
    plt = _plt()
    from matplotlib.ticker import EngFormatter, FuncFormatter, NullFormatter

    fig_df = _figures(df)
    networks = list(dict.fromkeys(df["network"])) if "network" in df.columns else []
    networks = [n for n in networks if (fig_df["network"] == n).any()]
    if not networks:
        return None
    targets = list(dict.fromkeys(target_name(t) for t in df["target"]))
    colour = _colours(targets)
    pcols = swept_params(df)
    fig, axes = plt.subplots(len(networks), 3, figsize=(13, 3.8 * len(networks)), squeeze=False)
    for r, network in enumerate(networks):
        sub = fig_df[fig_df["network"] == network]
        vals = sub[list(OBJECTIVES)].to_numpy(dtype=float)
        front = pareto_mask(vals)
        tnames = [target_name(t) for t in sub["target"]]
        labels = [_short_params(row, pcols) for _, row in sub.iterrows()]
        n_failed = int(((df["network"] == network) & (df["status"] != "ok")).sum())
        for c, (xk, yk) in enumerate(PANELS):
            ax = axes[r, c]
            x, y = vals[:, OBJECTIVES.index(xk)], vals[:, OBJECTIVES.index(yk)]
            ax.scatter(x[~front], y[~front], s=22, color="0.78", edgecolor="0.6", lw=0.5, zorder=2,
                       label="dominated" if (~front).any() else None)
            for t in dict.fromkeys(tnames):
                sel = front & np.array([n == t for n in tnames])
                if sel.any():
                    ax.scatter(x[sel], y[sel], s=38, color=colour[t], edgecolor="k", lw=0.5, zorder=3, label=t)
            # the panel's own 2-D front among the 3-D non-dominated points, as a staircase
            fi = np.flatnonzero(front)
            two = fi[pareto_mask(np.column_stack([x[fi], y[fi]]))]
            order = two[np.lexsort((y[two], x[two]))]
            if len(order) > 1:
                ax.step(x[order], y[order], where="post", color="k", lw=0.8, alpha=0.6, zorder=1)
            _annotate(ax, x[fi], y[fi], [labels[i] for i in fi])
            for axis, key, data in (("x", xk, x), ("y", yk, y)):
                if np.all(data > 0) and data.max() / max(data.min(), 1e-300) > 20:
                    getattr(ax, f"set_{axis}scale")("log")
                fmt = EngFormatter(unit=UNIT[key], places=0) if key != "cores" else FuncFormatter(_count)
                getattr(ax, f"{axis}axis").set_major_formatter(fmt)
                # a log axis spanning under a decade labels its minor ticks in 10^x notation, over each other
                getattr(ax, f"{axis}axis").set_minor_formatter(NullFormatter())
            ax.set_xlabel(AXIS_LABEL[xk])
            ax.set_ylabel(AXIS_LABEL[yk])
            ax.grid(True, which="major", lw=0.3, alpha=0.5)
            title = f"{network}: {int(front.sum())} of {len(sub)} non-dominated"
            ax.set_title(title + (f", {n_failed} failed" if n_failed else ""), fontsize=9)
            if c == 0:
                ax.legend(fontsize=7, loc="best")
    fig.suptitle("Pareto fronts (dominance over energy, worst latency and cores together)", fontsize=11)
    fig.tight_layout()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "pareto.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---- heatmaps ---------------------------------------------------------------------------------------------


def swept_params(df: pd.DataFrame) -> list[str]:
    """params.* columns taking >= 2 distinct values (absent counts as one value: 'unset')."""
    return [c for c in param_columns(df) if len({fmt_value(v) for v in df[c]}) >= 2]


def _axis_values(df: pd.DataFrame, col: str) -> list[str]:
    """Distinct labels of a column, numbers in numeric order, 'unset' last."""
    raw = list(dict.fromkeys(df[col]))
    labels = list(dict.fromkeys(fmt_value(v) for v in raw))

    def key(s: str) -> tuple[int, float, str]:
        if s == "unset":
            return (2, 0.0, s)
        try:
            return (0, float(s), s)
        except ValueError:
            return (1, 0.0, s)

    # targets top to bottom in spec order (the grid's origin is lower left)
    return labels[::-1] if col == "target" else sorted(labels, key=key)


def _labels(df: pd.DataFrame, col: str) -> pd.Series:
    if col == "target":
        return df["target"].map(target_name)
    return df[col].map(fmt_value)


def heatmap_pairs(df: pd.DataFrame) -> list[tuple[str, str]]:
    swept = swept_params(df)
    if len(swept) >= 2:
        return list(itertools.combinations(swept, 2))
    if len(swept) == 1 and "target" in df.columns and df["target"].nunique() >= 2:
        return [(swept[0], "target")]
    return []


def plot_heatmap(df: pd.DataFrame, x: str, y: str, out_dir: str | Path) -> Path:
    """Energy per inference over columns x and y (params.* or 'target'), one panel per network (x target)."""
    plt = _plt()
    from matplotlib.colors import LogNorm

    d = df.copy()
    d["_x"], d["_y"] = _labels(d, x), _labels(d, y)
    d["_e"] = pd.to_numeric(d.get("energy_per_inference_j"), errors="coerce")
    d["_ok"] = (d["status"] == "ok") & d["_e"].notna()
    d["_t"] = d["target"].map(target_name)
    xs, ys = _axis_values(d.assign(**{x: d["_x"]}), x), _axis_values(d.assign(**{y: d["_y"]}), y)
    size = (len(xs), len(ys))  # the figure is sized for every value; each panel shows the values it has
    facet_target = "target" not in (x, y) and d["_t"].nunique() > 1
    facets = [(n, t) for n in dict.fromkeys(d["network"])
              for t in (dict.fromkeys(d["_t"]) if facet_target else [None])
              if ((d["network"] == n) & ((d["_t"] == t) if t else True)).any()]
    energies = d.loc[d["_ok"] & (d["_e"] > 0), "_e"]
    norm = LogNorm(vmin=energies.min(), vmax=energies.max()) if len(energies) else None
    ncol = min(len(facets), 3)
    nrow = math.ceil(len(facets) / ncol)
    w, h = max(3.5, 0.7 * size[0] + 2.2), max(2.8, 0.45 * size[1] + 1.8)
    fig, axes = plt.subplots(nrow, ncol, figsize=(w * ncol, h * nrow), squeeze=False, layout="constrained")
    im = None
    for k, (network, tname) in enumerate(facets):
        ax = axes[k // ncol, k % ncol]
        sub = d[(d["network"] == network) & ((d["_t"] == tname) if tname else True)]
        xs = [v for v in _axis_values(d.assign(**{x: d["_x"]}), x) if v in set(sub["_x"])]
        ys = [v for v in _axis_values(d.assign(**{y: d["_y"]}), y) if v in set(sub["_y"])]
        grid = np.full((len(ys), len(xs)), np.nan)
        cores = np.full_like(grid, np.nan)
        err = np.zeros_like(grid, dtype=bool)
        seen = np.zeros_like(grid, dtype=bool)
        for _, row in sub.iterrows():
            i, j = ys.index(row["_y"]), xs.index(row["_x"])
            seen[i, j] = True
            if row["_ok"] and not row["_e"] >= grid[i, j]:  # the cell's least energy, and its cores
                grid[i, j] = row["_e"]
                cores[i, j] = pd.to_numeric(row.get("cores"), errors="coerce")
            else:
                err[i, j] = True
        shown = np.where(grid > 0, grid, np.nan)
        im = ax.imshow(shown, origin="lower", cmap="viridis", norm=norm, aspect="auto")
        for i, j in zip(*np.nonzero(err & np.isnan(grid)), strict=True):
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", ec="0.5", lw=0))
        ii, jj = np.nonzero(err)
        if len(ii):
            ax.scatter(jj, ii, marker="x", s=60, color="red", lw=1.8, zorder=3)
        if grid.size <= MAX_ANNOTATED_CELLS:
            from .table import si

            for i, j in zip(*np.nonzero(~np.isnan(grid)), strict=True):
                dark = norm is None or grid[i, j] <= 0 or norm(grid[i, j]) < 0.6  # viridis: dark below ~0.6
                text = si(grid[i, j], "J")
                if not np.isnan(cores[i, j]):
                    text += f"\n{int(cores[i, j])} core" + ("s" if cores[i, j] != 1 else "")
                ax.text(j, i, text, ha="center", va="center", fontsize=7, color="w" if dark else "k")
        for i, j in zip(*np.nonzero(~seen), strict=True):
            ax.text(j, i, "-", ha="center", va="center", fontsize=7, color="0.6")
        ax.set_xticks(range(len(xs)), xs, fontsize=8)
        ax.set_yticks(range(len(ys)), ys, fontsize=8)
        ax.set_xlabel(x.removeprefix("params."))
        ax.set_ylabel(y.removeprefix("params."))
        ax.set_title(f"{network}" + (f" on {tname}" if tname else ""), fontsize=9)
    for k in range(len(facets), nrow * ncol):
        axes[k // ncol, k % ncol].set_visible(False)
    if im is not None and norm is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), label="energy / inference (J)", shrink=0.9)
    fig.suptitle(f"energy per inference (and cores) over {x.removeprefix('params.')} x "
                 f"{y.removeprefix('params.')}; red x: an error point, -: no point", fontsize=10)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"heatmap_{_slug(x.removeprefix('params.'))}__{_slug(y.removeprefix('params.'))}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_sweep(df: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """pareto.png and one heatmap per pair of swept parameters into out_dir; returns the files written."""
    files = []
    pareto = plot_pareto(df, out_dir)
    if pareto is not None:
        files.append(pareto)
    for x, y in heatmap_pairs(df):
        files.append(plot_heatmap(df, x, y, out_dir))
    return files
