"""Third-party Genie processors for the tests, found only through their entry points (not shipped).

``raiser`` plays each input note (and each button as ``36 + button``) and raises on one trigger
pitch, so the tests can check that a processor bug costs its notes and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from daemon.events import NOTE_OFF, NOTE_ON, ButtonEvent, Event, MidiEvent, Out
from daemon.processor import BaseProcessor


class RaiserProcessor(BaseProcessor):
    """Plays what it is given; raises RuntimeError on a note-on of ``trigger``."""

    name: ClassVar[str] = "raiser"
    defaults: ClassVar[dict] = {"trigger": 99}

    def on_event(self, ev: Event) -> Iterable[Out]:
        if isinstance(ev, ButtonEvent):
            note = 36 + ev.button
            msg = (NOTE_ON, note, ev.velocity or 100) if ev.pressed else (NOTE_OFF, note, 0)
            return [Out(ev.time_ns, msg)]
        if isinstance(ev, MidiEvent) and ev.is_note_on:
            if ev.message[1] == self.options["trigger"]:
                raise RuntimeError(f"test plug-in raises on pitch {ev.message[1]}")
            return [Out(ev.time_ns, (NOTE_ON, ev.message[1], ev.message[2]))]
        if isinstance(ev, MidiEvent) and ev.is_note_off:
            return [Out(ev.time_ns, (NOTE_OFF, ev.message[1], 0))]
        return ()
