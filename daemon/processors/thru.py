"""``thru``: passes notes through and plays each button as a fixed note. The latency baseline."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from daemon.events import NOTE_OFF, NOTE_ON, ButtonEvent, Event, MidiEvent, Out
from daemon.processor import BaseProcessor, ProcessorError


class ThruProcessor(BaseProcessor):
    """Input notes go out unchanged (on the processor's channel); button i plays ``notes[i]``."""

    name: ClassVar[str] = "thru"
    defaults: ClassVar[dict] = {
        "notes": [60, 62, 64, 65, 67, 69, 71, 72],  # what each button plays
        "velocity": 100,  # for buttons without a velocity (keyboard, gamepad)
    }

    def start(self, ctx) -> None:
        super().start(ctx)
        notes, velocity = self.options["notes"], self.options["velocity"]
        if len(notes) != 8 or any(not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= 127
                                  for n in notes):
            raise ProcessorError("option 'notes' of processor 'thru' must list 8 notes 0-127")
        if not 1 <= velocity <= 127:
            raise ProcessorError("option 'velocity' of processor 'thru' must be 1-127")

    def on_event(self, ev: Event) -> Iterable[Out]:
        if isinstance(ev, ButtonEvent):
            note = self.options["notes"][ev.button]
            if ev.pressed:
                return [Out(ev.time_ns, (NOTE_ON, note, ev.velocity or self.options["velocity"]),
                            voice=ev.source)]
            return [Out(ev.time_ns, (NOTE_OFF, note, 0), voice=ev.source)]
        if isinstance(ev, MidiEvent) and (ev.is_note_on or ev.is_note_off):
            # The source is the voice: two inputs playing one pitch each own their note.
            return [Out(ev.time_ns, ev.message, voice=ev.source)]
        return ()
