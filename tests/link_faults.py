"""A TCP proxy between the host and QEMU's serial socket that drops or corrupts bytes, or cuts the link."""

from __future__ import annotations

import random
import socket
import threading


class FaultyProxy:
    """Listens on 127.0.0.1:<port>; each client is piped to 127.0.0.1:<upstream>. Every byte, either way,
    is dropped with probability `drop` or has one bit flipped with probability `corrupt` (seeded)."""

    def __init__(self, upstream: int, drop: float = 0.005, corrupt: float = 0.005, seed: int = 0):
        self.upstream = upstream
        self.drop, self.corrupt = drop, corrupt
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.dropped = self.corrupted = self.forwarded = 0
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(1)
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.server.accept()
            except (TimeoutError, OSError):
                continue
            up = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
            for s in (client, up):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.settimeout(0.2)
            self.conns += [client, up]
            for src, dst in ((client, up), (up, client)):
                t = threading.Thread(target=self._pump, args=(src, dst), daemon=True)
                t.start()
                self._threads.append(t)

    def _mangle(self, data: bytes) -> bytes:
        out = bytearray()
        with self.lock:
            for b in data:
                r = self.rng.random()
                if r < self.drop:
                    self.dropped += 1
                    continue
                if r < self.drop + self.corrupt:
                    b ^= 1 << self.rng.randrange(8)
                    self.corrupted += 1
                self.forwarded += 1
                out.append(b)
        return bytes(out)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                data = src.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            try:
                dst.sendall(self._mangle(data))
            except OSError:
                break
        for s in (src, dst):
            try:
                s.close()
            except OSError:
                pass

    def stop(self) -> None:
        self._stop.set()
        for s in [self.server, *self.conns]:
            try:
                s.close()
            except OSError:
                pass
        for t in self._threads:
            t.join(timeout=2)
