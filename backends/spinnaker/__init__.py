"""SpiNNaker backend: a Mapping as binary routing, synapse, neuron, delay and source tables.

`emit(mapping, out_dir)` writes them (docs/spinnaker-format.md); runtime/executors/spinnaker runs them.
"""

from __future__ import annotations

from .emit import emit

__all__ = ["emit"]
