"""The DAW's transport from MIDI clock: position, tempo, Start/Stop/Continue/Song Position, loss.

MIDI clock (0xF8) comes 24 times per quarter note. A clocked processor does not count bytes: the
engine feeds them here and hands it :class:`~daemon.events.TransportEvent` s instead, and the
processor asks :meth:`Transport.time_of` when a future tick will fall, to schedule notes ahead.

Position is counted in clock ticks from the song's start, as the MIDI spec has it: after Start the
first clock is tick 0 (the downbeat); Continue resumes where Stop left off; Song Position Pointer
(in 16th notes, 6 ticks each) moves the position while stopped. The bar position counts ticks;
the tempo estimate (the median of the last ``window`` clock intervals) is used only to place times
between and beyond the ticks. No clock for ``lost_after_ns`` while playing: the clock is lost
(a ``lost`` event), and playing stops until the next Start or Continue.
"""

from __future__ import annotations

import statistics
from collections import deque

from daemon.events import CLOCK, CONTINUE, SONG_POSITION, START, STOP, TransportEvent

TICKS_PER_BEAT = 24  # MIDI clock: 24 per quarter note
TICKS_PER_SIXTEENTH = 6


class Transport:
    """One clocked processor's view of the DAW's transport (engine thread only)."""

    def __init__(self, source: str = "", beats_per_bar: int = 4, lost_after_ns: int = 500_000_000,
                 offset_ns: int = 0, window: int = 24) -> None:
        self.source = source
        self.beats_per_bar = beats_per_bar
        self.lost_after_ns = lost_after_ns
        self.offset_ns = offset_ns  # added to every predicted time (negative: earlier)
        self.running = False
        self.next_tick = 0  # the position the next clock plays
        self.last_tick: int | None = None  # position of the last clock while running
        self.last_clock_ns: int | None = None  # any clock, running or not
        self._intervals: deque[int] = deque(maxlen=window)
        self.lost = True  # no clock yet

    # ---- what the processor reads ----------------------------------------------------------------

    @property
    def tick_ns(self) -> float | None:
        """The estimated time between two clocks, in ns (None before two clocks)."""
        return float(statistics.median(self._intervals)) if self._intervals else None

    @property
    def tempo_bpm(self) -> float | None:
        t = self.tick_ns
        return 60e9 / (t * TICKS_PER_BEAT) if t else None

    @property
    def ticks_per_bar(self) -> int:
        return TICKS_PER_BEAT * self.beats_per_bar

    def time_of(self, tick: int) -> int | None:
        """When clock ``tick`` falls (or fell), from the last clock and the tempo estimate, plus the
        offset; None while the position or the tempo is unknown."""
        if self.last_tick is None or self.last_clock_ns is None or self.tick_ns is None:
            return None
        return round(self.last_clock_ns + (tick - self.last_tick) * self.tick_ns) + self.offset_ns

    def next_bar_tick(self) -> int:
        """The first tick of the next bar after the current position."""
        pos = self.next_tick
        return -(-pos // self.ticks_per_bar) * self.ticks_per_bar

    # ---- what the engine feeds -------------------------------------------------------------------

    def _event(self, kind: str, time_ns: int, tick: int) -> TransportEvent:
        return TransportEvent(time_ns, self.source, kind, tick, self.running, self.tempo_bpm,
                              self.beats_per_bar)

    def feed(self, msg: tuple[int, ...], time_ns: int) -> list[TransportEvent]:
        """One clock or transport message; the events it makes."""
        status = msg[0]
        if status == CLOCK:
            if self.last_clock_ns is not None:
                gap = time_ns - self.last_clock_ns
                if 0 < gap < self.lost_after_ns:
                    self._intervals.append(gap)
            self.last_clock_ns = time_ns
            out = []
            if self.lost:
                self.lost = False
            if self.running:
                self.last_tick = self.next_tick
                self.next_tick += 1
                out.append(self._event("tick", time_ns, self.last_tick))
            return out
        if status == START:
            self.running, self.next_tick, self.last_tick = True, 0, None
            return [self._event("start", time_ns, 0)]
        if status == CONTINUE:
            self.running, self.last_tick = True, None
            return [self._event("continue", time_ns, self.next_tick)]
        if status == STOP:
            was = self.running
            self.running = False
            return [self._event("stop", time_ns, self.next_tick)] if was else []
        if status == SONG_POSITION and len(msg) == 3:
            self.next_tick = ((msg[2] << 7) | msg[1]) * TICKS_PER_SIXTEENTH
            self.last_tick = None
            return [self._event("position", time_ns, self.next_tick)]
        return []

    def lost_deadline_ns(self) -> int | None:
        """When the clock counts as lost if no clock comes first (None: nothing to lose)."""
        if self.lost or self.last_clock_ns is None:
            return None
        return self.last_clock_ns + self.lost_after_ns

    def check(self, now_ns: int) -> list[TransportEvent]:
        """A ``lost`` event once the clock has been silent for ``lost_after_ns``."""
        deadline = self.lost_deadline_ns()
        if deadline is None or now_ns < deadline:
            return []
        self.lost = True
        self.running = False
        self._intervals.clear()
        return [self._event("lost", now_ns, self.next_tick)]
