"""``markov``: each button press plays the next note of a bigram Markov melody.

The button picks the direction and size of the step (see ``markov.model.BUTTON_INTERVALS``: 0-3 go
down, furthest first, 4-7 go up); the model picks the pitch within that window, given the note
before. A note played on a keyboard (not a mapped button) becomes the note before, so the melody
carries on from what the musician played. No torch: the model is a 128x128 table of counts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

from daemon.events import NOTE_OFF, NOTE_ON, ButtonEvent, Event, MidiEvent, Out
from daemon.processor import BaseProcessor, Context, ProcessorError, package_file
from markov.model import N_BUTTONS, BigramModel, load

log = logging.getLogger("genie.markov")


class MarkovProcessor(BaseProcessor):
    """Button i plays a pitch sampled from P(next | previous) within button i's interval window."""

    name: ClassVar[str] = "markov"
    defaults: ClassVar[dict] = {
        "weights": "",  # a model file written by `genie train markov`; "" = the shipped one
        "temperature": 1.0,  # <1 plays the likeliest notes, >1 wanders; 0 always the likeliest
        "velocity": 100,  # for buttons without a velocity (keyboard, gamepad)
        "start_pitch": -1,  # the note before the first press; -1: the middle of low..high
        "low": 55,  # lowest pitch played (G3): the training melodies span 55-88, and outside
        "high": 88,  # that range the model has seen nothing, so it would only wander (E6)
    }
    model_files: ClassVar[tuple[str, ...]] = ("weights/markov.json",)

    def start(self, ctx: Context) -> None:
        super().start(ctx)
        opts = self.options
        if not 0 <= opts["low"] <= opts["high"] <= 127:
            raise ProcessorError(f"options low/high of processor {self.name!r} must satisfy "
                                 f"0 <= low <= high <= 127, got {opts['low']}..{opts['high']}")
        for key, lo in (("start_pitch", -1), ("velocity", 1)):
            if not lo <= opts[key] <= 127:
                raise ProcessorError(f"option {key!r} of processor {self.name!r} must be "
                                     f"{lo}..127, got {opts[key]}")
        if not opts["temperature"] >= 0:
            raise ProcessorError(f"option 'temperature' of processor {self.name!r} must be >= 0, "
                                 f"got {opts['temperature']}")
        path = (Path(opts["weights"]).expanduser() if opts["weights"]
                else package_file(type(self), self.model_files[0]))
        self.model: BigramModel = load(path)  # ValueError naming the file when it is bad
        self._rng = ctx.rng()
        self._prev = opts["start_pitch"] if opts["start_pitch"] >= 0 else (opts["low"] + opts["high"]) // 2
        self._held: dict[tuple[str, int], int] = {}  # (source, button) -> the pitch it sounds
        log.info("markov model %s: %d transitions, alpha %g", path, self.model.transitions,
                 self.model.config.alpha)

    def on_event(self, ev: Event) -> Iterable[Out]:
        if isinstance(ev, ButtonEvent):
            return self._on_button(ev)
        if isinstance(ev, MidiEvent) and ev.is_note_on:
            self._prev = ev.message[1]  # the melody continues from what the musician played
        return ()

    def _on_button(self, ev: ButtonEvent) -> list[Out]:
        if not 0 <= ev.button < N_BUTTONS:
            return []
        key = (ev.source, ev.button)
        voice = f"{ev.source}:{ev.button}"
        if not ev.pressed:
            pitch = self._held.pop(key, None)
            return [] if pitch is None else [Out(ev.time_ns, (NOTE_OFF, pitch, 0), voice=voice)]
        if key in self._held:  # a repeated press of a held button (key repeat, bounce): ignore
            return []
        opts = self.options
        pitch = self.model.next_pitch(self._prev, ev.button, self._rng, opts["temperature"],
                                      opts["low"], opts["high"])
        self._prev = pitch
        self._held[key] = pitch
        velocity = ev.velocity or opts["velocity"]
        return [Out(ev.time_ns, (NOTE_ON, pitch, velocity), voice=voice)]

    def stop(self) -> None:
        self._held.clear()  # the scheduler's ledger sends the note-offs
