"""MIDI ports over python-rtmidi: API choice, virtual and existing ports, errors as one line.

Inputs register no rtmidi callback: under JACK that callback would run inside the audio server's
real-time thread and wait for the GIL. rtmidi queues incoming messages itself, and the engine
thread drains that queue (``MidiInput.drain``), stamping each message with the daemon's clock.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import time
from dataclasses import dataclass

log = logging.getLogger("genie.midi")

API_NAMES = ("alsa", "jack", "coremidi")


class PortError(OSError):
    """A MIDI port or API problem; ``str()`` is the one-line message for the user."""


def _rtmidi():
    import rtmidi  # imported lazily so config errors never wait for it

    return rtmidi


def _api_id(api: str) -> int:
    rtmidi = _rtmidi()
    return {"alsa": rtmidi.API_LINUX_ALSA, "jack": rtmidi.API_UNIX_JACK,
            "coremidi": rtmidi.API_MACOSX_CORE}[api]


def alsa_usable() -> bool:
    """True when the ALSA sequencer device exists and we may open it."""
    return os.access("/dev/snd/seq", os.R_OK | os.W_OK)


def compiled_apis() -> list[str]:
    rtmidi = _rtmidi()
    ids = set(rtmidi.get_compiled_api())
    return [a for a in API_NAMES if _api_id(a) in ids]


def choose_api(requested: str) -> str:
    """Resolve ``auto`` to ALSA where the sequencer is usable, else a running JACK server."""
    from daemon.io import jack

    compiled = compiled_apis()
    if requested != "auto":
        if requested not in compiled:
            raise PortError(f"MIDI API {requested!r} is not compiled into python-rtmidi "
                            f"(have: {', '.join(compiled) or 'none'})")
        if requested == "jack" and jack.server_info() is None:
            raise PortError(f"no JACK server is running (server {jack.server_name()!r}); "
                            "start one, or use --headless to start a private dummy server")
        if requested == "alsa" and not alsa_usable():
            raise PortError("the ALSA sequencer /dev/snd/seq is missing or not accessible "
                            "(load snd-seq, or join the audio group)")
        return requested
    if "coremidi" in compiled:
        return "coremidi"
    if "alsa" in compiled and alsa_usable():
        return "alsa"
    if "jack" in compiled and jack.server_info() is not None:
        return "jack"
    raise PortError("no MIDI backend: the ALSA sequencer /dev/snd/seq is not usable and no JACK "
                    "server is running (use --headless to start a private JACK dummy server)")


def _silence_rtmidi(obj, label: str) -> None:
    """Route rtmidi's warnings through logging instead of stderr, at most one line a second.

    In a flood rtmidi warns once per message that does not fit its queue ("message queue limit
    reached"), tens of thousands of times a second, from the audio server's thread: the callback
    only counts, and says how many once a second."""
    import time

    seen = {"n": 0, "at": 0.0}

    def on_error(etype, msg, data=None):
        seen["n"] += 1
        now = time.monotonic()
        if now - seen["at"] >= 1.0:
            n, seen["n"], seen["at"] = seen["n"], 0, now
            log.warning("rtmidi (%s): %s%s", label, msg, f" ({n} times)" if n > 1 else "")

    obj.set_error_callback(on_error)


def open_probe(api: str, outputs: bool = False):
    """An rtmidi client that only lists ports (to notice ports that disappear and come back):
    the ports one can read from, or with ``outputs`` those one can play into."""
    rtmidi = _rtmidi()
    probe = (rtmidi.MidiOut if outputs else rtmidi.MidiIn)(_api_id(api), name="Genie watch")
    _silence_rtmidi(probe, "watch")
    return probe


# libjack (jack2 1.9.22, as bundled with python-rtmidi) lets a client's notification thread walk
# the client's port list for a latency update, which the server sends a cycle or so after any
# graph change, while the same client unregisters a port: a crash (jackaudio/jack2#216; seen here
# about once in 150 test teardowns). Unregistering only after the graph has been quiet for a
# moment keeps the two apart. Ports close at exit or in tests, never on the playing path.
GRAPH_QUIET_S = 0.1


def release(port, api: str, quiet_s: float = GRAPH_QUIET_S) -> None:
    """Close an rtmidi port and delete its client; under JACK after ``quiet_s`` without a graph
    change of its own (longer right after one: the server's latency update may come late)."""
    if api == "jack":
        time.sleep(quiet_s)
    port.close_port()
    port.delete()


def list_ports(api: str) -> tuple[list[str], list[str]]:
    """Names of the input and output ports visible through ``api``."""
    rtmidi = _rtmidi()
    try:
        mi = rtmidi.MidiIn(_api_id(api), name="Genie probe")
        _silence_rtmidi(mi, "probe")
        mo = rtmidi.MidiOut(_api_id(api), name="Genie probe")
        _silence_rtmidi(mo, "probe")
        try:
            return mi.get_ports(), mo.get_ports()
        finally:
            mi.delete()
            mo.delete()
    except rtmidi.SystemError as exc:
        raise PortError(f"cannot open the {api} MIDI API: {exc}") from exc


def match_port(pattern: str, names: list[str]) -> list[int]:
    """Indices of the ports whose name equals or glob-matches ``pattern``."""
    exact = [i for i, n in enumerate(names) if n == pattern]
    if exact:
        return exact
    return [i for i, n in enumerate(names)
            if fnmatch.fnmatchcase(n, pattern) or fnmatch.fnmatchcase(n, pattern + ":*")]


def burst_times(now_ns: int, deltas: list[float], after_ns: int) -> list[int]:
    """Arrival times for a burst drained at ``now_ns``: the last message is stamped now, earlier
    ones by rtmidi's deltas (which only order the burst), strictly increasing and after
    ``after_ns`` (the previous burst's last stamp), so a note-on and its note-off taken in one
    drain never share a time."""
    times = [0] * len(deltas)
    t = now_ns
    for i in range(len(deltas) - 1, -1, -1):
        times[i] = t
        t -= int(deltas[i] * 1e9) if i else 0
    floor = after_ns
    for i, t in enumerate(times):
        floor = times[i] = max(t, floor + 1)
    return times


@dataclass
class MidiInput:
    """One input port (Genie's virtual one, or an existing one we connected to)."""

    name: str
    api: str
    _port: object = None
    queue_limit: int = 1024
    pattern: str = ""  # what was asked for (a name or glob): an existing port is found again by it

    @classmethod
    def open(cls, api: str, name: str, *, virtual: bool, queue_limit: int = 1024) -> "MidiInput":
        rtmidi = _rtmidi()
        wanted = name
        try:
            client = name if virtual else f"Genie from {name}"[:60]
            port = rtmidi.MidiIn(_api_id(api), name=client, queue_size_limit=queue_limit)
            _silence_rtmidi(port, name)
            port.ignore_types(sysex=False, timing=False, active_sense=True)
            if virtual:
                port.open_virtual_port(name)
            else:
                found = match_port(name, port.get_ports())
                if not found:
                    port.delete()
                    raise PortError(f"MIDI input port {name!r} not found "
                                    "(see `genie ports`)")
                name = port.get_ports()[found[0]]
                port.open_port(found[0], name=f"from {name}"[:60])
        except (rtmidi.SystemError, rtmidi.InvalidPortError, rtmidi.NoDevicesError) as exc:
            raise PortError(f"cannot open MIDI input {name!r} ({api}): {exc}") from exc
        return cls(name=name, api=api, _port=port, queue_limit=queue_limit, pattern=wanted)

    @classmethod
    def waiting(cls, api: str, pattern: str, queue_limit: int = 1024) -> "MidiInput":
        """An input asked for that is not there yet (the engine opens it when it appears)."""
        return cls(name=pattern, api=api, _port=None, queue_limit=queue_limit, pattern=pattern)

    @property
    def is_open(self) -> bool:
        return self._port is not None

    def drain(self, limit: int) -> list[tuple[tuple[int, ...], float]]:
        """Up to ``limit`` (message, rtmidi delta seconds) waiting in rtmidi's queue, oldest first."""
        if self._port is None:
            return []
        out = []
        get = self._port.get_message
        for _ in range(limit):
            item = get()
            if item is None:
                break
            out.append((tuple(item[0]), item[1]))
        return out

    def close(self) -> None:
        if self._port is not None:
            release(self._port, self.api)
            self._port = None

    def abandon(self) -> None:
        """Its server died: never close or free its client (that crashes libjack)."""
        _keep_forever(self._port)
        self._port = None


def _keep_forever(*objs: object) -> None:
    """Hold a reference to rtmidi objects of a dead JACK server until the process ends: their
    destructor would close a client whose server is gone, which crashes libjack."""
    import ctypes

    for obj in objs:
        if obj is not None:
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))


