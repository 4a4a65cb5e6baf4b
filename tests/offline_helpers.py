"""Driving an EngineCore offline (as ``genie play`` does) in tests, and reading what it sent."""

from __future__ import annotations

from daemon.config import parse_config
from daemon.core import EngineCore, HostRef, Slot
from daemon.events import CLOCK, START, Counters, MidiEvent, is_note_off, is_note_on
from daemon.processor import Context
from daemon.workers import SteppedWorkers

MS = 1_000_000


def clock_at(bpm: float, start_ns: int, ticks: int, source: str = "daw", preroll: int = 0) -> list[MidiEvent]:
    """Start, then ``ticks`` MIDI clocks at ``bpm`` from ``start_ns``; ``preroll`` clocks before
    the Start (a DAW that sends clock while stopped)."""
    tick_ns = 60e9 / bpm / 24
    return [MidiEvent(start_ns + round(i * tick_ns), source, (CLOCK,)) for i in range(-preroll, 0)] + [
        MidiEvent(start_ns, source, (START,))] + [
        MidiEvent(start_ns + round(i * tick_ns), source, (CLOCK,)) for i in range(ticks)]


def offline_core(raw: dict, procs: dict):
    """An EngineCore as ``genie play`` builds it (stepped workers, simulated clock), recording
    what it sends with the simulated time: returns (core, clock, sent list of (ns, msg)).
    ``procs`` maps a processor's label, else its name, to an instance or a class."""
    cfg = parse_config(raw)
    cfg.midi.send_ahead_ms = 0
    clock = [0]
    host = HostRef()
    slots = []
    for i, pcfg in enumerate(cfg.processors):
        proc = procs.get(pcfg.label) or procs[pcfg.name]
        proc = proc() if isinstance(proc, type) else proc
        proc.start(Context(pcfg.label, dict(pcfg.options), seed=i, now_ns=lambda: clock[0], host=host))
        slots.append(Slot(pcfg, proc))
    sent: list[tuple[int, tuple[int, ...]]] = []
    counters = Counters()
    core = EngineCore(cfg, slots, counters, workers=SteppedWorkers(counters), host=host,
                      record=lambda d, t, port, msg: sent.append((t, msg)) if d == "out" else None)
    core.echo_window_ns = 0
    return core, clock, sent


def ons(sent, pitches=None):
    return [(t, m[1]) for t, m in sent if is_note_on(m) and (pitches is None or m[1] in pitches)]


def left_sounding(sent) -> set[int]:
    sounding: set[int] = set()
    for _, m in sent:
        if is_note_on(m):
            sounding.add(m[1])
        elif is_note_off(m):
            sounding.discard(m[1])
    return sounding
