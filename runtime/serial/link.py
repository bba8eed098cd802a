"""Open a serial link by URL: /dev/ttyUSB0 and socket://127.0.0.1:PORT go through one code path."""

from __future__ import annotations

import socket
import time

import serial

from ...compiler.errors import NeuroccError


class PortError(NeuroccError):
    """The serial port (or QEMU's socket) cannot be opened."""


def open_port(url: str, baudrate: int = 115200, parity: str = serial.PARITY_NONE, timeout: float = 0.5,
              connect_timeout: float = 5.0):
    """pyserial's serial_for_url, with TCP_NODELAY on sockets: without it small frames wait for
    Nagle's algorithm against QEMU's delayed ACKs (44 ms per 64-byte round trip instead of ~3 ms,
    ../shared/research/cortexm.md §2). A socket is retried until `connect_timeout`, because QEMU
    starts listening a few tens of milliseconds after it is spawned."""
    deadline = time.monotonic() + connect_timeout
    while True:
        try:
            ser = serial.serial_for_url(url, baudrate=baudrate, parity=parity, timeout=timeout)
            break
        except (serial.SerialException, OSError, ValueError) as exc:
            if not url.startswith("socket://") or time.monotonic() > deadline:
                raise PortError(f"cannot open {url} ({exc}). Fix: check the port name, or that QEMU "
                                "(neurocc emulate) is running") from None
            time.sleep(0.02)
    sock = getattr(ser, "_socket", None)
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return ser
