"""JACK helpers: query a running server through libjack, and run a private dummy server.

The dummy server backs ``genie run --headless`` on machines with no sound hardware, and the
real-port tests and benchmarks. Fresh dummy servers sometimes stall for good and pass no MIDI, so
``DummyServer.start`` pings through a loopback connection and restarts a stuck server. jack2
allows 8 servers per machine and a dead server keeps its slot, so the name is fixed and servers
are stopped with SIGTERM and waited for.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from daemon.io.child import stop_child

log = logging.getLogger("genie.jack")

JACK_NO_START_SERVER = 0x01
JACK_SERVER_NAME = 0x04


def server_name() -> str:
    return os.environ.get("JACK_DEFAULT_SERVER", "default")


def _libjack():
    path = ctypes.util.find_library("jack")
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(path)
    except OSError:
        return None
    lib.jack_client_open.restype = ctypes.c_void_p
    lib.jack_client_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int),
                                     ctypes.c_char_p]
    lib.jack_get_buffer_size.argtypes = [ctypes.c_void_p]
    lib.jack_get_buffer_size.restype = ctypes.c_uint32
    lib.jack_get_sample_rate.argtypes = [ctypes.c_void_p]
    lib.jack_get_sample_rate.restype = ctypes.c_uint32
    lib.jack_client_close.argtypes = [ctypes.c_void_p]
    return lib


NON_REALTIME = ("the JACK server runs without real-time scheduling: on a busy machine a client "
                "that is late for a cycle loses the MIDI it sent in it (measured here on a quiet "
                "machine: 0-2 of 1,000 presses, through Genie or a minimal client alike, more when "
                "the machine is busy; none on a real-time server)")


@dataclass(frozen=True)
class ServerInfo:
    buffer_frames: int
    sample_rate: int
    realtime: bool = True  # jackd -R (its threads SCHED_FIFO): a late client keeps its MIDI

    @property
    def period_ns(self) -> int:
        return self.buffer_frames * 1_000_000_000 // self.sample_rate


def server_info(name: str | None = None) -> ServerInfo | None:
    """Buffer size and rate of the running JACK server, or None when none runs (never starts one)."""
    lib = _libjack()
    if lib is None:
        return None
    status = ctypes.c_int(0)
    name = name or server_name()
    with _quiet_stderr():  # libjack prints several lines when no server answers
        client = lib.jack_client_open(b"genie-query", JACK_NO_START_SERVER | JACK_SERVER_NAME,
                                      ctypes.byref(status), name.encode())
    if not client:
        return None
    try:
        lib.jack_is_realtime.argtypes = [ctypes.c_void_p]
        return ServerInfo(lib.jack_get_buffer_size(client), lib.jack_get_sample_rate(client),
                          bool(lib.jack_is_realtime(client)))
    finally:
        lib.jack_client_close(client)


class CycleClock:
    """Where the running JACK server is in its cycle, read from its shared engine state.

    A client with no ports that is never activated: it takes no part in the graph and costs the
    audio thread nothing. ``jack_get_cycle_times`` says when the current cycle began and when the
    next one will; the engine polls rtmidi at fixed points of each cycle with it (see
    ``daemon.engine``). Cycle times that disagree with the server's buffer size (a stalled or
    restarting server) read as None, and the caller falls back to its timer.
    """

    def __init__(self, lib, client: int) -> None:
        self._lib = lib
        self._client = client
        self._frames = ctypes.c_uint32()
        self._start = ctypes.c_uint64()
        self._next = ctypes.c_uint64()
        self._period = ctypes.c_float()
        self.nominal_ns = (lib.jack_get_buffer_size(client) * 1_000_000_000
                           // max(1, lib.jack_get_sample_rate(client)))
        self.realtime = bool(lib.jack_is_realtime(client))  # jackd -R: its threads are SCHED_FIFO

    @classmethod
    def open(cls, client_name: str, server: str | None = None) -> "CycleClock | None":
        """A clock on ``server`` (default ``$JACK_DEFAULT_SERVER``); None when none answers."""
        lib = _libjack()
        if lib is None:
            return None
        lib.jack_get_cycle_times.argtypes = [
            ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32), ctypes.POINTER(ctypes.c_uint64),
            ctypes.POINTER(ctypes.c_uint64), ctypes.POINTER(ctypes.c_float)]
        lib.jack_get_time.restype = ctypes.c_uint64
        lib.jack_is_realtime.argtypes = [ctypes.c_void_p]
        status = ctypes.c_int(0)
        with _quiet_stderr():
            client = lib.jack_client_open(client_name.encode(),
                                          JACK_NO_START_SERVER | JACK_SERVER_NAME,
                                          ctypes.byref(status), (server or server_name()).encode())
        if not client:
            return None
        return cls(lib, client)

    def abandon(self) -> None:
        """Forget the client of a server that died (closing it could block)."""
        self._client = None

    def cycle(self) -> tuple[int, int] | None:
        """(ns since the current cycle began, cycle length in ns), or None when not credible.

        The start is the server's estimate: a few tens of microseconds ahead of now at times, so
        the first may be negative (``ns_until`` takes it modulo the period); more than a period
        ahead is not credible."""
        if self._client is None or self._lib.jack_get_cycle_times(
                self._client, ctypes.byref(self._frames), ctypes.byref(self._start),
                ctypes.byref(self._next), ctypes.byref(self._period)) != 0:
            return None
        period = (self._next.value - self._start.value) * 1000
        if not self.nominal_ns // 2 <= period <= 2 * self.nominal_ns:
            return None
        since = (self._lib.jack_get_time() - self._start.value) * 1000
        if since < -period:  # a start far ahead of now (seen on a busy dummy server: 252 ms)
            return None
        return since, period

    def ns_until(self, phases: tuple[float, ...]) -> int | None:
        """ns from now to the nearest coming point ``phases`` (0-1) of the way into a cycle."""
        got = self.cycle()
        if got is None:
            return None
        since, period = got
        return min((int(p * period) - since) % period or period for p in phases)

    def close(self) -> None:
        if self._client is not None:
            self._lib.jack_client_close(self._client)
            self._client = None


class ConnectionWatch:
    """The ports connected to one of Genie's own ports (its virtual input), read through libjack.

    Like ``CycleClock``, a client with no ports, never activated. When a connection into "Genie in"
    goes away, the notes it was holding must end: rtmidi cannot say which sender a message came
    from (JACK merges every connection into the port), so the engine ends all notes held through
    that port."""

    _SHUTDOWN = ctypes.CFUNCTYPE(None, ctypes.c_void_p)

    def __init__(self, lib, client: int, port_name: str) -> None:
        self._lib = lib
        self._client = client
        self.port_name = port_name
        self._dead = threading.Event()
        # libjack calls this from its own thread when the server goes away (kept referenced)
        self._on_shutdown = self._SHUTDOWN(lambda arg: self._dead.set())
        lib.jack_on_shutdown.argtypes = [ctypes.c_void_p, self._SHUTDOWN, ctypes.c_void_p]
        lib.jack_on_shutdown(client, self._on_shutdown, None)

    @property
    def server_alive(self) -> bool:
        return self._client is not None and not self._dead.is_set()

    @property
    def server_gone(self) -> bool:
        """Its server shut down (stays true after the watch is closed or abandoned)."""
        return self._dead.is_set()

    def has_port(self) -> bool:
        """The watched port is there on this watch's server."""
        return self.server_alive and bool(self._lib.jack_port_by_name(self._client, self.port_name.encode()))

    _MESSAGE = ctypes.CFUNCTYPE(None, ctypes.c_char_p)
    _route = None

    @classmethod
    def open(cls, client_name: str, port_name: str, server: str | None = None) -> "ConnectionWatch | None":
        lib = _libjack()
        if lib is None:
            return None
        if cls._route is None:  # libjack's own complaints (a dead server's sockets) go to the log
            cls._route = cls._MESSAGE(lambda msg: log.debug("libjack: %s", msg.decode(errors="replace")))
            lib.jack_set_error_function.argtypes = [cls._MESSAGE]
            lib.jack_set_info_function.argtypes = [cls._MESSAGE]
            lib.jack_set_error_function(cls._route)
            lib.jack_set_info_function(cls._route)
        lib.jack_port_by_name.restype = ctypes.c_void_p
        lib.jack_port_by_name.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.jack_port_get_all_connections.restype = ctypes.POINTER(ctypes.c_char_p)
        lib.jack_port_get_all_connections.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.jack_free.argtypes = [ctypes.c_void_p]
        status = ctypes.c_int(0)
        with _quiet_stderr():
            client = lib.jack_client_open(client_name.encode(), JACK_NO_START_SERVER | JACK_SERVER_NAME,
                                          ctypes.byref(status), (server or server_name()).encode())
        if not client:
            return None
        return cls(lib, client, port_name)

    def connections(self) -> set[str] | None:
        """Full names of the ports connected to ours; None when the port is not found."""
        if not self.server_alive:
            return None
        port = self._lib.jack_port_by_name(self._client, self.port_name.encode())
        if not port:
            return None
        return _names(self._lib, self._lib.jack_port_get_all_connections(self._client, port))


    def close(self) -> None:
        if self._client is not None:
            self._lib.jack_client_close(self._client)
            self._client = None

    def abandon(self) -> None:
        """Forget a client whose server died (closing it could block on the dead server)."""
        self._client = None


