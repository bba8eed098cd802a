"""Classification accuracy of a float Network on labelled samples: float, each target's integer model, executor.

- Input coding: `rate_code(sample, steps)` (deterministic), the same raster on every target.
- Score: output spike counts over the run (`output_scores`), then argmax; ties go to the lowest index
  (numpy's argmax), so a silent output always answers class 0.
- Float: `simulate_float` at latency="hardware" (one step per projection, as the integer model, so the two
  compare step by step) and at latency="framework" (same-step delivery: what snnTorch/Norse report).
- Integer: the target's IntNetwork run on all samples at once by `BatchedInteger` (the same arithmetic as
  `simulate_int`, vectorised over samples), cross-checked spike for spike against `simulate_int` on samples.
- Executor: compiled and emitted once per target, then run on the family's executor (the one `neurocc verify`
  runs: Lava, the SpiNNaker table executor, the host-built Cortex-M engine). Where the network's state
  drains to exactly zero after its input stops (leaky neurons, no bias), the samples go in ONE executor run,
  each followed by enough silent steps to drain ("chained"): Lava costs ~2 s per call whatever the length.
  Otherwise (a bias keeps charging, or IF neurons never leak) one run per sample, so Lava is ~2 s a sample.
  Either way every executed sample's spikes, every population and step, must equal the integer model's for
  that sample, so executor accuracy == integer accuracy is checked, not assumed.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..compiler.errors import InputError, VerificationError
from ..compiler.ir import IntNetwork, Network
from ..compiler.ir.lif import LifNeurons, Widths, shift_by_exponent
from ..compiler.pipeline import compile_network, to_integer
from .encoding import rate_code
from .report import table
from .simulator import simulate_float, simulate_int

ALL_TARGETS = ("loihi1", "loihi2", "spinnaker1", "spinnaker2", "stm32f405", "nrf52840", "stm32h743")
SUBSET = 32  # samples the executor runs with executor="subset" (evenly spaced over the set)
CROSS_CHECK = 8  # samples simulate_int re-runs to check BatchedInteger
MAX_DRAIN = 2048  # silent steps allowed for the state to reach zero before chaining is given up

ExecutorChoice = Literal[False, "subset", "all"] | int


class BatchedInteger:
    """`simulate_int`'s integer LIF + projections, for B samples at once (state [B, n]).

    Projections become dense (n_pre, delays * n_post) matrices: a step's delivery is one matmul of the
    spike counts, in float64 (exact: integer sums stay far below 2**53), then the weight exponent's shift
    on the per-step sum, as EventProjection does. Only for networks whose matrices fit in memory.
    """

    def __init__(self, inet: IntNetwork) -> None:
        if len(inet.inputs) != 1:
            raise InputError(f"accuracy: one input population expected, the network has {inet.inputs}. "
                             "Fix: evaluate a single-input network")
        self.inet = inet
        self.input = inet.inputs[0]
        self.lifs = [n for n, p in inet.populations.items() if not p.is_input]
        self.offset: dict[str, int] = {}
        n = 0
        for name in self.lifs:
            self.offset[name] = n
            n += inet.populations[name].size
        self.n = n

        def per_neuron(value: Any) -> np.ndarray:
            parts = [np.broadcast_to(np.asarray(value(inet.populations[k]), np.int64), inet.populations[k].size)
                     for k in self.lifs]
            return np.concatenate(parts) if parts else np.zeros(0, np.int64)

        self.neurons = LifNeurons(per_neuron(lambda p: p.du), per_neuron(lambda p: p.dv),
                                  per_neuron(lambda p: p.vth), per_neuron(lambda p: p.bias_effective()),
                                  Widths.of(inet.format))
        self.slots = max((p.max_delay for p in inet.projections), default=0) + 2
        self.outgoing: dict[str, list[tuple[int, int, int, int, np.ndarray]]] = {k: [] for k in inet.populations}
        for proj in inet.projections:
            n_post, n_pre = proj.weights.shape
            n_delays = int(proj.delays.max()) + 1 if proj.delays.size else 1
            rows = np.repeat(np.arange(n_post), np.diff(proj.weights.indptr))
            dense = np.zeros((n_pre, n_delays * n_post))
            np.add.at(dense, (proj.weights.indices, proj.delays.astype(np.int64) * n_post + rows),
                      proj.weights.data.astype(np.float64))
            self.outgoing[proj.pre].append((self.offset[proj.post], n_post, n_delays, proj.weight_exp, dense))

    def run(self, raster: np.ndarray, drain: int = 0) -> tuple[np.ndarray, int | None]:
        """Spikes [T, B, n] (every LIF neuron, concatenated in `self.lifs` order) for raster [T, B, *in].

        With drain > 0, up to `drain` silent steps follow, until all state (u, v, pending deliveries) is zero
        for every sample; the second value is how many that took (None if it never happened: a bias, or
        no leak), and the spikes then cover steps + that many."""
        steps, batch = raster.shape[:2]
        x = raster.reshape(steps, batch, -1)
        if x.shape[2] != self.inet.populations[self.input].size:
            raise InputError(f"accuracy: samples have {x.shape[2]} values, the input has "
                             f"{self.inet.populations[self.input].size}. Fix: reshape the samples")
        buf = np.zeros((self.slots, batch, self.n), np.int64)
        u = np.zeros((batch, self.n), np.int64)
        v = np.zeros((batch, self.n), np.int64)
        fired_all = np.zeros((steps + drain, batch, self.n), bool)
        drained = None
        for t in range(steps + drain):
            slot = t % self.slots
            a_in = buf[slot].copy()
            buf[slot] = 0
            u, v, fired = self.neurons.step(u, v, a_in)
            fired_all[t] = fired
            senders = [(self.input, x[t] if t < steps else None)] + [
                (k, fired[:, self.offset[k]:self.offset[k] + self.inet.populations[k].size]) for k in self.lifs]
            for name, s in senders:
                if s is None or not self.outgoing[name] or not s.any():
                    continue
                s = s.astype(np.float64)
                for post_off, n_post, n_delays, exp, dense in self.outgoing[name]:
                    acc = shift_by_exponent((s @ dense).astype(np.int64), exp).reshape(batch, n_delays, n_post)
                    for d in range(n_delays):  # delay d lands at t + 1 + d, as in simulate_int
                        buf[(t + 1 + d) % self.slots, :, post_off:post_off + n_post] += acc[:, d]
            if t >= steps and not (u.any() or v.any() or buf.any()):
                drained = t - steps + 1
                break
        return fired_all[:steps + (drained or 0)] if drain else fired_all, drained

    def population(self, spikes: np.ndarray, name: str) -> np.ndarray:
        """One integer population's columns of run()'s spikes."""
        off = self.offset[name]
        return spikes[..., off:off + self.inet.populations[name].size]

    def scores(self, spikes: np.ndarray, source: str, n: int) -> np.ndarray:
        """Output spike counts [B, n] of NIR population `source` (its integer parts put back in order)."""
        out = np.zeros(spikes.shape[1:2] + (n,))
        for part in self.inet.source_pops[source]:
            out[:, self.inet.populations[part].index] = self.population(spikes, part).sum(0)
        return out


@dataclass
class TargetAccuracy:
    target: str
    integer: float
    executor: float | None = None  # accuracy on the executed samples, from the executor's own spikes
    integer_on_executed: float | None = None  # the integer model's accuracy on those same samples
    executor_samples: int = 0
    executor_mode: str = "none"  # "chained" (one run, drain gaps), "per-sample" or "none"
    executor_name: str = ""
    executor_s_per_sample: float | None = None
    drain_steps: int | None = None
    integer_s: float = 0.0
    compile_s: float = 0.0


@dataclass
class AccuracyReport:
    n_samples: int
    steps: int
    float_hardware: float
    float_framework: float
    targets: list[TargetAccuracy]
    executor_indices: dict[str, list[int]] = field(default_factory=dict)  # per target
    float_s: float = 0.0

    def row(self, target: str) -> TargetAccuracy:
        return next(r for r in self.targets if r.target == target)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        def pct(a: float | None) -> str:
            return "-" if a is None else f"{100 * a:.2f}"
        head = (f"{self.n_samples} samples, {self.steps} steps; float {pct(self.float_hardware)} % "
                f"(hardware latency), {pct(self.float_framework)} % (framework latency)")
        rows = [[r.target, pct(r.integer), pct(r.executor), pct(r.integer_on_executed), r.executor_samples,
                 r.executor_mode, "-" if r.executor_s_per_sample is None else f"{r.executor_s_per_sample:.3f}"]
                for r in self.targets]
        return head + "\n" + table(["target", "integer %", "executor %", "integer % (same samples)", "executed",
                                    "mode", "s/sample"], rows)


def spaced(n: int, k: int) -> list[int]:
    """k sample indices evenly spaced over 0..n-1 (all of them when k >= n): the documented fixed subset."""
    if k >= n:
        return list(range(n))
    return sorted({int(i) for i in np.linspace(0, n - 1, k).round()})


def _executor_indices(choice: ExecutorChoice, n: int) -> list[int]:
    if choice is False or choice is None:
        return []
    if choice == "subset":
        return spaced(n, SUBSET)
    if choice == "all":
        return list(range(n))
    if isinstance(choice, (int, np.integer)) and not isinstance(choice, bool) and choice > 0:
        return spaced(n, int(choice))
    raise InputError(f"accuracy: executor={choice!r}. Fix: False, 'subset', 'all' or a positive number of samples")


def _argmax_accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    return float((np.argmax(scores, axis=1) == labels).mean()) if len(labels) else 0.0


def float_scores(net: Network, rasters: np.ndarray, latency: str, progress: bool = False) -> np.ndarray:
    """Output spike counts [N, classes] of simulate_float on each sample's raster ([T, N, *in])."""
    from tqdm import tqdm
    src = net.outputs[next(iter(net.outputs))]
    return np.array([simulate_float(net, rasters[:, k], latency=latency, record=False).spikes[src].sum(0)
                     for k in tqdm(range(rasters.shape[1]), desc=f"float ({latency})", disable=not progress,
                                   leave=False)], dtype=float)


