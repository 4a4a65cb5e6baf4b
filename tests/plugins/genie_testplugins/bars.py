"""``bars``: a clocked test processor that does what a drum model will do, without a model.

It follows the DAW's transport and keeps the next bar planned ahead: once the tempo is known it
asks its worker for the rest of this bar and for the bar after (a job yielding one (tick, pitch)
piece per beat, as a drum model would yield its bars); each piece lands in a ``TickSchedule`` on
the engine thread, which places the notes a few clocks before they are due, with the transport's
newest tempo estimate. Beat 1 plays ``downbeat`` (36), the others ``beat`` (42), each an
eighth note long. Start plays from the downbeat; Stop and a lost clock retract what is queued and
end what sounds; Song Position Pointer and Continue replan from the new position.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import ClassVar

from daemon.events import NOTE_OFF, NOTE_ON, Event, Out, TransportEvent
from daemon.processor import BaseProcessor
from daemon.transport import TickSchedule

TICKS_PER_BEAT = 24


class BarsProcessor(BaseProcessor):
    name: ClassVar[str] = "bars"
    defaults: ClassVar[dict] = {"downbeat": 36, "beat": 42, "velocity": 100, "ahead_bars": 1}

    def start(self, ctx) -> None:
        super().start(ctx)
        self.planned: set[int] = set()  # bars whose notes are queued or being made
        self._schedule: TickSchedule | None = None
        self.jobs = []
        self.releases: list[str] = []

    @property
    def schedule(self) -> TickSchedule:
        """Made at the first event: the transport exists once the engine runs."""
        if self._schedule is None:
            self._schedule = TickSchedule(self.ctx.transport, horizon_ticks=2)
        return self._schedule

    def on_event(self, ev: Event) -> Iterable[Out]:
        if not isinstance(ev, TransportEvent):
            return ()
        if ev.kind in ("stop", "lost", "position", "start", "continue"):
            self._forget()
        if ev.kind != "tick":
            return ()
        t = self.ctx.transport
        bar = ev.tick // t.ticks_per_bar
        outs = []
        if bar not in self.planned and ev.on_beat:  # a start, before any plan: this beat now
            pitch = self.options["downbeat"] if ev.beat_in_bar == 0 else self.options["beat"]
            outs = [Out(ev.time_ns, (NOTE_ON, pitch, self.options["velocity"]), voice=f"bar{bar}")]
            off = t.time_of(ev.tick + TICKS_PER_BEAT // 2)
            if off is not None:
                outs.append(Out(off, (NOTE_OFF, pitch, 0), voice=f"bar{bar}"))
            else:  # no tempo yet: an eighth at 120 BPM
                outs.append(Out(ev.time_ns + 250_000_000, (NOTE_OFF, pitch, 0), voice=f"bar{bar}"))
        if t.tick_ns is None:  # times need a tempo: plan from the next clock on
            return outs
        for b in range(bar, bar + self.options["ahead_bars"] + 1):
            if b not in self.planned:
                self.planned.add(b)
                self.jobs.append(self.ctx.submit(self._job(b, after=ev.tick),
                                                 lambda piece, b=b: self._keep(b, piece)))
        return outs + self.schedule.due(ev.tick)

    def _bar(self, bar: int) -> list[tuple[int, int]]:
        per = self.ctx.transport.beats_per_bar
        first = bar * per * TICKS_PER_BEAT
        return [(first + i * TICKS_PER_BEAT, self.options["downbeat"] if i == 0 else self.options["beat"])
                for i in range(per)]

    def _job(self, bar: int, after: int):
        hits = [(tick, p) for tick, p in self._bar(bar) if tick > after]

        def job(token) -> Iterator[tuple[int, int]]:
            yield from hits  # a model would decode here, one piece at a time
        return job

    def _keep(self, bar: int, piece: tuple[int, int]) -> list[Out]:
        """A decided beat, kept by tick until it is nearly due."""
        if bar in self.planned:
            tick, pitch = piece
            self.schedule.add(tick, (NOTE_ON, pitch, self.options["velocity"]), f"bar{bar}")
            self.schedule.add(tick + TICKS_PER_BEAT // 2, (NOTE_OFF, pitch, 0), f"bar{bar}")
        return []

    def _forget(self) -> None:
        for job in self.jobs:
            job.cancel()
        self.jobs = []
        self.planned.clear()
        self.schedule.clear()
        self.ctx.retract(end_sounding=True)

    def on_release(self, reason: str) -> None:
        self.releases.append(reason)
        self.jobs = []
        self.planned.clear()
        self.schedule.clear()
