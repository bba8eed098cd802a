"""The target families neurocc ships, registered in one place: family -> Backend record.

Adding a family is one folder (emit, its executor, its Backend record) and one line here
(docs/extending.md). `import neurocc` imports this module, so the registry is always filled.
"""

from __future__ import annotations

from ..compiler.backend import register
from .cortexm.backend import BACKEND as CORTEXM
from .lava.backend import BACKEND as LOIHI
from .spinnaker.backend import BACKEND as SPINNAKER

for _backend in (LOIHI, SPINNAKER, CORTEXM):
    register(_backend)
