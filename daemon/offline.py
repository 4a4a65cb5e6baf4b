"""``genie play``: run a MIDI file through the processors on a simulated clock.

The same ``EngineCore`` as live, driven by a clock that jumps from one thing to do to the next
(an input event, an idle call every ``engine.idle_interval_ms``, a due output). Processors see
that clock through ``Context.now_ns``, background jobs make one piece per tick
(``SteppedWorkers``), and nothing reads the wall clock, so the same file, config and seed give the
same output, byte for byte. Clocked processors hear a transport made from the file's tempo map
(or ``--bpm``) on the same clock. Output goes through the recorder's MIDI writer: the input track, then one
track per output port.

Buttons (``as_buttons``): without it, file notes go in as MIDI and each processor turns the notes
of its own button map into button presses, as live. With it, every note becomes a press of one of
the 8 buttons: when all the file's pitches are in the first processor's button map, button i is
``buttons[i]``, as on an 8-key controller; otherwise the file's pitch range (lowest to highest
note) is split into 8 equal bands, low to high, and a note presses the button of its band, which
keeps the melody's contour. A press of a button that is still held re-triggers it (release, then
press); it is released when its last note ends. The panic button combination is off for these
presses, since a chord could hold it.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import mido
from mido.midifiles.meta import KeySignatureError

from daemon.config import Config, ProcessorConfig, thawed_copy
from daemon.core import EngineCore
from daemon.events import (CLOCK, START, STOP, ButtonEvent, Counters, Event, MidiEvent, is_note_off,
                           is_note_on)
from daemon.io.recorder import RecordedEvent, write_midi
from daemon.session import build_core
from daemon.transport import TICKS_PER_BEAT
from daemon.workers import SteppedWorkers

log = logging.getLogger("genie.offline")

SOURCE = "file"
TAIL_NS = 2_000_000_000  # keep playing this long after the last input event
MAX_TAIL_NS = 60_000_000_000  # then stop, even if a processor keeps scheduling


def read_events(path: str | os.PathLike) -> list[MidiEvent]:
    """All messages of a MIDI file, tracks merged, stamped with absolute times in ns.

    Raises ValueError with a one-line message naming the file when it is missing or no MIDI file.
    """
    try:
        mid = mido.MidiFile(path)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: is a directory, not a MIDI file") from None
    except OSError as exc:
        if exc.strerror:  # a real I/O error (permission, ...); mido raises OSError for bad data too
            raise ValueError(f"{path}: cannot read: {exc.strerror}") from None
        raise ValueError(f"{path}: not a valid MIDI file: {exc}") from None
    except EOFError:
        raise ValueError(f"{path}: not a valid MIDI file: it ends early") from None
    except (ValueError, KeyError, IndexError, TypeError, KeySignatureError) as exc:
        raise ValueError(f"{path}: not a valid MIDI file: {exc or type(exc).__name__}") from None
    events = []
    seconds = 0.0
    try:
        for msg in mid:  # merged tracks, tempo applied, delta times in seconds
            seconds += msg.time
            if msg.is_meta:
                continue
            events.append(MidiEvent(round(seconds * 1e9), SOURCE, tuple(msg.bytes())))
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"{path}: not a valid MIDI file: {exc or type(exc).__name__}") from None
    return events


def to_buttons(events: list[MidiEvent], button_notes: list[int]) -> list[Event]:
    """Notes as button presses (the rule is in the module docstring); other messages unchanged."""
    pitches = sorted({ev.message[1] for ev in events if ev.is_note_on or ev.is_note_off})
    if not pitches:
        return list(events)
    if all(p in button_notes for p in pitches):
        band = {p: button_notes.index(p) for p in pitches}
    else:
        lo, span = pitches[0], pitches[-1] - pitches[0] + 1
        band = {p: (p - lo) * 8 // span for p in pitches}
    held: dict[int, int] = {}  # button -> notes holding it
    out: list[Event] = []
    for ev in events:
        if not (ev.is_note_on or ev.is_note_off):
            out.append(ev)
            continue
        button = band[ev.message[1]]
        if ev.is_note_on:
            if held.get(button):
                out.append(ButtonEvent(ev.time_ns, ev.source, button, False))
            held[button] = held.get(button, 0) + 1
            out.append(ButtonEvent(ev.time_ns, ev.source, button, True, ev.message[2]))
        elif held.get(button):
            held[button] -= 1
            if not held[button]:
                out.append(ButtonEvent(ev.time_ns, ev.source, button, False))
    return out


def offline_config(cfg: Config, processor: str | None, as_buttons: bool,
                   seed: int | None) -> Config:
    """A copy of ``cfg`` set up for offline play."""
    cfg = thawed_copy(cfg)
    cfg.midi.send_ahead_ms = 0.0
    if seed is not None:
        cfg.engine.seed = seed
    if processor:
        cfg.processors = [ProcessorConfig(name=processor, label=processor)]
    for pcfg in cfg.processors:
        pcfg.label = pcfg.label or pcfg.name
    if as_buttons:
        cfg.engine.panic_buttons = []
    return cfg


def tempo_map(path: str | os.PathLike) -> list[tuple[float, int]]:
    """(seconds, microseconds per quarter) at each tempo change of a MIDI file; 120 BPM before
    the first."""
    mid = mido.MidiFile(path)
    changes, seconds = [(0.0, 500_000)], 0.0
    for msg in mid:
        seconds += msg.time
        if msg.is_meta and msg.type == "set_tempo":
            if changes[-1][0] == seconds:
                changes[-1] = (seconds, msg.tempo)
            else:
                changes.append((seconds, msg.tempo))
    return changes


def clock_events(path: str | os.PathLike, end_ns: int, bpm: float | None = None) -> list[MidiEvent]:
    """A DAW's transport for a file: Start at 0, MIDI clock (24 per quarter) from the file's
    tempo map (or a fixed ``bpm``) until ``end_ns``, then Stop."""
    changes = [(0.0, round(60e6 / bpm))] if bpm else tempo_map(path)
    out = [MidiEvent(0, "clock", (START,))]
    t, i = 0.0, 0
    while round(t * 1e9) < end_ns:
        out.append(MidiEvent(round(t * 1e9), "clock", (CLOCK,)))
        while i + 1 < len(changes) and changes[i + 1][0] <= t + 1e-9:
            i += 1
        t += changes[i][1] / 1e6 / TICKS_PER_BEAT
    out.append(MidiEvent(end_ns, "clock", (STOP,)))
    return out


def play_file(cfg: Config, in_path: str | os.PathLike, out_path: str | os.PathLike,
              processor: str | None = None, as_buttons: bool = False,
              seed: int | None = None, bpm: float | None = None) -> dict[str, Any]:
    """Play ``in_path`` through the processors on a simulated clock; write ``out_path``.

    Processors with ``clock = true`` hear the file's own clock and transport messages or, when
    it has none, a transport made from its tempo map (``bpm``: a fixed tempo instead).

    Returns statistics: input events, output messages and notes, seconds simulated, tracks
    written, and the engine's counters. Raises ValueError (one line) for an unreadable input
    file, and ProcessorError when a processor cannot be loaded or started.
    """
    cfg = offline_config(cfg, processor, as_buttons, seed)
    file_events = read_events(in_path)
    events: list[Event] = (to_buttons(file_events, cfg.processors[0].buttons) if as_buttons
                           else list(file_events))

    if any(p.clock for p in cfg.processors) and not any(ev.message[0] == CLOCK for ev in file_events):
        events += clock_events(in_path, events[-1].time_ns + TAIL_NS if events else TAIL_NS, bpm)

    clock = [0]

    def now() -> int:
        return clock[0]

    recorded: list[RecordedEvent] = []
    counters = Counters()
    core = build_core(cfg, SteppedWorkers(counters), now_ns=now, counters=counters,
                      record=lambda d, t, port, msg: recorded.append((d, t, port, tuple(msg))))
    slots = core.slots

    sent = _drive(core, events, clock)
    stats = write_midi(out_path, recorded, start_ns=0)
    duration_ns = clock[0]
    return {
        "events_in": len(file_events),
        "messages_out": len(sent),
        "notes_out": sum(1 for _, msg in sent if is_note_on(msg)),
        "note_offs_out": sum(1 for _, msg in sent if is_note_off(msg)),
        "seconds": duration_ns / 1e9,
        "tracks": stats.tracks,
        "processors": [s.label for s in slots],
        "counters": dict(counters.values),
    }


def _drive(core: EngineCore, events: list[Event], clock: list[int]) -> list[tuple[str, tuple[int, ...]]]:
    """Feed ``events`` at their times and tick as the live engine would wake; then stop."""
    events = sorted(events, key=lambda ev: ev.time_ns)  # stable: file order within a time
    last_ns = events[-1].time_ns if events else 0
    end_ns, hard_end_ns = last_ns + TAIL_NS, last_ns + MAX_TAIL_NS
    sent: list[tuple[str, tuple[int, ...]]] = []
    i, n = 0, len(events)
    now = 0
    while True:
        clock[0] = now
        while i < n and events[i].time_ns <= now:
            core.feed(events[i], now)
            i += 1
        sent.extend(core.tick(now))
        if i >= n and now >= end_ns and not len(core.scheduler) and not core.workers.busy():
            break
        if now >= hard_end_ns:
            log.warning("processors still playing %.0f s after the last input; stopping",
                        MAX_TAIL_NS / 1e9)
            break
        wake = core.next_wake_ns()
        if i < n:
            wake = min(wake, events[i].time_ns)
        elif now < end_ns:
            wake = min(wake, end_ns)
        now = max(wake, now + 1)
    sent.extend(core.stop(now))
    return sent