@dataclass
class MidiOutput:
    """One output port: Genie's virtual port, connected on request to other ports."""

    name: str
    api: str
    _port: object = None
    _links: tuple = ()
    targets: tuple[str, ...] = ()  # the ports it was asked to connect to (names or globs)

    @classmethod
    def open(cls, api: str, name: str, connect: list[str] = ()) -> "MidiOutput":
        rtmidi = _rtmidi()
        try:
            port = rtmidi.MidiOut(_api_id(api), name=name)
            _silence_rtmidi(port, name)
            port.open_virtual_port(name)
        except (rtmidi.SystemError, rtmidi.InvalidPortError) as exc:
            raise PortError(f"cannot open MIDI output {name!r} ({api}): {exc}") from exc
        out = cls(name=name, api=api, _port=port, targets=tuple(connect))
        links = []
        for target in connect:
            try:
                links.append(out._connect(target))
            except PortError:
                log.warning("%s: %r is not there yet; Genie connects to it as soon as it appears",
                            name, target)
        out._links = tuple(links)
        return out

    def relink(self) -> list[str]:
        """Connect again to the targets that are there now (a synth that restarted); returns
        the targets connected."""
        for link in self._links:
            release(link, self.api)
        links, done = [], []
        for target in self.targets:
            try:
                links.append(self._connect(target))
                done.append(target)
            except PortError:
                continue
        self._links = tuple(links)
        return done

    def _connect(self, target: str) -> object:
        """Connect this output to an existing input port (e.g. a synth) with a second client."""
        rtmidi = _rtmidi()
        link = rtmidi.MidiOut(_api_id(self.api), name=f"{self.name} to {target}"[:60])
        _silence_rtmidi(link, target)
        found = match_port(target, link.get_ports())
        if not found:
            link.delete()
            raise PortError(f"MIDI port {target!r} to connect to not found (see `genie ports`)")
        link.open_port(found[0], name=self.name)
        return link

    def send(self, message: tuple[int, ...]) -> None:
        self._port.send_message(message)
        for link in self._links:
            link.send_message(message)

    def close(self) -> None:
        for p in (self._port, *self._links):
            if p is not None:
                release(p, self.api)
        self._port, self._links = None, ()

    def abandon(self) -> None:
        """Its server died: never close or free its clients (that crashes libjack)."""
        _keep_forever(self._port, *self._links)
        self._port, self._links = None, ()
