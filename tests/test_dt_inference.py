"""dt is given, recorded, inferred from an exporter's signature, or assumed with exactly one warning."""

from __future__ import annotations

import warnings
from pathlib import Path

import nir
import numpy as np
import pytest

import neurocc
from neurocc.cli import main

from .conftest import CORPUS_FILES, convention_of


def _load_recording(source, **kwargs) -> tuple[neurocc.Network, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net = neurocc.load(source, **kwargs)
    return net, [str(w.message) for w in caught if issubclass(w.category, neurocc.NeuroccWarning)]


def _dt_warnings(messages: list[str]) -> list[str]:
    return [m for m in messages if "assumed dt" in m]


def _lif_graph(tau: np.ndarray, r: np.ndarray, names: tuple[str, str] = ("w", "lif"),
               metadata: dict | None = None, kind: str = "LIF") -> nir.NIRGraph:
    n = tau.size
    w, lif = names
    if kind == "LIF":
        neuron = nir.LIF(tau=tau, r=r, v_leak=np.zeros(n), v_threshold=np.ones(n), v_reset=np.zeros(n))
    else:
        neuron = nir.CubaLIF(tau_syn=tau / 2, tau_mem=tau, r=r, v_leak=np.zeros(n), v_threshold=np.ones(n),
                             v_reset=np.zeros(n), w_in=np.ones(n))
    return nir.NIRGraph(nodes={
        "in": nir.Input(input_type={"input": np.array([3])}), w: nir.Linear(weight=np.ones((n, 3))),
        lif: neuron, "out": nir.Output(output_type={"output": np.array([n])}),
    }, edges=[("in", w), (w, lif), (lif, "out")], metadata=metadata or {}, type_check=False)


@pytest.mark.parametrize("path", CORPUS_FILES, ids=[p.stem for p in CORPUS_FILES])
def test_every_corpus_file_loads_with_its_dt_or_one_warning(path: Path) -> None:
    net, messages = _load_recording(path)
    said = _dt_warnings(messages)
    assert len(said) <= 1, f"{path.name}: more than one dt warning: {said}"
    if said:
        assert net.dt_source.startswith("assumed") and f"{net.dt:g}" in said[0].replace("1e-3", "0.001")
        assert "Fix: " in said[0] and "--dt" in said[0]
    else:
        # Not warned: the dt is the exporter's, so the network equals the one its convention gives.
        assert net.dt_source.startswith(("inferred", "recorded")), net.dt_source
        ref, _ = _load_recording(path, convention=convention_of(path))
        assert (net.dt, net.discretization) == (ref.dt, ref.discretization)
    if path.stem.startswith("norse"):
        # One warning says both the assumed dt and the tau fix it implies; the network is the convention's.
        assert len(said) == 1 and not [m for m in messages if "norse <= 1.1 writes" in m]
        ref, _ = _load_recording(path, convention="norse")
        for name, pop in ref.populations.items():
            for key, value in pop.params.items():
                np.testing.assert_array_equal(net.populations[name].params[key], value)


def test_snntorch_files_get_their_dt_and_inspect_says_it_was_inferred(corpus_dir: Path, capsys) -> None:
    for path in sorted(corpus_dir.glob("snntorch_*.nir")):
        net, messages = _load_recording(path)
        assert net.dt == 1e-4 and net.discretization == "euler", path.name
        assert not _dt_warnings(messages)
    assert main(["inspect", str(corpus_dir / "snntorch_rlif.nir")]) == 0
    head = capsys.readouterr().out.splitlines()[0]
    assert head.startswith("dt = 0.0001 s (euler; inferred: r = tau/dt"), head


def test_sinabs_lif_time_constants_in_steps_give_dt_one_step(corpus_dir: Path) -> None:
    net, messages = _load_recording(corpus_dir / "sinabs_lif_mlp.nir")
    assert (net.dt, net.discretization) == (1.0, "exp") and not _dt_warnings(messages)


def test_a_file_with_no_signature_warns_once_naming_the_assumed_dt() -> None:
    # The NIR paper's lif_norse.nir has this shape: tau = 2.5 ms, r = 1; it ran at 0.1 ms, which no field says.
    net, messages = _load_recording(_lif_graph(np.full(2, 2.5e-3), np.ones(2)))
    (said,) = _dt_warnings(messages)
    assert "assumed dt = 1e-3 s" in said and "--dt SECONDS" in said and "--convention" in said
    assert net.dt == 1e-3 and net.dt_source.startswith("assumed")
    net, messages = _load_recording(_lif_graph(np.full(2, 2.5e-3), np.ones(2)), dt=1e-4)
    assert net.dt == 1e-4 and not _dt_warnings(messages) and net.dt_source.startswith("given")


def test_snntorch_signature_needs_one_dt_for_every_neuron() -> None:
    tau = np.array([1e-2, 5e-3, 2e-2])
    net, messages = _load_recording(_lif_graph(tau, tau / 2e-4))
    assert net.dt == 2e-4 and not _dt_warnings(messages)
    r = tau / 2e-4
    r[1] *= 1.5  # one neuron disagrees: no signature, so the assumption is said
    net, messages = _load_recording(_lif_graph(tau, r))
    assert len(_dt_warnings(messages)) == 1 and net.dt == 1e-3


def test_rockpool_signature_gives_its_dt_and_exact_decay() -> None:
    tau, dt = np.array([0.02, 0.05]), 1e-3
    r = tau * np.exp(-dt / tau) / dt  # rockpool's LIFTorch export
    net, messages = _load_recording(_lif_graph(tau, r, names=("0_LinearTorch", "1_LIFTorch"), kind="CubaLIF"))
    assert net.dt == pytest.approx(dt, rel=1e-4) and net.discretization == "exp" and not _dt_warnings(messages)


def test_exporter_metadata_dt_is_read() -> None:
    net, messages = _load_recording(_lif_graph(np.full(2, 0.02), np.ones(2), metadata={"dt": 5e-4}))
    assert net.dt == 5e-4 and "metadata" in net.dt_source and not _dt_warnings(messages)


def test_no_warning_when_nothing_depends_on_dt() -> None:
    g = nir.NIRGraph(nodes={
        "in": nir.Input(input_type={"input": np.array([2])}), "w": nir.Linear(weight=np.ones((2, 2))),
        "thr": nir.Threshold(threshold=np.full(2, 0.5)), "out": nir.Output(output_type={"output": np.array([2])}),
    }, edges=[("in", "w"), ("w", "thr"), ("thr", "out")], type_check=False)
    net, messages = _load_recording(g)
    assert not _dt_warnings(messages) and net.dt_source.startswith("not needed")


def test_saved_file_reads_back_with_its_dt_and_where_it_came_from(tmp_path: Path, corpus_dir: Path) -> None:
    net, _ = _load_recording(corpus_dir / "snntorch_lif_mlp.nir")
    neurocc.save(net, tmp_path / "net.nir")
    again, messages = _load_recording(tmp_path / "net.nir")
    assert again.dt == 1e-4 and not _dt_warnings(messages)
    assert again.dt_source.startswith("recorded") and "originally inferred" in again.dt_source
