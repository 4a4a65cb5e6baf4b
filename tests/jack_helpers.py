"""Helpers for the real-port tests: a rig that starts ``genie run`` daemons and port clients on
the private JACK dummy server and always stops them, plus small readers of MIDI streams."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

from daemon.events import CLOCK, START, now_ns
from daemon.events import is_note_off as is_off
from daemon.events import is_note_on as is_on
from daemon.rigs.loopback import GenieProcess, PortClient

PLUGINS = Path(__file__).parent / "plugins"
NOTE_ON, NOTE_OFF, CC = 0x90, 0x80, 0xB0

_names = itertools.count(1)


@contextlib.contextmanager
def running(server):
    """Start a ``DummyServer`` (which points this process and its children at it) and stop it
    after (which gives the environment back)."""
    server.start()
    try:
        yield server
    finally:
        server.stop()


def config_text(processor: str = 'name = "thru"', midi: str = "", engine: str = "") -> str:
    """A TOML config on JACK with one ``[[processor]]``; extra lines per table."""
    return (f'[midi]\napi = "jack"\n{midi}\n'
            f'[engine]\n{engine}\n'
            f'[[processor]]\n{processor}\n')


def notes(msgs: list[tuple[int, ...]]) -> list[tuple[str, int]]:
    """("on"/"off", pitch) for the note messages of a stream, in order."""
    return [("on" if is_on(m) else "off", m[1]) for m in msgs if is_on(m) or is_off(m)]


def sounding_after(msgs: list[tuple[int, ...]]) -> set[tuple[int, int]]:
    """(channel, pitch) of the notes a stream leaves sounding."""
    sounding: set[tuple[int, int]] = set()
    for m in msgs:
        if is_on(m):
            sounding.add((m[0] & 0x0F, m[1]))
        elif is_off(m):
            sounding.discard((m[0] & 0x0F, m[1]))
    return sounding


def counters_of(line: str) -> dict[str, int]:
    """``k=v`` pairs of a ``stopped: ...`` log line."""
    return {k: int(v) for k, v in re.findall(r"([\w.]+)=(\d+)", line.split("stopped", 1)[1])}


class Client(PortClient):
    """A PortClient that also remembers what it is called and reads messages without stamps."""

    def __init__(self, name: str, **kw) -> None:
        self.name = name
        super().__init__(name, **kw)

    @property
    def play_port(self) -> str:
        """The full name of this client's own virtual output (when ``target_in=None``)."""
        return f"{self.name} play:play"

    def take(self, n: int, timeout_s: float = 5.0) -> list[tuple[int, ...]]:
        return [m for _, m in self.expect(n, timeout_s)]

    def until(self, last: tuple[int, ...], timeout_s: float = 5.0) -> list[tuple[int, ...]]:
        """Everything up to and including ``last`` (or what came before the deadline)."""
        out: list[tuple[int, ...]] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = self.take(1, deadline - time.monotonic())
            if not got:
                break
            out.extend(got)
            if got[0] == last:
                break
        return out