def _check_against_simulate_int(model: BatchedInteger, spikes: np.ndarray, rasters: np.ndarray,
                                indices: list[int]) -> None:
    for k in indices:
        ref = simulate_int(model.inet, rasters[:, k], record=False)
        for name in model.lifs:
            if not np.array_equal(ref.spikes[name], model.population(spikes[:, k], name)):
                raise VerificationError(f"accuracy: the batched integer model differs from simulate_int on sample "
                                        f"{k}, population {name!r} ({model.inet.target}). Fix: report this bug")


def _run_executor(model: BatchedInteger, rasters: np.ndarray, indices: list[int], out_dir: Path, family: str,
                  row: TargetAccuracy, source: str, n_out: int) -> np.ndarray:
    """Executor output counts [len(indices), n_out]; raises unless its spikes equal the integer model's."""
    from ..compiler.backend import backend_for

    execute = backend_for(family).executor
    steps = rasters.shape[0]
    sub = rasters[:, indices]
    ref, drain = model.run(sub, drain=MAX_DRAIN)  # ref: [steps + drain, k, n], the gap's spikes too
    start = time.perf_counter()
    if drain is not None:
        # one run: sample, `drain` silent steps (state back to exactly zero), next sample, ...
        period = steps + drain
        chain = np.zeros((period * len(indices),) + rasters.shape[2:], rasters.dtype)
        for j in range(len(indices)):
            chain[j * period:j * period + steps] = sub[:, j]
        run = execute(out_dir, chain, False)
        got = [{k: a[j * period:(j + 1) * period] for k, a in run.spikes.items()} for j in range(len(indices))]
        row.executor_mode, row.drain_steps = "chained", int(drain)
    else:
        got = []
        for j in range(len(indices)):
            run = execute(out_dir, sub[:, j], False)
            got.append(run.spikes)
        row.executor_mode = "per-sample"
    row.executor_s_per_sample = (time.perf_counter() - start) / len(indices)
    row.executor_name = run.executor
    counts = np.zeros((len(indices), n_out))
    for j, k in enumerate(indices):
        for name in model.lifs:  # every population, every step (the drain gap's too) against the integer model
            if name not in got[j] or not np.array_equal(np.asarray(got[j][name], bool),
                                                        model.population(ref[:, j], name)):
                raise VerificationError(f"accuracy: {run.executor}: the spikes of sample {k}, population {name!r}, "
                                        f"differ from the integer model ({model.inet.target}, {out_dir}). "
                                        "Fix: run `neurocc verify` on that sample and report the divergence")
        for part in model.inet.source_pops[source]:
            counts[j, model.inet.populations[part].index] = np.asarray(got[j][part])[:steps].sum(0)
    return counts


