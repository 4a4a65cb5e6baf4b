"""Event and output types that flow through the engine.

Every event carries the time it arrived (``time_ns``, from :func:`now_ns`); every output carries
the time it is due (``due_ns``). Both use the one clock of the daemon, ``time.perf_counter_ns``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

now_ns = time.perf_counter_ns
"""The daemon's one clock: monotonic nanoseconds."""

NOTE_OFF = 0x80
NOTE_ON = 0x90
POLY_AFTERTOUCH = 0xA0
CONTROL_CHANGE = 0xB0
PROGRAM_CHANGE = 0xC0
CHANNEL_AFTERTOUCH = 0xD0
PITCH_BEND = 0xE0

CC_MOD_WHEEL = 1
CC_SUSTAIN = 64
CC_ALL_SOUND_OFF = 120
CC_ALL_NOTES_OFF = 123

CLOCK = 0xF8
START = 0xFA
CONTINUE = 0xFB
STOP = 0xFC
SONG_POSITION = 0xF2
TRANSPORT = frozenset({START, CONTINUE, STOP, SONG_POSITION})


@dataclass(frozen=True, slots=True)
class MidiEvent:
    """A MIDI message received from an input port (or read from a file)."""

    time_ns: int
    source: str
    message: tuple[int, ...]

    @property
    def status(self) -> int:
        return self.message[0] & 0xF0 if self.message[0] < 0xF0 else self.message[0]

    @property
    def channel(self) -> int | None:
        return self.message[0] & 0x0F if self.message[0] < 0xF0 else None

    @property
    def is_note_on(self) -> bool:
        return self.status == NOTE_ON and len(self.message) == 3 and self.message[2] > 0

    @property
    def is_note_off(self) -> bool:
        s = self.status
        return len(self.message) == 3 and (s == NOTE_OFF or (s == NOTE_ON and self.message[2] == 0))


@dataclass(frozen=True, slots=True)
class ButtonEvent:
    """One of the 8 buttons pressed or released (gamepad, keyboard, or a mapped MIDI note)."""

    time_ns: int
    source: str
    button: int
    pressed: bool
    velocity: int | None = None  # from a MIDI key, when there is one




@dataclass(frozen=True, slots=True)
class Out:
    """A MIDI message a processor wants sent at ``due_ns``.

    ``voice`` distinguishes owners inside one processor (e.g. the input port a thru note came
    from); the scheduler's ledger keys ownership by (processor, voice). ``channel`` in the message
    is rewritten by the engine to the processor's output channel unless ``keep_channel``.
    """

    due_ns: int
    message: tuple[int, ...]
    voice: str = ""
    keep_channel: bool = False


@dataclass(slots=True)
class Counters:
    """What the engine dropped or repaired, by reason; logged at exit and by ``genie doctor``."""

    values: dict[str, int] = field(default_factory=dict)

    def add(self, key: str, n: int = 1) -> None:
        self.values[key] = self.values.get(key, 0) + n

    def get(self, key: str) -> int:
        return self.values.get(key, 0)


def is_note_on(msg: tuple[int, ...]) -> bool:
    return len(msg) == 3 and msg[0] & 0xF0 == NOTE_ON and msg[2] > 0


def is_note_off(msg: tuple[int, ...]) -> bool:
    return len(msg) == 3 and (msg[0] & 0xF0 == NOTE_OFF or (msg[0] & 0xF0 == NOTE_ON and msg[2] == 0))


def valid_message(msg: tuple[int, ...]) -> bool:
    """True when ``msg`` is one complete, well-formed MIDI message (sysex included)."""
    if not msg:
        return False
    status = msg[0]
    if status < 0x80 or any(not 0 <= b <= 0xFF for b in msg):
        return False
    if status == 0xF0:
        return msg[-1] == 0xF7 and all(b < 0x80 for b in msg[1:-1])
    if any(b >= 0x80 for b in msg[1:]):
        return False
    return len(msg) == message_length(status)


def message_length(status: int) -> int:
    """Number of bytes in a non-sysex MIDI message with this status byte."""
    if status < 0xF0:
        return 2 if status & 0xF0 in (PROGRAM_CHANGE, CHANNEL_AFTERTOUCH) else 3
    return {0xF1: 2, 0xF2: 3, 0xF3: 2}.get(status, 1)


