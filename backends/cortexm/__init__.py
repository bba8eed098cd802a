"""Cortex-M backend: the model image for the C99 engine in firmware/, its C array form, and budget checks.

The layout pass (layout.py) packs the image and checks it against the part's flash and RAM; `emit`
writes model.bin, model.c/model.h, network.npz and manifest.json. Running it (host build, QEMU, a real
board over a serial port) lives in neurocc.runtime.
"""

from __future__ import annotations

from .emit import IMAGE, MANIFEST, emit
from .image import MemoryImage, pack, read_info
from .layout import board_of, check_fit, memory_layout

__all__ = ["IMAGE", "MANIFEST", "MemoryImage", "board_of", "check_fit", "emit", "memory_layout", "pack",
           "read_info"]
