"""Time-stamped output queue, the sounding-note ledger, and panic.

The scheduler, not the processors, guarantees that every note-on sent gets exactly one note-off:
the ledger records who sounds each (port, channel, pitch), and every way out (release, processor
switch or exception, panic, stop) turns what is still sounding into explicit note-offs.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from daemon.events import (
    CC_ALL_NOTES_OFF,
    CC_SUSTAIN,
    CONTROL_CHANGE,
    NOTE_OFF,
    Counters,
    is_note_off,
    is_note_on,
)

Owner = tuple[str, str]
"""(processor name, voice): who sounds a note."""
Key = tuple[str, int, int]
"""(port, channel, pitch): one key on one synth."""
Sent = tuple[str, tuple[int, ...]]
"""(port, message): what the engine hands to a port."""
Tap = Callable[[str, str, tuple[int, ...]], None]
"""tap(processor, port, message): sees every message sent, with the processor it is sent for."""


def _note_off(channel: int, pitch: int) -> tuple[int, int, int]:
    return (NOTE_OFF | channel, pitch, 0)


@dataclass
class NoteLedger:
    """Which owners hold each sounding key.

    A note-on for a key that is already sounding re-triggers it (note-off, then note-on), so the
    output stream stays balanced for a DAW, and the key is released only when its last holder
    lets go. A note-off from an owner that does not hold the key is dropped and counted.
    """

    counters: Counters = field(default_factory=Counters)
    held: dict[Key, list[Owner]] = field(default_factory=dict)

    def note_on(self, port: str, msg: tuple[int, ...], owner: Owner) -> list[Sent]:
        key = (port, msg[0] & 0x0F, msg[1])
        holders = self.held.get(key)
        if holders is None:
            self.held[key] = [owner]
            return [(port, msg)]
        if owner not in holders:
            holders.append(owner)
        self.counters.add("retriggered_notes")
        return [(port, _note_off(key[1], key[2])), (port, msg)]

    def note_off(self, port: str, msg: tuple[int, ...], owner: Owner) -> list[Sent]:
        key = (port, msg[0] & 0x0F, msg[1])
        holders = self.held.get(key)
        if not holders or owner not in holders:
            self.counters.add("unmatched_note_offs")
            return []
        holders.remove(owner)
        if holders:
            return []
        del self.held[key]
        return [(port, msg)]

    def release(self, processor: str | None = None, voice: str | None = None) -> list[Sent]:
        """Note-offs for every key whose last holders match (all keys when both are None)."""
        out: list[Sent] = []
        for key in list(self.held):
            holders = self.held[key]
            holders[:] = [
                o for o in holders
                if not ((processor is None or o[0] == processor) and (voice is None or o[1] == voice))
            ]
            if not holders:
                del self.held[key]
                out.append((key[0], _note_off(key[1], key[2])))
        return out

    def sounding(self) -> list[Key]:
        return sorted(self.held)


@dataclass(order=True)
class _Item:
    due_ns: int
    rank: int  # 0 for note-offs, so an off and an on due together never leave a key stuck
    seq: int
    port: str = field(compare=False)
    message: tuple[int, ...] = field(compare=False)
    owner: Owner = field(compare=False)


class Scheduler:
    """Orders outputs by (due time, note-off first, sequence number) and applies the ledger."""

    def __init__(self, counters: Counters | None = None) -> None:
        self.counters = counters or Counters()
        self.ledger = NoteLedger(self.counters)
        self._heap: list[_Item] = []
        self._seq = itertools.count()
        self._channels_used: set[tuple[str, int]] = set()
        self.tap: Tap | None = None  # chains: who sent what (daemon.core)

    def _tapped(self, processor: str, sent: list[Sent]) -> list[Sent]:
        if self.tap is not None:
            for port, msg in sent:
                self.tap(processor, port, msg)
        return sent

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, due_ns: int, port: str, message: tuple[int, ...], owner: Owner) -> None:
        rank = 0 if is_note_off(message) else 1
        heapq.heappush(self._heap, _Item(due_ns, rank, next(self._seq), port, message, owner))

    def next_due_ns(self) -> int | None:
        return self._heap[0].due_ns if self._heap else None

    def pop_due(self, now_ns: int) -> list[Sent]:
        """Everything due at or before ``now_ns``, in order, filtered through the ledger."""
        out: list[Sent] = []
        orphans: dict[tuple[Key, Owner], int] = {}  # note-offs that found no note, by due time
        while self._heap and self._heap[0].due_ns <= now_ns:
            item = heapq.heappop(self._heap)
            msg = item.message
            sent = self._through_ledger(item.port, msg, item.owner)
            key = (item.port, msg[0] & 0x0F, msg[1]) if len(msg) == 3 else None
            if not sent and is_note_off(msg):
                orphans[(key, item.owner)] = item.due_ns
            elif is_note_on(msg) and orphans.get((key, item.owner)) == item.due_ns:
                # A note-on and its own note-off due together (a zero-length note, or both taken
                # in one drain): the off was ranked first and found nothing. End the note now.
                del orphans[(key, item.owner)]
                sent += self.ledger.note_off(item.port, (NOTE_OFF | key[1], key[2], 0), item.owner)
                self.counters.add("zero_length_notes")
            out.extend(self._tapped(item.owner[0], sent))
        return out

    def send_now(self, port: str, message: tuple[int, ...], owner: Owner) -> list[Sent]:
        """Pass one message through the ledger immediately (no queueing)."""
        return self._tapped(owner[0], self._through_ledger(port, message, owner))

    def _through_ledger(self, port: str, msg: tuple[int, ...], owner: Owner) -> list[Sent]:
        if msg[0] < 0xF0:
            self._channels_used.add((port, msg[0] & 0x0F))
        if is_note_on(msg):
            return self.ledger.note_on(port, msg, owner)
        if is_note_off(msg):
            return self.ledger.note_off(port, msg, owner)
        return [(port, msg)]

    def cancel(self, processor: str, voice: str | None = None) -> int:
        """Drop queued outputs of an owner, except note-offs (the ledger decides those)."""
        keep = [
            i for i in self._heap
            if i.owner[0] != processor or (voice is not None and i.owner[1] != voice)
            or is_note_off(i.message)
        ]
        dropped = len(self._heap) - len(keep)
        if dropped:
            self._heap = keep
            heapq.heapify(self._heap)
        return dropped

    def retract(self, processor: str, from_ns: int | None = None, voice: str | None = None,
                end_sounding: bool = False) -> tuple[int, list[Sent]]:
        """Take back queued outputs of a processor (a voice, those due from ``from_ns`` on).

        A queued note-off stays while its note sounds now or a queued note-on of the same owner
        comes before it, so no note is left sounding; the others go with their note-ons.
        ``end_sounding`` ends the matching sounding notes now. Returns (dropped, note-offs to send).
        """
        def mine(i: _Item) -> bool:
            return (i.owner[0] == processor and (voice is None or i.owner[1] == voice)
                    and (from_ns is None or i.due_ns >= from_ns))

        sent = self.ledger.release(processor, voice) if end_sounding else []
        keep = [i for i in self._heap if not (mine(i) and not is_note_off(i.message))]
        ons: dict[tuple[Key, Owner], list[_Item]] = {}
        for i in keep:
            if is_note_on(i.message):
                ons.setdefault(((i.port, i.message[0] & 0x0F, i.message[1]), i.owner), []).append(i)
        result = []
        for i in keep:
            if mine(i) and is_note_off(i.message):
                key = (i.port, i.message[0] & 0x0F, i.message[1])
                sounding = i.owner in self.ledger.held.get(key, ())
                pending = any(j < i for j in ons.get((key, i.owner), ()))
                if not sounding and not pending:
                    continue
            result.append(i)
        dropped = len(self._heap) - len(result)
        if dropped:
            self._heap = result
            heapq.heapify(self._heap)
        return dropped, self._tapped(processor, sent)

    def release(self, processor: str, voice: str | None = None) -> list[Sent]:
        """An owner goes away (button release, exception, switch): cancel its queue, end its notes."""
        self.cancel(processor, voice)
        return self._tapped(processor, self.ledger.release(processor, voice))

    def all_notes_off(self) -> list[Sent]:
        """Drop the whole queue and end every sounding note with explicit note-offs."""
        self._heap.clear()
        out: list[Sent] = []
        for processor in sorted({o[0] for holders in self.ledger.held.values() for o in holders}):
            out += self._tapped(processor, self.ledger.release(processor))
        return out

    def panic(self, channels: set[tuple[str, int]] | None = None) -> list[Sent]:
        """Explicit note-offs, then sustain off, then all-notes-off on every channel used (and
        on ``channels``, (port, channel) pairs that may be in use)."""
        out = self.all_notes_off()
        chans = sorted(self._channels_used | (channels or set()))
        for port, channel in chans:
            out.append((port, (CONTROL_CHANGE | channel, CC_SUSTAIN, 0)))
        for port, channel in chans:
            out.append((port, (CONTROL_CHANGE | channel, CC_ALL_NOTES_OFF, 0)))
        return out
