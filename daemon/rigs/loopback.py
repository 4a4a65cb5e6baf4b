"""Drive a ``genie run`` subprocess through real ports: the end-to-end tests and the benchmarks.

``GenieProcess`` starts the daemon and waits until it logs that it is ready; ``PortClient`` is a
second JACK/ALSA client that plays into Genie's input and collects what comes out of its output,
each message stamped on arrival with the daemon's clock, so tests wait on a queue with a deadline
instead of sleeping.
"""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from daemon.events import now_ns
from daemon.io.child import start_child, stop_child

READY_MARK = "genie: ready"


@dataclass
class GenieProcess:
    """``genie run`` as a child process, its log collected on a thread."""

    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    config: str | None = None  # path of a TOML config
    proc: subprocess.Popen | None = None
    log_lines: list[str] = field(default_factory=list)

    def start(self, timeout_s: float = 60.0) -> "GenieProcess":
        cmd = [sys.executable, "-m", "daemon", *(["--config", self.config] if self.config else []),
               "run", "--no-keyboard", *self.args]
        self.proc, self.log_lines = start_child(cmd, READY_MARK, timeout_s, "genie run", self.env)
        return self

    @property
    def log(self) -> str:
        return "\n".join(self.log_lines)

    def send_signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 15.0) -> int:
        """Signal the daemon and wait for it; returns its exit code."""
        return stop_child(self.proc, sig, timeout_s)


class PortClient:
    """A plain rtmidi client: plays into ``target_in`` and listens to ``target_out``."""

    def __init__(self, name: str, target_in: str | None = "Genie in:Genie in",
                 target_out: str | None = "Genie out:Genie out", api: str = "jack") -> None:
        import rtmidi

        from daemon.io.midi import _api_id, match_port

        self.api = api

        self.received: queue.Queue[tuple[int, tuple[int, ...]]] = queue.Queue()
        self.out = rtmidi.MidiOut(_api_id(api), name=f"{name} play")
        self.inp = rtmidi.MidiIn(_api_id(api), name=f"{name} listen")
        self.inp.ignore_types(sysex=False, timing=False, active_sense=True)
        self.inp.set_callback(self._on_message)
        wires = []
        if target_in:
            ports = self.out.get_ports()
            found = match_port(target_in, ports)
            if not found:
                raise RuntimeError(f"port {target_in!r} not found in {ports}")
            self.out.open_port(found[0], name="play")
            wires.append((f"{name} play:play", ports[found[0]]))
        else:
            self.out.open_virtual_port("play")
        if target_out:
            ports = self.inp.get_ports()
            found = match_port(target_out, ports)
            if not found:
                raise RuntimeError(f"port {target_out!r} not found in {ports}")
            self.inp.open_port(found[0], name="listen")
            wires.append((ports[found[0]], f"{name} listen:listen"))
        else:
            self.inp.open_virtual_port("listen")
        if api == "jack":
            from daemon.io.jack import wait_connected

            for src, dst in wires:  # what is sent before the server runs the new graph is lost
                if not wait_connected(src, dst):
                    raise RuntimeError(f"JACK did not connect {src!r} to {dst!r} in 5 s")

    def _on_message(self, event, data=None) -> None:
        self.received.put((now_ns(), tuple(event[0])))

    def send(self, message) -> int:
        t = now_ns()
        self.out.send_message(list(message))
        return t

    def expect(self, n: int, timeout_s: float = 5.0) -> list[tuple[int, tuple[int, ...]]]:
        """The next ``n`` messages (time, message); fewer if the deadline passes."""
        out = []
        deadline = time.monotonic() + timeout_s
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                out.append(self.received.get(timeout=left))
            except queue.Empty:
                break
        return out

    def collect(self, quiet_s: float = 0.3, timeout_s: float = 10.0) -> list[tuple[int, tuple[int, ...]]]:
        """Everything that arrives until nothing has come for ``quiet_s``."""
        out = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                out.append(self.received.get(timeout=quiet_s))
            except queue.Empty:
                break
        return out

    def close(self) -> None:
        from daemon.io.midi import release

        self.inp.cancel_callback()  # no Python call from JACK's thread while the port goes away
        for port in (self.out, self.inp):
            release(port, self.api)