def _names(lib, names) -> set[str]:
    """A NULL-terminated array of port names that libjack allocated, as a set; freed."""
    if not names:
        return set()
    out, i = set(), 0
    while names[i]:
        out.add(names[i].decode(errors="replace"))
        i += 1
    lib.jack_free(ctypes.cast(names, ctypes.c_void_p))
    return out


class PortLister:
    """One libjack client that lists the server's ports, kept open across Genie's port opening so
    the ports that appear meanwhile can be told apart (JACK gives a taken client name a suffix:
    a second Genie's "Genie in" becomes "Genie in-01:Genie in", and says so to no one)."""

    def __init__(self, lib, client: int) -> None:
        self._lib, self._client = lib, client

    @classmethod
    def open(cls, server: str | None = None) -> "PortLister | None":
        lib = _libjack()
        if lib is None:
            return None
        lib.jack_get_ports.restype = ctypes.POINTER(ctypes.c_char_p)
        lib.jack_get_ports.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong]
        lib.jack_free.argtypes = [ctypes.c_void_p]
        status = ctypes.c_int(0)
        with _quiet_stderr():
            client = lib.jack_client_open(b"genie-ports", JACK_NO_START_SERVER | JACK_SERVER_NAME,
                                          ctypes.byref(status), (server or server_name()).encode())
        return cls(lib, client) if client else None

    def ports(self) -> set[str]:
        """Full names of every port on the server now."""
        return _names(self._lib, self._lib.jack_get_ports(self._client, None, None, 0))

    def close(self) -> None:
        if self._client is not None:
            self._lib.jack_client_close(self._client)
            self._client = None


