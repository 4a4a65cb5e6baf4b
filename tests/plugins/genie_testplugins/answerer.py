"""``answerer``: a streaming test processor that does what a transformer will do, without a model.

It listens to every note (``buttons = "none"``, or a chain). After ``silence_ms`` with no note held,
it answers: a job on its worker makes the phrase it heard, an octave up, one note per piece, taking
``compute_ms`` per note (a model's decoding time), and each note is scheduled as its piece arrives,
``spacing_ms`` apart from the answer's start. When the musician plays again, the job is
cancelled and everything queued is retracted; sounding notes end at once.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import ClassVar

from daemon.events import NOTE_OFF, NOTE_ON, Event, MidiEvent, Out
from daemon.processor import BaseProcessor

MS = 1_000_000


class AnswererProcessor(BaseProcessor):
    name: ClassVar[str] = "answerer"
    defaults: ClassVar[dict] = {"silence_ms": 300.0, "compute_ms": 20.0, "spacing_ms": 150.0,
                                "length_ms": 100.0, "lead_ms": 30.0, "max_notes": 16}

    def start(self, ctx) -> None:
        super().start(ctx)
        self.heard: list[int] = []
        self.held: set[int] = set()
        self.last_ns: int | None = None
        self.answer = None  # the running job's handle
        self.answer_start = 0
        self.answers = 0
        self.cancelled = 0
        self.releases: list[str] = []

    def on_event(self, ev: Event) -> Iterable[Out]:
        if not isinstance(ev, MidiEvent) or not (ev.is_note_on or ev.is_note_off):
            return ()
        if ev.is_note_on:
            if self.answer is not None:  # play again: the answer stops now
                self.answer.cancel()
                self.answer = None
                self.cancelled += 1
                self.ctx.retract(end_sounding=True)
                self.heard = []
            self.heard.append(ev.message[1])
            self.held.add(ev.message[1])
        else:
            self.held.discard(ev.message[1])
        self.last_ns = ev.time_ns
        return ()

    def on_idle(self, now_ns: int) -> Iterable[Out]:
        quiet = self.last_ns is not None and now_ns - self.last_ns >= self.options["silence_ms"] * MS
        if quiet and not self.held and self.heard and self.answer is None:
            phrase = self.heard[-self.options["max_notes"]:]
            self.heard = []
            self.answers += 1
            self.answer_start = now_ns + round(self.options["lead_ms"] * MS)
            self.answer = self.ctx.submit(self._job(phrase), self._note)
        return ()

    def _job(self, phrase: list[int]):
        compute_s = self.options["compute_ms"] / 1e3

        def job(token) -> Iterator[tuple[int, int]]:
            for i, pitch in enumerate(phrase):
                if token.cancelled:
                    return
                if compute_s:
                    time.sleep(compute_s)  # the model's decoding time, off the engine thread
                yield i, min(pitch + 12, 127)
        return job

    def _note(self, piece: tuple[int, int]) -> list[Out]:
        i, pitch = piece
        on = self.answer_start + round(i * self.options["spacing_ms"] * MS)
        off = on + round(self.options["length_ms"] * MS)
        return [Out(on, (NOTE_ON, pitch, 90), voice="answer"), Out(off, (NOTE_OFF, pitch, 0), voice="answer")]

    def on_release(self, reason: str) -> None:
        self.releases.append(reason)
        self.answer = None
