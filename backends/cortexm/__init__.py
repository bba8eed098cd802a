"""Cortex-M backend: the model image for the C99 engine in firmware/, its C array form, and budget checks.

`emit(mapping, out_dir)` writes model.bin, model.c/model.h, network.npz and manifest.json. Running it
(host build, QEMU, a real board over a serial port) lives in neurocc.runtime.serial.
"""

from __future__ import annotations

from .boards import BOARDS, Board, board_for
from .emit import IMAGE, MANIFEST, check_fit, emit
from .image import PackedImage, pack, read_info

__all__ = ["BOARDS", "Board", "IMAGE", "MANIFEST", "PackedImage", "board_for", "check_fit", "emit", "pack",
           "read_info"]