def given_name(name: str, appeared: set[str]) -> str | None:
    """The full name JACK gave a port Genie opened as ``name`` (client and port both ``name``),
    among the ports that ``appeared`` while Genie opened its own: ``name:name``, or
    ``name-NN:name`` where the client name was taken. Other new ports (a link client such as
    "Genie out to FluidSynth", another program's) are not Genie's port."""
    pattern = re.compile(rf"{re.escape(name)}(-\d+)?:{re.escape(name)}")
    mine = sorted(p for p in appeared if pattern.fullmatch(p))
    return mine[0] if len(mine) == 1 else None


def wait_connected(src: str, dst: str | None = None, timeout_s: float = 5.0,
                   server: str | None = None) -> bool:
    """Wait until the server's running graph connects port ``src`` to ``dst`` (full names; None:
    to anything). True when it does before the deadline.

    ``jack_connect`` returns before the server switches to the new graph at a cycle boundary,
    later still on a loaded machine; what a client sends meanwhile goes nowhere. A test or a
    benchmark that plays right after connecting waits here first.
    """
    lib = _libjack()
    if lib is None:
        return False
    lib.jack_port_by_name.restype = ctypes.c_void_p
    lib.jack_port_by_name.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.jack_port_connected.argtypes = [ctypes.c_void_p]
    lib.jack_port_connected_to.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    status = ctypes.c_int(0)
    with _quiet_stderr():
        client = lib.jack_client_open(b"genie-graph", JACK_NO_START_SERVER | JACK_SERVER_NAME,
                                      ctypes.byref(status), (server or server_name()).encode())
    if not client:
        return False
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            port = lib.jack_port_by_name(client, src.encode())
            if port and (lib.jack_port_connected_to(port, dst.encode()) if dst is not None
                         else lib.jack_port_connected(port) > 0):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
    finally:
        lib.jack_client_close(client)


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 for a moment (C libraries that print). Start-up only."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def jackd_available() -> bool:
    return shutil.which("jackd") is not None


