"""Fuzzing the frontend: mutated corpus files give a named error or a valid network, nothing else."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import neurocc

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
FILES = sorted(CORPUS.glob("*.nir"))
SMALL = [p for p in FILES if p.stat().st_size < 80_000]


def _load_or_named_error(path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            net = neurocc.load(path, convention="snntorch")
        except neurocc.NeuroccError:
            return
    # A file that still loads must still simulate or fail by name.
    x = np.zeros((3, net.input_size()))
    try:
        neurocc.simulate(net, x)
    except neurocc.NeuroccError:
        pass


# function_scoped_fixture: every example overwrites the same file in tmp_path, so sharing it is intended
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_byte_flips_give_named_errors_only(tmp_path: Path, data: st.DataObject) -> None:
    src = data.draw(st.sampled_from(SMALL))
    raw = bytearray(src.read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    path = tmp_path / "mutated.nir"
    path.write_bytes(bytes(raw))
    _load_or_named_error(path)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_truncation_gives_named_errors_only(tmp_path: Path, data: st.DataObject) -> None:
    src = data.draw(st.sampled_from(SMALL))
    raw = src.read_bytes()
    cut = data.draw(st.integers(0, len(raw) - 1))
    path = tmp_path / "cut.nir"
    path.write_bytes(raw[:cut])
    _load_or_named_error(path)


@pytest.mark.parametrize("path", SMALL[:4], ids=lambda p: p.stem)
def test_dataset_edits_give_named_errors_only(tmp_path: Path, path: Path) -> None:
    """Structured mutations through h5py: wrong dtypes, shapes, NaNs, missing keys, bad edges."""
    import h5py

    rng = np.random.default_rng(0)
    with h5py.File(path) as f:
        names = []
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    for k, name in enumerate(names):
        for mode in ("nan", "shape", "string", "delete", "negative"):
            out = tmp_path / f"m{k}_{mode}.nir"
            out.write_bytes(path.read_bytes())
            with h5py.File(out, "r+") as f:
                ds = f[name]
                value = ds[()]
                del f[name]
                if mode == "nan" and np.asarray(value).dtype.kind == "f":
                    f[name] = np.full(np.shape(value), np.nan)
                elif mode == "shape":
                    f[name] = rng.random(7)
                elif mode == "string":
                    f[name] = "garbage"
                elif mode == "negative" and np.asarray(value).dtype.kind in "fi":
                    f[name] = -np.abs(np.asarray(value)) - 1
                elif mode != "delete":
                    f[name] = value
            _load_or_named_error(out)