def evaluate(net: Network, samples: np.ndarray, labels: np.ndarray, steps: int,
             targets: tuple[str, ...] | list[str] = ALL_TARGETS,
             executor: ExecutorChoice | dict[str, ExecutorChoice] = False,
             out_dir: str | Path | None = None, progress: bool | None = None,
             latencies: tuple[str, ...] = ("hardware", "framework")) -> AccuracyReport:
    """Accuracy of `net` on samples [N, *input_shape] (values in [0, 1]) with integer labels [N].

    `executor`: False (integer model only), "subset" (SUBSET evenly spaced samples), "all", or a number
    of evenly spaced samples; or a dict of those per target (a target not in it: False).
    `out_dir`: where each target's artifacts are emitted (out_dir/<target>); a temporary directory when None.
    `latencies`: the float runs to make (a skipped one reports NaN).
    """
    samples = np.asarray(samples, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    if samples.shape[0] != labels.shape[0]:
        raise InputError(f"accuracy: {samples.shape[0]} samples but {labels.shape[0]} labels. Fix: pass one "
                         "label per sample")
    if len(net.outputs) != 1:
        raise InputError(f"accuracy: one output expected, the network has {list(net.outputs)}")
    source = net.outputs[next(iter(net.outputs))]
    n_out = net.populations[source].size
    in_shape = net.populations[net.inputs[0]].shape
    samples = samples.reshape((samples.shape[0],) + tuple(in_shape))
    rasters = rate_code(samples, steps)  # [T, N, *in]
    show = progress if progress is not None else len(labels) * max(1, len(targets)) > 500
    choices = executor if isinstance(executor, dict) else dict.fromkeys(targets, executor)
    chosen = {t: _executor_indices(choices.get(t, False), len(labels)) for t in targets}

    t0 = time.perf_counter()
    acc_f = {lat: _argmax_accuracy(float_scores(net, rasters, lat, show), labels) if lat in latencies else float("nan")
             for lat in ("hardware", "framework")}
    report = AccuracyReport(len(labels), int(steps), acc_f["hardware"], acc_f["framework"], [],
                            {t: i for t, i in chosen.items() if i}, time.perf_counter() - t0)

    from tqdm import tqdm
    with tempfile.TemporaryDirectory(prefix="neurocc-accuracy-") as tmp:
        base = Path(out_dir) if out_dir is not None else Path(tmp)
        for target in tqdm(list(targets), desc="targets", disable=not show, leave=False):
            row = TargetAccuracy(target, 0.0)
            indices = chosen[target]
            t1 = time.perf_counter()
            if indices:
                mapping = compile_network(net, target, progress=False)
                mapping.emit(base / target)
                inet = mapping.network
            else:
                inet = to_integer(net, target)
            row.compile_s = time.perf_counter() - t1
            t1 = time.perf_counter()
            model = BatchedInteger(inet)
            spikes, _ = model.run(rasters)
            _check_against_simulate_int(model, spikes, rasters, sorted(set(spaced(len(labels), CROSS_CHECK))))
            scores = model.scores(spikes, source, n_out)
            row.integer = _argmax_accuracy(scores, labels)
            row.integer_s = time.perf_counter() - t1
            if indices:
                counts = _run_executor(model, rasters, indices, base / target, mapping.target.family, row,
                                       source, n_out)
                row.executor = _argmax_accuracy(counts, labels[indices])
                row.integer_on_executed = _argmax_accuracy(scores[indices], labels[indices])
                row.executor_samples = len(indices)
            report.targets.append(row)
    return report