@dataclass
class DummyServer:
    """A private jackd with the dummy driver, under a fixed name, pinged before use."""

    name: str = "genie-test"
    period: int = 256
    rate: int = 48000
    sync: bool = False  # jackd -S: the server waits for every client each cycle (no lost MIDI
    # when a client is late on a loaded machine; functional tests want this)
    realtime: bool = False  # jackd -R: real-time threads (needs rtprio rights; benchmarks)
    log_path: Path | None = None  # default: <tmp>/<name>-jackd.log, one per server name
    proc: subprocess.Popen | None = None
    _saved_env: dict[str, str | None] | None = None  # this process's, given back by stop()

    def __post_init__(self) -> None:
        if self.log_path is None:
            self.log_path = Path(tempfile.gettempdir()) / f"{self.name}-jackd.log"

    def env(self) -> dict[str, str]:
        return {"JACK_DEFAULT_SERVER": self.name, "JACK_NO_START_SERVER": "1"}

    def start(self, attempts: int = 4) -> "DummyServer":
        """Start the server and make sure it passes MIDI; restart it when it is stuck.

        Points this process (and the children it starts) at the server until ``stop``."""
        if not jackd_available():
            raise RuntimeError("jackd is not installed (apt-get install jackd2)")
        if self._saved_env is None:
            self._saved_env = {k: os.environ.get(k) for k in self.env()}
        os.environ.update(self.env())
        try:
            for attempt in range(attempts):
                self._spawn()
                if self.ping():
                    return self
                log.warning("JACK dummy server %r passes no MIDI (attempt %d); restarting",
                            self.name, attempt + 1)
                self._halt()
            raise RuntimeError(f"JACK dummy server {self.name!r} stays stuck; see "
                               f"{self.log_path}")
        except BaseException:
            self.stop()
            raise

    def _spawn(self) -> None:
        if server_info(self.name) is not None:
            raise RuntimeError(f"a JACK server named {self.name!r} is already running "
                               "(left over from an earlier run?); stop it first")
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            ["jackd", *(["-S"] if self.sync else []), "-n", self.name,
             "-R" if self.realtime else "--no-realtime", "-d", "dummy", "-r", str(self.rate),
             "-p", str(self.period)],
            stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **self.env()},
            start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jackd exited at start (code {self.proc.returncode}); "
                                   f"see {self.log_path}")
            if server_info(self.name) is not None:
                return
            time.sleep(0.05)
        raise RuntimeError(f"jackd did not come up in 10 s; see {self.log_path}")

    def ping(self, timeout_s: float = 2.0) -> bool:
        """Send a message through a loopback connection; True when it arrives."""
        import rtmidi

        mi = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="genie-ping-in")
        mo = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="genie-ping-out")
        try:
            mi.open_virtual_port("ping")
            idx = match_index(mo.get_ports(), "genie-ping-in:ping")
            if idx is None:
                return False
            mo.open_port(idx)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                mo.send_message([0xB0, 0x66, 0x01])
                t_end = time.monotonic() + 0.1
                while time.monotonic() < t_end:
                    if mi.get_message() is not None:
                        return True
                    time.sleep(0.002)
            return False
        finally:
            from daemon.io.midi import release

            # it connected a moment ago: on a busy machine the server's latency update for that
            # comes late, and an unregister during it crashes libjack (see daemon.io.midi.release)
            release(mi, "jack", quiet_s=0.5)
            release(mo, "jack", quiet_s=0.0)

    def xruns(self) -> list[str]:
        """Lines of the server log that report xruns (each names the client blamed)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if "XRun" in line or "xrun" in line]

    def stop(self) -> None:
        """Stop the server and give this process's JACK environment back."""
        self._halt()
        for key, value in (self._saved_env or {}).items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env = None

    def _halt(self) -> None:
        stop_child(self.proc, timeout_s=5)
        self.proc = None
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None


def match_index(names: list[str], wanted: str) -> int | None:
    for i, n in enumerate(names):
        if n == wanted:
            return i
    return None
