"""Text tables and plots: network summaries, quantization reports, spike rasters."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..compiler.ir import INPUT, IntNetwork, LoweredNetwork, Network
from .simulator import SimResult


def table(headers: list[str], rows: list[list[object]]) -> str:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[k]) for r in cells)) if cells else len(h) for k, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(out)


def _range(arr: np.ndarray) -> str:
    lo, hi = float(np.min(arr)), float(np.max(arr))
    return f"{lo:.4g}" if lo == hi else f"{lo:.4g}..{hi:.4g}"


def inspect_text(net: Network) -> str:
    rows = []
    for name, pop in net.populations.items():
        incoming = net.incoming(name)
        syn = sum(p.n_synapses for p in incoming)
        delays = [p.delays for p in incoming if p.delays.size]
        dmax = int(max((d.max() for d in delays), default=0))
        params = ", ".join(f"{k}={_range(v)}" for k, v in pop.params.items())
        if pop.bias is not None and np.any(pop.bias):
            params += f", bias={_range(pop.bias)}"
        rows.append([name, pop.kind, "x".join(map(str, pop.shape)), pop.size, syn,
                     f"0..{dmax}" if delays else "-", params or "-"])
    head = (f"dt = {net.dt:g} s ({net.discretization}; {net.dt_source}); {net.n_neurons} neurons, "
            f"{net.n_synapses} synapses, inputs {net.inputs}, outputs {net.outputs}")
    proj_rows = [[p.pre, p.post, p.n_synapses, _range(p.weights.data) if p.n_synapses else "-",
                  f"{p.delays.min()}..{p.delays.max()}" if p.delays.size else "-",
                  p.conv.label if p.conv is not None else "sparse"] for p in net.projections]
    return "\n".join([
        head, "",
        table(["population", "kind", "shape", "neurons", "in-synapses", "delays", "parameters"], rows), "",
        table(["pre", "post", "synapses", "weights", "delays", "kind"], proj_rows),
    ])


@dataclass
class PopulationAgreement:
    population: str
    spike_count_corr: float
    exact_agreement: float  # fraction of (step, neuron) cells equal
    first_divergence: int | None  # step, or None
    float_spikes: int
    int_spikes: int


def gather(inet: IntNetwork, result: SimResult, source: str, n: int) -> np.ndarray:
    """Reassemble an integer run's spikes for NIR population `source` in its neuron order."""
    parts = inet.source_pops[source]
    steps = result.steps
    out = np.zeros((steps, n), dtype=bool)
    for name in parts:
        out[:, inet.populations[name].index] = result.spikes[name]
    return out


def compare_runs(net: Network, inet: IntNetwork, float_run: SimResult, int_run: SimResult
                 ) -> list[PopulationAgreement]:
    out = []
    for name, pop in net.populations.items():
        if pop.kind == INPUT or not pop.spiking:
            continue
        f = float_run.spikes[name]
        i = gather(inet, int_run, name, pop.size)
        diff = np.flatnonzero((f != i).any(axis=1))
        cf, ci = f.sum(0).astype(float), i.sum(0).astype(float)
        if cf.std() > 0 and ci.std() > 0:
            corr = float(np.corrcoef(cf, ci)[0, 1])
        else:
            corr = 1.0 if np.array_equal(cf, ci) else 0.0
        out.append(PopulationAgreement(name, corr, float((f == i).mean()),
                                       int(diff[0]) if diff.size else None, int(f.sum()), int(i.sum())))
    return out


def output_scores(net: Network, inet: IntNetwork, run: SimResult, integer: bool) -> dict[str, np.ndarray]:
    """Per output: spike counts (spiking output) or final membrane (readout), per neuron."""
    out = {}
    for name, src in net.outputs.items():
        pop = net.populations[src]
        if pop.spiking:
            spikes = gather(inet, run, src, pop.size) if integer else run.spikes[src]
            out[name] = spikes.sum(0).astype(float)
        else:
            if integer:
                v = np.zeros(pop.size)
                for part in inet.source_pops[src]:
                    p = inet.populations[part]
                    v[p.index] = run.v[part].astype(float).sum(0) * p.v_unit
                out[name] = v
            else:
                out[name] = run.v[src].astype(float).sum(0)
    return out


