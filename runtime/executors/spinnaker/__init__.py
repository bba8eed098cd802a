"""Run emitted SpiNNaker tables, and nothing else: routers, master population tables, synaptic rows,
local-only conv tables.

The executor reads only the files `backends/spinnaker.emit` wrote (manifest.json for the file
list, then the binary tables of docs/spinnaker-format.md); never the Mapping or the Network.
Each step, in this order:

1. every neuron core updates its neurons with the integer CUBA-LIF (compiler/ir/lif.py, with the widths
   its neurons file states; docs/neuron-model.md §2), consuming its ring-buffer slot for this step;
2. every spike leaves as a multicast packet with its key (spike sources: one packet per active input
   channel, the count as payload; delay extensions: the neurons of each stage's bit field that
   spiked stage x slots steps ago);
3. routers forward each packet hop by hop: the first entry of the chip's table whose key/mask matches
   wins; no match means the default route (out of the link opposite the one it came in by), and is
   an error for a packet from a local core;
4. each receiving core binary-searches its master population table, reads the row of the source
   neuron from its synaptic matrix, and adds each word's weight into its delay ring buffer. As in
   Lava, a projection's weight exponent shifts the *sum* of one send step's weights per (post
   neuron, delay), so sums are kept per (synapse type, stage, delay) until the step's packets are in.
   Packets a conv record (conv.bin) listens to are scattered through its kernel instead, summed and
   shifted per record; a core may hold both, and one packet may feed both.

Tables are static, so the cores a (source chip, key) reaches and the links it crosses are traced
once and cached; a step is then a handful of numpy operations over all of its packets.

Modules: files (one record and checked parser per file kind), machine (load and cross-check an output),
trace (multicast routes, traced once), runner (the step loop and `run`), conv (conv.bin records and their
scatter).
"""

from .files import LINK_NAMES, LINK_VECTORS, N_LINKS, Chip, CoreId
from .machine import Machine
from .runner import ExecResult, integer_raster, load, run
from .trace import MATCH_CELLS

__all__ = ["LINK_NAMES", "LINK_VECTORS", "MATCH_CELLS", "N_LINKS", "Chip", "CoreId", "ExecResult", "Machine",
           "integer_raster", "load", "run"]
