"""What a running daemon is doing, for ``genie monitor``: a feed on a private local socket.

The socket lives beside the pid file (``daemon.control``: a 0700 folder of the user's, so only
the user, or root, reads it; under the system unit that is ``/run/genie``). A client connects and
gets one JSON line ten times a second: the processors and which one plays, the buttons held, the
notes sent since the last line, the time from an input to what it made, and the engine's
counters. The engine thread only appends to bounded deques, and only while a client is connected;
a client that does not keep up is dropped, never waited for.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import socket
import stat
import threading
import time
from collections import deque
from pathlib import Path

from daemon.control import ControlError, pidfile_path

log = logging.getLogger("genie")

PERIOD_S = 0.1


def socket_path(client_name: str, make: bool = False) -> Path:
    """Beside the daemon's pid file, named as it is (``daemon.control``)."""
    return pidfile_path(client_name, make).with_suffix(".monitor")


class MonitorFeed:
    def __init__(self, path: Path, period_s: float = PERIOD_S) -> None:
        self.path = path
        self.period_s = period_s
        self.active = False  # a client is connected: the engine thread records (read racily: fine)
        self._sent: deque[tuple[int, str, tuple[int, ...]]] = deque(maxlen=2048)
        self._latency: deque[int] = deque(maxlen=1024)
        self._state: dict = {}
        self._clients: list[socket.socket] = []
        self._server: socket.socket | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="genie-monitor", daemon=True)
        self._next_state_ns = 0

    # ---- the engine thread ------------------------------------------------------------------------

    def sent(self, t_ns: int, port: str, msg: tuple[int, ...]) -> None:
        self._sent.append((t_ns, port, msg))

    def latency(self, ns: int) -> None:
        self._latency.append(ns)

    def wants_state(self, now_ns: int) -> bool:
        if not self.active or now_ns < self._next_state_ns:
            return False
        self._next_state_ns = now_ns + int(self.period_s * 1e9)
        return True

    def state(self, state: dict) -> None:
        self._state = state  # replaced whole: the feed thread reads one or the other

    # ---- the feed thread --------------------------------------------------------------------------

    def start(self) -> None:
        try:
            st = os.lstat(self.path)
            if not stat.S_ISSOCK(st.st_mode):
                raise ControlError(f"{self.path}: not a socket of Genie's; remove it")
            self.path.unlink()  # a stale one (the pid file says no other daemon of this name runs)
        except FileNotFoundError:
            pass
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old = os.umask(0o177)
        try:
            server.bind(str(self.path))
        finally:
            os.umask(old)
        server.listen(4)
        server.setblocking(False)
        self._server = server
        self._thread.start()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._server, selectors.EVENT_READ)
        next_send = time.monotonic()
        while not self._stop.is_set():
            for _ in sel.select(timeout=max(0.0, next_send - time.monotonic())):
                try:
                    client, _ = self._server.accept()
                except OSError:
                    continue
                client.settimeout(0.05)
                self._clients.append(client)
                self.active = True
            if time.monotonic() >= next_send:
                next_send = time.monotonic() + self.period_s
                if self._clients:
                    self._publish()
        sel.close()

    def _publish(self) -> None:
        sent = [self._sent.popleft() for _ in range(len(self._sent))]
        lat = [self._latency.popleft() for _ in range(len(self._latency))]
        line = json.dumps({"time_ns": time.monotonic_ns(), **self._state,
                           "sent": [[t, port, list(msg)] for t, port, msg in sent],
                           "latency_ns": lat}) + "\n"
        for client in list(self._clients):
            try:
                client.sendall(line.encode())
            except OSError:  # gone, or too slow to read: dropped, never waited for
                self._clients.remove(client)
                client.close()
        self.active = bool(self._clients)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(1.0)
        for client in self._clients:
            client.close()
        if self._server is not None:
            self._server.close()
            self.path.unlink(missing_ok=True)


def connect(path: Path, timeout_s: float = 2.0) -> socket.socket:
    """A client's connection to a daemon's feed (ControlError with one line when there is none)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        sock.connect(str(path))
    except FileNotFoundError:
        raise ControlError(f"no running Genie to watch ({path} is not there): start genie run") from None
    except PermissionError:
        raise ControlError(f"{path}: permission denied (a system service: sudo -u genie genie monitor)") from None
    except OSError as exc:
        raise ControlError(f"cannot reach the running Genie through {path}: {exc.strerror}") from None
    return sock


def lines(sock: socket.socket):
    """The feed's snapshots, one dict at a time, until the daemon goes away."""
    buf = b""
    while True:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        if not data:
            return
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            yield json.loads(line)
