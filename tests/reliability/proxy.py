"""A TCP proxy on loopback that injects store faults in front of moto's server: stopped (connection refused),
hung (accepts, never answers), slow (each chunk of the answer delayed), or passing through."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Literal

Mode = Literal["pass", "stopped", "hung", "slow"]


class FaultProxy:
    """Forwards 127.0.0.1:port to ``upstream``; ``set_mode`` switches the fault for new and open connections."""

    def __init__(self, upstream: tuple[str, int], slow_delay: float = 0.2) -> None:
        self.upstream = upstream
        self.slow_delay = slow_delay
        self.mode: Mode = "pass"
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self.port = 0
        self._listen()

    @property
    def open_connections(self) -> int:
        """Connections accepted since the last mode switch (in hung mode: store calls now waiting)."""
        with self._lock:
            return len(self._open)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_mode(self, mode: Mode) -> None:
        """Switch the fault; open connections are cut so nothing carries over between states."""
        with self._lock:
            self.mode = mode
            for conn in self._open:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)  # wakes the pump threads blocked in recv
                with contextlib.suppress(OSError):
                    conn.close()
            self._open.clear()
        if mode == "stopped" and self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept(); close alone leaves it listening
            self._listener.close()
            self._listener = None
        elif mode != "stopped" and self._listener is None:
            self._listen()

    def close(self) -> None:
        self.set_mode("stopped")

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                self._open.append(client)
                mode = self.mode
            if mode == "hung":
                threading.Thread(target=self._swallow, args=(client,), daemon=True).start()
                continue
            try:
                upstream = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.append(upstream)
            delay = self.slow_delay if mode == "slow" else 0.0
            threading.Thread(target=self._pump, args=(client, upstream, 0.0), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, delay), daemon=True).start()

    @staticmethod
    def _swallow(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while conn.recv(65536):
                pass

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, delay: float) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(16384):
                if delay:
                    time.sleep(delay)
                dst.sendall(data)
        for conn in (src, dst):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
