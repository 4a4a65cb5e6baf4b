"""The DAW's transport from MIDI clock: position, tempo, Start/Stop/Continue/Song Position, loss.

MIDI clock (0xF8) comes 24 times per quarter note. A clocked processor does not count bytes: the
engine feeds them here and hands it :class:`~daemon.events.TransportEvent` s instead, and the
processor asks :meth:`Transport.time_of` when a future tick will fall, to schedule notes ahead.

Position is counted in clock ticks from the song's start, as the MIDI spec has it: after Start the
first clock is tick 0 (the downbeat); Continue resumes where Stop left off; Song Position Pointer
(in 16th notes, 6 ticks each) moves the position while stopped. The bar position counts ticks;
the tempo estimate (the median of the last ``window`` clock intervals) is used only to place times
between and beyond the ticks. Clocks arrive quantized to the audio server's period (a clock every
20.8 ms at 120 BPM lands on a 5.3 ms grid at 256 frames), so times come from a least-squares line
through the last ``window`` clocks (a bar by default): its slope is the tempo and it places ticks
without the jitter of any one arrival. No clock for ``lost_after_ns`` while playing: the clock is lost
(a ``lost`` event), and playing stops until the next Start or Continue.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque

from daemon.events import CLOCK, CONTINUE, SONG_POSITION, START, STOP, Out, TransportEvent

TICKS_PER_BEAT = 24  # MIDI clock: 24 per quarter note
TICKS_PER_SIXTEENTH = 6


class Transport:
    """One clocked processor's view of the DAW's transport (engine thread only)."""

    def __init__(self, source: str = "", beats_per_bar: int = 4, lost_after_ns: int = 500_000_000,
                 offset_ns: int = 0, window: int = 96) -> None:
        self.source = source
        self.beats_per_bar = beats_per_bar
        self.lost_after_ns = lost_after_ns
        self.offset_ns = offset_ns  # added to every predicted time (negative: earlier)
        self.running = False
        self.next_tick = 0  # the position the next clock plays
        self.last_tick: int | None = None  # position of the last clock while running
        self.last_clock_ns: int | None = None  # any clock, running or not
        self._clocks = 0  # clocks received, running or not
        self._last_tick_clock = 0  # the clock count at ``last_tick``
        self._samples: deque[tuple[int, int]] = deque(maxlen=window)  # (clock count, ns)
        self._fit: tuple[float, float] | None = None  # (ns per clock, ns at clock count 0)
        self.lost = True  # no clock yet

    # ---- what the processor reads ----------------------------------------------------------------

    def _line(self) -> tuple[float, float] | None:
        """Least squares through the recent clocks: (ns per clock, ns at clock count 0)."""
        if self._fit is None and len(self._samples) >= 2:
            n = len(self._samples)
            x0, y0 = self._samples[0]
            mx = sum(x - x0 for x, _ in self._samples) / n
            my = sum(y - y0 for _, y in self._samples) / n
            sxx = sum((x - x0 - mx) ** 2 for x, _ in self._samples)
            sxy = sum((x - x0 - mx) * (y - y0 - my) for x, y in self._samples)
            slope = sxy / sxx
            self._fit = (slope, y0 + my - slope * (x0 + mx))
        return self._fit

    @property
    def tick_ns(self) -> float | None:
        """The estimated time between two clocks, in ns (None before two clocks)."""
        line = self._line()
        return line[0] if line else None

    @property
    def tempo_bpm(self) -> float | None:
        t = self.tick_ns
        return 60e9 / (t * TICKS_PER_BEAT) if t else None

    @property
    def ticks_per_bar(self) -> int:
        return TICKS_PER_BEAT * self.beats_per_bar

    def describe(self) -> dict:
        """For ``genie monitor``: running, lost, tempo, bar and beat (1-based)."""
        bpm = self.tempo_bpm
        per_bar = self.ticks_per_bar
        per_beat = per_bar // self.beats_per_bar
        return {"running": self.running, "lost": self.lost, "bpm": round(bpm, 1) if bpm else None,
                "bar": self.next_tick // per_bar + 1, "beat": (self.next_tick % per_bar) // per_beat + 1}

    def time_of(self, tick: float) -> int | None:
        """When clock ``tick`` falls (or fell), from the last clock and the tempo estimate, plus the
        offset; None while the position or the tempo is unknown."""
        line = self._line()
        if self.last_tick is None or line is None:
            return None
        clock = self._last_tick_clock + (tick - self.last_tick)
        return round(line[1] + clock * line[0]) + self.offset_ns

    def tick_at(self, time_ns: int) -> float | None:
        """The position (fractional clocks) at ``time_ns``, the inverse of ``time_of``."""
        line = self._line()
        if self.last_tick is None or line is None:
            return None
        clock = (time_ns - self.offset_ns - line[1]) / line[0]
        return self.last_tick + (clock - self._last_tick_clock)

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
            if self.last_clock_ns is not None and not 0 <= time_ns - self.last_clock_ns < self.lost_after_ns:
                self._samples.clear()  # a new clock, after a silence
            self._clocks += 1
            self._samples.append((self._clocks, time_ns))
            self._fit = None
            self.last_clock_ns = time_ns
            out = []
            if self.lost:
                self.lost = False
            if self.running:
                self.last_tick = self.next_tick
                self._last_tick_clock = self._clocks
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
        self._samples.clear()
        self._fit = None
        return [self._event("lost", now_ns, self.next_tick)]


class TickSchedule:
    """Messages placed on ticks (fractional ticks: micro-timing), turned into timed outputs a
    few ticks before they are due, with the transport's newest estimate.

    A clocked processor keeps what it decided (bars ahead, from a worker) here, and on every
    ``tick`` event hands what ``due`` returns to the engine. Placing late keeps the tempo
    estimate's error to a few ticks' worth however far ahead the music was decided."""

    def __init__(self, transport: Transport, horizon_ticks: float = 4.0, keep_channel: bool = False) -> None:
        self.transport = transport
        self.horizon_ticks = horizon_ticks
        self.keep_channel = keep_channel  # the messages' own channels (e.g. drums on 10)
        self._heap: list[tuple[float, int, tuple[int, ...], str]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, tick: float, message: tuple[int, ...], voice: str = "") -> None:
        """``message`` at ``tick``; note-offs sort before note-ons on the same tick."""
        heapq.heappush(self._heap, (tick, next(self._seq), tuple(message), voice))

    def due(self, now_tick: int, now_ns: int | None = None) -> list[Out]:
        """Outputs for everything before ``now_tick + horizon_ticks``. Without a tempo yet (the
        first clock after Start), what falls on or before ``now_tick`` plays at ``now_ns`` and the
        rest waits."""
        out = []
        limit = now_tick + self.horizon_ticks
        while self._heap and self._heap[0][0] < limit:
            tick, _, msg, voice = self._heap[0]
            due = self.transport.time_of(tick)
            if due is None:
                if now_ns is None or tick > now_tick:
                    break
                due = now_ns
            heapq.heappop(self._heap)
            out.append(Out(due, msg, voice=voice, keep_channel=self.keep_channel))
        return out

    def clear(self, from_tick: float | None = None, to_tick: float | None = None) -> None:
        """Forget everything, or what falls in [``from_tick``, ``to_tick``)."""
        if from_tick is None and to_tick is None:
            self._heap.clear()
            return
        lo = -float("inf") if from_tick is None else from_tick
        hi = float("inf") if to_tick is None else to_tick
        self._heap = [item for item in self._heap if not lo <= item[0] < hi]
        heapq.heapify(self._heap)
