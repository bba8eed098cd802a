"""The compiler's IR, one home for every value that flows between passes (docs/data-flow.md).

- network.py: the float `Network` (NIR semantics), the frontend's output;
- lowered.py: `LoweredNetwork`, lower's output (float CUBA-LIF in threshold units);
- integer.py: `IntNetwork`, quantize's output, and its file form (network.npz);
- lif.py: the integer neuron arithmetic that gives an IntNetwork its meaning;
- mapping.py: `Mapping` (slices, roles, usage, placement, routing, memory image), the backends' input.

Passes import the IR, never each other's internals.
"""

from __future__ import annotations

from .integer import (
    LIF,
    NETWORK_FILE,
    SIGN_MODES,
    IntNetwork,
    IntPopulation,
    IntProjection,
    IntProjections,
    load_int_network,
    save_int_network,
    sign_mode_of,
)
from .lowered import LoweredNetwork, LoweredPopulation, LoweredProjection, LoweredProjections
from .mapping import (
    Emitter,
    Entry,
    Mapping,
    MemoryImage,
    Partition,
    Placement,
    Role,
    Routing,
    Slice,
    SliceUsage,
    json_default,
    manifest_default,
)
from .network import (
    INPUT,
    KIND_PARAMS,
    NEURON_KINDS,
    SPIKING_KINDS,
    FloatProjections,
    Network,
    Population,
    Projection,
    compact_int,
    index_dtype,
    make_projection,
    make_projections,
)
from .table import Blocks, ProjectionTable

__all__ = [
    "INPUT", "KIND_PARAMS", "LIF", "NETWORK_FILE", "NEURON_KINDS", "SIGN_MODES", "SPIKING_KINDS", "Blocks", "Emitter",
    "Entry", "FloatProjections", "IntNetwork", "IntPopulation", "IntProjection", "IntProjections", "LoweredNetwork",
    "LoweredPopulation", "LoweredProjection", "LoweredProjections", "Mapping", "MemoryImage", "Network", "Partition",
    "Placement", "Population", "Projection", "ProjectionTable", "Role", "Routing", "Slice", "SliceUsage",
    "compact_int", "index_dtype", "json_default", "load_int_network", "make_projection", "make_projections",
    "manifest_default", "save_int_network", "sign_mode_of",
]