@dataclass(frozen=True, slots=True)
class TransportEvent:
    """What a clocked processor hears instead of clock bytes (``daemon.transport``).

    ``kind``: "start", "continue", "stop", "position" (Song Position Pointer), "tick" (one MIDI
    clock while playing; ``tick`` is its position) or "lost" (the clock went silent). ``tick``
    counts MIDI clocks (24 per quarter note) from the song's start; for start/continue/position
    it is the position the next clock plays."""

    time_ns: int
    source: str
    kind: str
    tick: int
    running: bool
    tempo_bpm: float | None
    beats_per_bar: int = 4

    @property
    def beat(self) -> int:
        """Quarter notes from the song's start."""
        return self.tick // 24

    @property
    def bar(self) -> int:
        return self.beat // self.beats_per_bar

    @property
    def beat_in_bar(self) -> int:
        return self.beat % self.beats_per_bar

    @property
    def on_beat(self) -> bool:
        return self.tick % 24 == 0


Event = MidiEvent | ButtonEvent | TransportEvent


def split_glued_sysex(msg: tuple[int, ...]) -> list[tuple[int, ...]] | None:
    """The messages glued onto a sysex that was cut short, or None when ``msg`` is no such thing.

    RtMidi's JACK input takes everything after an F0 without its F7 as part of the sysex until an
    F7 comes. MIDI 1.0 says any status byte but a real-time one ends a sysex: so the first status
    byte inside starts the next message. Returns those messages (the cut sysex itself is left out;
    real-time bytes inside are kept; a trailing F7 is the end marker)."""
    if len(msg) < 3 or msg[0] != 0xF0 or all(b < 0x80 or b >= 0xF8 for b in msg[1:-1]):
        return None
    i = 1
    while i < len(msg) and (msg[i] < 0x80 or msg[i] >= 0xF8):
        i += 1
    out: list[tuple[int, ...]] = []
    j = i
    while j < len(msg):
        b = msg[j]
        if b == 0xF7:
            j += 1
        elif b >= 0xF8:
            out.append((b,))
            j += 1
        elif b == 0xF0:  # another sysex: up to its F7 (or to the end, cut again)
            k = j + 1
            while k < len(msg) and msg[k] < 0x80:
                k += 1
            if k < len(msg) and msg[k] == 0xF7:
                out.append(tuple(msg[j:k + 1]))
                k += 1
            j = k
        elif b >= 0x80:
            n = message_length(b)
            part = tuple(msg[j:j + n])
            if len(part) == n and all(x < 0x80 for x in part[1:]):
                out.append(part)
                j += n
            else:
                j += 1
        else:
            j += 1  # a data byte without a status (running status is not used by rtmidi here)
    return out


# ---- counters in words ------------------------------------------------------------------------

COUNTER_WORDS = {
    "unmatched_note_offs": "releases without a press",
    "retriggered_notes": "notes struck again while sounding",
    "zero_length_notes": "notes with no length",
    "dropped_echo": "echoes of Genie's own notes ignored",
    "dropped_echo_loop": "looping echoes ignored",
    "echo_loops_broken": "echo loops broken",
    "dropped_malformed": "broken messages ignored",
    "dropped_note_on": "presses dropped in a flood",
    "dropped_other": "messages dropped in a flood",
    "dropped_repeated_cc": "controller moves skipped in a flood",
    "dropped_release_of_dropped_press": "releases of dropped presses ignored",
    "dropped_stale_press": "presses too late to play",
    "dropped_unknown_port": "messages for a port Genie does not have",
    "recovered_after_cut_sysex": "messages taken back out of a cut sysex",
    "panics": "panics",
}
PREFIX_WORDS = {
    "processor_errors": "errors in {}",
    "worker_errors": "errors in {}'s background work",
    "retracted": "notes {} took back",
    "bad_output": "broken messages from {}",
}


def in_words(counts: dict[str, int], sign: str = "") -> str:
    """Counters as a musician reads them: "4 releases without a press, 1 panic"."""
    parts = []
    for key, n in sorted(counts.items()):
        head, _, who = key.partition(".")
        if key in COUNTER_WORDS:
            words = COUNTER_WORDS[key]
        elif who and head in PREFIX_WORDS:
            words = PREFIX_WORDS[head].format(who)
        else:
            words = key.replace("_", " ")
        if n == 1 and words.startswith(("releases", "notes", "echoes", "messages", "presses", "panics",
                                        "errors", "controller moves", "looping", "broken")):
            words = words.replace("releases", "release", 1).replace("notes", "note", 1) \
                .replace("echoes", "echo", 1).replace("messages", "message", 1) \
                .replace("presses", "press", 1).replace("panics", "panic", 1) \
                .replace("errors", "error", 1).replace("moves", "move", 1).replace("loops", "loop", 1)
        parts.append(f"{sign}{n} {words}")
    return ", ".join(parts)