class Rig:
    """Starts daemons and clients for one test; ``close`` stops all of them, daemons first."""

    def __init__(self, tmp_path: Path, test_name: str) -> None:
        self.tmp_path = tmp_path
        self.tag = re.sub(r"[^a-z0-9]", "", test_name.lower().removeprefix("test_"))[:12] or "t"
        self.runtime_dir = tmp_path / "xdg-runtime"
        self.runtime_dir.mkdir(exist_ok=True)
        self.daemons: list[GenieProcess] = []
        self.clients: list[Client] = []

    @property
    def env(self) -> dict[str, str]:
        """Environment for ``genie`` subprocesses: a private runtime dir (pid file), the plug-in."""
        path = os.pathsep.join(p for p in (str(PLUGINS), os.environ.get("PYTHONPATH", "")) if p)
        return {"XDG_RUNTIME_DIR": str(self.runtime_dir), "PYTHONPATH": path,
                "XDG_CONFIG_HOME": str(self.tmp_path / "xdg-config"),
                "XDG_STATE_HOME": str(self.tmp_path / "xdg-state")}  # no learned maps of the user

    def write_config(self, text: str) -> Path:
        path = self.tmp_path / f"genie-{len(self.daemons)}.toml"
        path.write_text(text)
        return path

    def genie(self, config: str, *args: str, timeout_s: float = 30.0) -> GenieProcess:
        proc = GenieProcess(list(args), env=self.env, config=str(self.write_config(config)))
        self.daemons.append(proc)
        return proc.start(timeout_s)

    def client(self, **kw) -> Client:
        """A fresh JACK client (``gt<n>-<test>``), by default wired to Genie's ports."""
        client = Client(f"gt{next(_names)}-{self.tag}", **kw)
        self.clients.append(client)
        return client

    def close(self) -> None:
        errors = []
        for i, proc in enumerate(self.daemons):
            try:
                proc.stop(signal.SIGTERM, timeout_s=15)
            except Exception as exc:  # stop the rest too
                errors.append(exc)
            print(f"--- genie daemon {i} log (exit code {proc.proc and proc.proc.returncode}):")
            print(proc.log)  # pytest shows it when the test fails
        if self.daemons:
            self._settle()
        for client in self.clients:
            try:
                client.close()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def _settle(self, timeout_s: float = 3.0) -> None:
        """Wait until the stopped daemons' ports are gone from the server before our clients
        close: their exit changes the graph, and closing a port while JACK still announces that
        change can crash libjack (see ``daemon.rigs.loopback.GRAPH_QUIET_S``)."""
        if not self.clients:
            return
        ours = tuple(c.name for c in self.clients)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                ports = self.clients[0].inp.get_ports()
            except Exception:
                break
            if all(p.startswith(ours) for p in ports):
                break
            time.sleep(0.02)


def genie_cmd(*args: str, config: Path | None = None) -> list[str]:
    return [sys.executable, "-m", "daemon", *(["--config", str(config)] if config else []), *args]


class Daw(threading.Thread):
    """Sends MIDI clock at ``bpm`` on its own thread, against absolute times (no drift); keeps
    the time each clock was due (``due``: the DAW's beat grid) and sent (``sent``: later by the
    sender's wake-up, a few ms now and then). ``ticks`` clocks, then it stops sending."""

    def __init__(self, client, bpm: float, ticks: int, start_msg=START) -> None:
        super().__init__(daemon=True)
        self.client, self.bpm, self.ticks, self.start_msg = client, bpm, ticks, start_msg
        self.sent: list[int] = []
        self.due: list[int] = []
        self.halt = threading.Event()

    def run(self) -> None:
        tick_ns = 60e9 / self.bpm / 24
        t0 = now_ns() + 20_000_000
        for i in range(self.ticks):
            due = t0 + round(i * tick_ns)
            while (left := due - now_ns()) > 0:
                time.sleep(min(left / 1e9, 0.005))
            if self.halt.is_set():
                return
            if i == 0 and self.start_msg is not None:
                self.client.send((self.start_msg,))
            self.due.append(due)
            self.sent.append(self.client.send((CLOCK,)))


def play_phrase(client, pitches=(60, 64, 67, 72, 67, 64), hold_s: float = 0.12, gap_s: float = 0.03,
                velocity: int = 80) -> None:
    """A musician's short phrase into Genie: each pitch held ``hold_s``, then ``gap_s`` of rest."""
    for p in pitches:
        client.send((NOTE_ON, p, velocity))
        time.sleep(hold_s)
        client.send((NOTE_OFF, p, 0))
        time.sleep(gap_s)


def drain(client, quiet_s: float = 0.6, limit_s: float = 20.0):
    """Everything the client receives until ``quiet_s`` passes with nothing (time, message)."""
    out = []
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        got = client.expect(1, quiet_s)
        if not got:
            break
        out += got
    return out
