"""The bounded input queue and its overload policy, in constant time per message.

When events arrive faster than the engine handles them, the queue stays bounded: note-ons (and
button presses) and repeated control changes are dropped first; releases and clock (MIDI clock,
Start, Stop, Continue, Song Position) are never dropped, except the release of a note whose
note-on was dropped (it never sounded). A newer value of a controller replaces the queued one.
Every drop is counted under its reason.

A press that waited longer than ``max_age_ns`` is dropped when it is taken (with its release):
after a flood, the backlog of presses nobody wants to hear late is gone at once and the next
press plays.

Constant time: dropped entries are marked dead where they stand (``pop_batch`` skips them), the
newest droppable entry is found on a stack, the queued value of a controller in a dict.
"""

from __future__ import annotations

from collections import deque

from daemon.events import CLOCK, CONTROL_CHANGE, TRANSPORT, ButtonEvent, Counters, Event, MidiEvent


def protected(ev: Event) -> bool:
    """Events that are never dropped to keep the bound: releases, clock and transport."""
    if isinstance(ev, ButtonEvent):
        return not ev.pressed
    if not isinstance(ev, MidiEvent):
        return True
    return ev.is_note_off or (bool(ev.message) and (ev.message[0] in TRANSPORT or ev.message[0] == CLOCK))


def _cc_key(ev: Event) -> tuple[str, int, int] | None:
    if isinstance(ev, MidiEvent) and len(ev.message) == 3 and ev.message[0] & 0xF0 == CONTROL_CHANGE:
        return ev.source, ev.message[0], ev.message[1]
    return None


def _note_key(ev: Event) -> tuple | None:
    """What a press and its release share: (source, channel, pitch) or (source, "button", n)."""
    if isinstance(ev, ButtonEvent):
        return ev.source, "button", ev.button
    if isinstance(ev, MidiEvent) and (ev.is_note_on or ev.is_note_off):
        return ev.source, ev.message[0] & 0x0F, ev.message[1]
    return None


def _is_press(ev: Event) -> bool:
    return ev.pressed if isinstance(ev, ButtonEvent) else isinstance(ev, MidiEvent) and ev.is_note_on


class _Entry:
    __slots__ = ("ev", "alive")

    def __init__(self, ev: Event) -> None:
        self.ev = ev
        self.alive = True


class InputQueue:
    """FIFO of events, bounded by ``limit`` for everything that may be dropped."""

    def __init__(self, limit: int, counters: Counters) -> None:
        self.limit = limit
        self.counters = counters
        self._items: deque[_Entry] = deque()
        self._alive = 0
        self._droppable: list[_Entry] = []  # admitted droppable entries, newest last
        self._cc: dict[tuple[str, int, int], _Entry] = {}  # the queued value of each controller
        self._sounding: dict[tuple, int] = {}  # presses let in whose release has not come
        self._dropped: dict[tuple, int] = {}  # presses dropped whose release has not come
        self._stale: dict[tuple, int] = {}  # presses dropped when taken, their releases queued
        self.high_water = 0

    def __len__(self) -> int:
        return self._alive

    def push(self, ev: Event) -> bool:
        """Queue ``ev``; False when it was dropped."""
        key = _note_key(ev)
        if key is not None and not _is_press(ev):
            if self._sounding.get(key):
                self._sounding[key] -= 1
            elif self._dropped.get(key):  # its press was dropped: it never sounded
                self._dropped[key] -= 1
                self.counters.add("dropped_release_of_dropped_press")
                return False
        cc = _cc_key(ev)
        if cc is not None:
            old = self._cc.get(cc)
            if old is not None and old.alive and self._alive >= self.limit:
                self._kill(old)  # only the latest value matters
                self.counters.add("dropped_repeated_cc")
        if self._alive >= self.limit:
            if not protected(ev):
                self._drop_count(ev)
                return False
            if not self._evict_newest_droppable():
                pass  # everything queued is protected: a release may exceed the bound
        self._admit(ev, key, cc)
        return True

    def _admit(self, ev: Event, key: tuple | None, cc: tuple | None) -> None:
        entry = _Entry(ev)
        self._items.append(entry)
        self._alive += 1
        self.high_water = max(self.high_water, self._alive)
        if key is not None and _is_press(ev):
            self._sounding[key] = self._sounding.get(key, 0) + 1
        if cc is not None:
            self._cc[cc] = entry
        if not protected(ev):
            self._droppable.append(entry)
            if len(self._droppable) > 4 * self.limit + 64:  # forget entries long delivered
                self._droppable = [e for e in self._droppable if e.alive]

    def _kill(self, entry: _Entry) -> None:
        entry.alive = False
        self._alive -= 1

    def _drop_count(self, ev: Event) -> None:
        if _is_press(ev):
            key = _note_key(ev)
            self._dropped[key] = self._dropped.get(key, 0) + 1
            self.counters.add("dropped_note_on")
        else:
            self.counters.add("dropped_other")

    def _evict_newest_droppable(self) -> bool:
        while self._droppable:
            victim = self._droppable.pop()
            if victim.alive:
                self._kill(victim)
                key = _note_key(victim.ev)
                if key is not None and _is_press(victim.ev):
                    self._sounding[key] -= 1
                self._drop_count(victim.ev)
                return True
        return False

    def pop_batch(self, n: int, now_ns: int | None = None, max_age_ns: int | None = None) -> list[Event]:
        """Up to ``n`` events, oldest first; presses older than ``max_age_ns`` at ``now_ns`` (and
        their releases) are dropped instead."""
        out: list[Event] = []
        items = self._items
        while items and len(out) < n:
            entry = items.popleft()
            if not entry.alive:
                continue
            entry.alive = False
            self._alive -= 1
            ev = entry.ev
            key = _note_key(ev)
            if key is not None:
                if _is_press(ev):
                    if max_age_ns is not None and now_ns is not None and now_ns - ev.time_ns > max_age_ns:
                        self._stale[key] = self._stale.get(key, 0) + 1
                        self.counters.add("dropped_stale_press")
                        continue
                elif self._stale.get(key):
                    self._stale[key] -= 1
                    continue  # the release of a press dropped as stale
            out.append(ev)
        return out
