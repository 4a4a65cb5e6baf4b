"""The bounded input queue and its overload policy.

When events arrive faster than the engine handles them, the queue stays bounded: note-ons and
repeated control changes are dropped first; note-offs, button releases and transport messages
and clock (MIDI clock, Start, Stop, Continue, Song Position) are never dropped. Every drop is counted.
"""

from __future__ import annotations

from collections import deque

from daemon.events import CLOCK, CONTROL_CHANGE, TRANSPORT, ButtonEvent, Counters, Event, MidiEvent


def protected(ev: Event) -> bool:
    """Events that must never be dropped: releases, clock and transport."""
    if isinstance(ev, ButtonEvent):
        return not ev.pressed
    return ev.is_note_off or (bool(ev.message) and (ev.message[0] in TRANSPORT or ev.message[0] == CLOCK))


def _cc_key(ev: Event) -> tuple[str, int, int] | None:
    if isinstance(ev, MidiEvent) and len(ev.message) == 3 and ev.message[0] & 0xF0 == CONTROL_CHANGE:
        return ev.source, ev.message[0], ev.message[1]
    return None


class InputQueue:
    """FIFO of events, bounded by ``limit`` for everything that may be dropped."""

    def __init__(self, limit: int, counters: Counters) -> None:
        self.limit = limit
        self.counters = counters
        self._items: deque[Event] = deque()
        self.high_water = 0

    def __len__(self) -> int:
        return len(self._items)

    def push(self, ev: Event) -> bool:
        """Queue ``ev``; False when it (or nothing) was dropped to keep the bound."""
        if len(self._items) < self.limit:
            self._append(ev)
            return True
        key = _cc_key(ev)
        if key is not None:
            # A newer value of the same controller replaces the queued one: only the latest matters.
            for i in range(len(self._items) - 1, -1, -1):
                if _cc_key(self._items[i]) == key:
                    del self._items[i]
                    self.counters.add("dropped_repeated_cc")
                    self._append(ev)
                    return True
        if not protected(ev):
            self.counters.add("dropped_note_on" if _is_press(ev) else "dropped_other")
            return False
        # A protected event evicts the newest droppable one; only releases can exceed the bound,
        # and each release answers a press that was let in, so the excess is bounded too.
        for i in range(len(self._items) - 1, -1, -1):
            if not protected(self._items[i]):
                victim = self._items[i]
                del self._items[i]
                self.counters.add("dropped_note_on" if _is_press(victim) else "dropped_other")
                break
        self._append(ev)
        return True

    def _append(self, ev: Event) -> None:
        self._items.append(ev)
        self.high_water = max(self.high_water, len(self._items))

    def pop_batch(self, n: int) -> list[Event]:
        """Up to ``n`` events, oldest first."""
        items = self._items
        return [items.popleft() for _ in range(min(n, len(items)))]


def _is_press(ev: Event) -> bool:
    return ev.pressed if isinstance(ev, ButtonEvent) else ev.is_note_on
