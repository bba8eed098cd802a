"""Executors: run emitted artifacts from the files alone and return every LIF population's spikes.

One per family, named by its Backend record: lava.py (Lava itself, in a subprocess), spinnaker/
(the binary tables: parse, check, route, run), cortexm.py (the firmware: built for the host, or on
QEMU over the serial protocol of runtime/serial). `neurocc verify` diffs them against the reference.
"""
