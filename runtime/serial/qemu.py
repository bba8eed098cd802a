"""Run QEMU's netduinoplus2 with USART1 on a local TCP port, and always kill it afterwards.

A guest left running keeps a host core busy (we have two): every Qemu is killed on stop(), on
leaving its `with` block, and at interpreter exit (atexit), whichever comes first.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from ...compiler.errors import NeuroccError
from .firmware import require

_LIVE: set[Qemu] = set()


class EmulatorError(NeuroccError):
    """QEMU did not start, or exited early."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Qemu:
    """qemu-system-arm -M netduinoplus2 -kernel <elf> -serial tcp:127.0.0.1:PORT,server=on,wait=on,nodelay=on.

    wait=on: the guest starts only when the first client connects, so nothing it sends is lost.
    After a client disconnects QEMU listens again; the guest keeps running meanwhile.
    """

    def __init__(self, kernel: Path, machine: str = "netduinoplus2", extra: list[str] | None = None,
                 log: Path | None = None):
        self.kernel = Path(kernel)
        self.machine = machine
        self.extra = list(extra or [])
        self.log = log
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self._log_file = None

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    def command(self, port: int) -> list[str]:
        return ["qemu-system-arm", "-M", self.machine, "-nographic", "-monitor", "none", "-kernel", str(self.kernel),
                "-serial", f"tcp:127.0.0.1:{port},server=on,wait=on,nodelay=on", *self.extra]

    def start(self, attempts: int = 5) -> str:
        require("qemu-system-arm")
        if not self.kernel.exists():
            raise EmulatorError(f"{self.kernel}: no such firmware image. Fix: build it (make -C firmware)")
        if self.log is None:
            fd, name = tempfile.mkstemp(prefix="neurocc-qemu-", suffix=".log")
            os.close(fd)
            self.log = Path(name)
        for _ in range(attempts):
            self.port = free_port()
            self._log_file = open(self.log, "wb")
            self.proc = subprocess.Popen(self.command(self.port), stdin=subprocess.DEVNULL, stdout=self._log_file,
                                         stderr=subprocess.STDOUT, start_new_session=True)
            _LIVE.add(self)
            # listening within ~50 ms; an early exit is usually "address in use": try another port
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if _listening(self.port):
                    return self.url
                time.sleep(0.01)
            self.stop()
        raise EmulatorError(f"QEMU did not start ({self.log}: {self.log_text()[-400:]!r})")

    def log_text(self) -> str:
        try:
            return Path(self.log).read_text(errors="replace") if self.log else ""
        except OSError:
            return ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        _LIVE.discard(self)
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: only QEMU, nothing of ours
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> Qemu:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _listening(port: int) -> bool:
    """Is QEMU listening? Checked in /proc, not by connecting: a connect would be QEMU's first client."""
    want = f":{port:04X}"
    try:
        with open("/proc/net/tcp") as f:
            return any(line.split()[1].endswith(want) and line.split()[3] == "0A" for line in list(f)[1:])
    except OSError:
        time.sleep(0.05)
        return True


@atexit.register
def _kill_all() -> None:
    for q in list(_LIVE):
        q.stop()
