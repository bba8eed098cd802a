"""Design-space sweeps on Dask: `neurocc sweep` and `neurocc.sweep` (issue 15)."""