def argmax_agree(a: np.ndarray, b: np.ndarray) -> bool:
    """Same winner; two all-equal (e.g. silent) outputs count as agreeing."""
    if np.all(a == a[0]) and np.all(b == b[0]):
        return True
    return int(np.argmax(a)) == int(np.argmax(b))


@dataclass
class WeightQuantization:
    """How one projection's stored weights (a conv's kernel, or the sparse rows) survived quantization."""

    pre: str
    post: str
    kind: str  # the conv's label, or "sparse"
    stored: int  # weights stored: kernel entries, or synapses
    weight_exp: int
    mantissa_peak: int
    rel_rms_error: float  # rms(m 2^e / vth - w) / rms(w), in threshold units


def weight_quantization(lnet: LoweredNetwork, inet: IntNetwork) -> list[WeightQuantization]:
    """Per integer projection, its weights against the lowered (float, threshold-unit) ones."""
    lowered = {}
    for proj in lnet.projections:
        lowered.setdefault((proj.pre, proj.post), proj)
    rows = []
    for proj in inet.projections:
        low = lowered.get((proj.pre, proj.post))
        if low is None or (proj.conv is None) != (low.conv is None):
            continue
        if proj.conv is not None:
            want, mant = np.asarray(low.conv.kernel, float).ravel(), np.asarray(proj.conv.kernel).ravel()
        elif low.weights.shape == proj.weights.shape and low.weights.nnz == proj.weights.nnz:
            want, mant = np.asarray(low.weights.data, float), np.asarray(proj.weights.data)
        else:  # zero mantissas were dropped: compare on the lowered pattern
            want = np.asarray(low.weights.data, float)
            mant = np.asarray(proj.weights[low.weights.nonzero()]).ravel()
        got = mant.astype(float) * 2.0 ** proj.weight_exp / inet.populations[proj.post].vth
        rms = float(np.sqrt(np.mean(want ** 2))) if want.size else 0.0
        err = float(np.sqrt(np.mean((got - want) ** 2))) / rms if rms else 0.0
        rows.append(WeightQuantization(proj.pre, proj.post, proj.conv.label if proj.conv is not None else "sparse",
                                       int(mant.size), proj.weight_exp,
                                       int(np.abs(mant).max()) if mant.size else 0, err))
    return rows


def weights_text(rows: list[WeightQuantization]) -> str:
    return table(["pre", "post", "kind", "stored weights", "exponent", "mantissa peak", "rel. rms error"],
                 [[r.pre, r.post, r.kind, r.stored, r.weight_exp, r.mantissa_peak, f"{100 * r.rel_rms_error:.2f}%"]
                  for r in rows])


def agreement_text(rows: list[PopulationAgreement], argmax: dict[str, bool]) -> str:
    body = table(
        ["population", "count corr", "exact agreement", "first divergent step", "float spikes", "int spikes"],
        [[r.population, f"{r.spike_count_corr:.4f}", f"{100 * r.exact_agreement:.2f}%",
          "-" if r.first_divergence is None else r.first_divergence, r.float_spikes, r.int_spikes] for r in rows],
    )
    lines = [body, ""] + [f"output {k}: argmax {'agrees' if v else 'DIFFERS'}" for k, v in argmax.items()]
    return "\n".join(lines)


def plot_raster(result: SimResult, path: str | Path, title: str = "spike raster") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n, s in result.spikes.items() if s.size]
    fig, axes = plt.subplots(len(names), 1, figsize=(8, 1.2 + 1.6 * len(names)), sharex=True, squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=True):
        t, n = np.nonzero(result.spikes[name])
        ax.scatter(t, n, s=2, marker="|", color="k")
        ax.set_ylabel(name, rotation=0, ha="right", fontsize=8)
        ax.set_ylim(-0.5, result.spikes[name].shape[1] - 0.5)
    axes[-1, 0].set_xlabel("timestep")
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
