"""The engine's logic without threads or ports: routing, processors, scheduler, panic.

``EngineCore`` takes events with their arrival times and a clock reading, and returns what to send
on which port. The live engine (``daemon.engine``) drives it from one thread against real ports;
``genie play`` drives it with a simulated clock. Both therefore behave the same.
"""

from __future__ import annotations

import fnmatch
import heapq
import itertools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from daemon.config import Config, ProcessorConfig
from daemon.events import (
    CC_ALL_NOTES_OFF,
    CC_ALL_SOUND_OFF,
    CC_MOD_WHEEL,
    CC_SUSTAIN,
    CHANNEL_AFTERTOUCH,
    CONTROL_CHANGE,
    NOTE_OFF,
    NOTE_ON,
    PITCH_BEND,
    POLY_AFTERTOUCH,
    PROGRAM_CHANGE,
    ButtonEvent,
    Counters,
    Event,
    MidiEvent,
    Out,
    split_glued_sysex,
    valid_message,
)
from daemon.config import chain_inputs
from daemon.echo import EchoGuard
from daemon.io import midi_buttons
from daemon.processor import BaseProcessor, Ending, Processor
from daemon.scheduler import Scheduler, Sent
from daemon.transport import Transport
from daemon.workers import Handle, SteppedWorkers

NEVER_NS = 1 << 62  # next_wake_ns when nothing is scheduled

log = logging.getLogger("genie.engine")

Recorder = Callable[[str, int, str, tuple[int, ...]], None]
"""record(direction "in"/"out", time_ns, port or source, message)."""


@dataclass
class Slot:
    """One configured processor: its settings, its instance, and what it currently holds."""

    cfg: ProcessorConfig
    proc: Processor
    active: bool = True
    held_buttons: dict[tuple[str, int], int] = field(default_factory=dict)  # (source, button) -> pitch key
    jobs: list[Handle] = field(default_factory=list)  # its background jobs not yet ended
    chain_from: list[str] = field(default_factory=list)  # processors whose outputs it hears

    def __post_init__(self) -> None:
        self.buttons = self.cfg.buttons
        if midi_buttons.is_default(self.buttons) and getattr(self.proc, "listens", False):
            self.buttons = []  # a processor that listens hears every note as a note
        # note -> button, CC number -> button (daemon.io.midi_buttons)
        self.note_buttons, self.cc_buttons = midi_buttons.lookup(self.buttons)
        # a folded keyboard: each key presses on its own (source "<port>#<pitch>")
        self.per_key = isinstance(self.buttons, midi_buttons.FoldedButtons)
        # the engine need not wake for idle calls that do nothing (BaseProcessor's default)
        self.has_idle = getattr(type(self.proc), "on_idle", None) is not BaseProcessor.on_idle
        c = self.cfg
        self.transport = Transport(c.label, c.beats_per_bar, int(c.clock_lost_ms * 1e6),
                                   int(c.clock_offset_ms * 1e6)) if c.clock else None

    @property
    def label(self) -> str:
        return self.cfg.label

    def takes(self, source: str) -> bool:
        return any(fnmatch.fnmatchcase(source, pat) for pat in self.cfg.inputs)


def _rechannel(msg: tuple[int, ...], channel: int) -> tuple[int, ...]:
    if msg[0] < 0xF0:
        return ((msg[0] & 0xF0) | channel, *msg[1:])
    return msg


def _passthrough_kind(msg: tuple[int, ...]) -> str | None:
    status = msg[0] & 0xF0
    if status == PITCH_BEND:
        return "pitchbend"
    if status in (POLY_AFTERTOUCH, CHANNEL_AFTERTOUCH):
        return "aftertouch"
    if status == CONTROL_CHANGE and msg[1] == CC_MOD_WHEEL:
        return "modwheel"
    if status == CONTROL_CHANGE and msg[1] == CC_SUSTAIN:
        return "sustain"
    return None


class HostRef:
    """The processors' ``Context.host`` before the core exists: forwards to it once attached."""

    def __init__(self) -> None:
        self.target: EngineCore | None = None

    def submit(self, label, job, on_piece):
        return self._core().submit(label, job, on_piece)

    def retract(self, label, from_ns, voice, end_sounding, now_ns):
        return self._core().retract(label, from_ns, voice, end_sounding, now_ns)

    def transport(self, label):
        return self._core().transport(label) if self.target is not None else None

    def _core(self) -> EngineCore:
        if self.target is None:
            raise RuntimeError("the engine is not running yet")
        return self.target


def _as_outs(piece) -> Iterable[Out]:
    """A job's piece without an ``on_piece``: an Out, or a list of them (None: nothing yet)."""
    if isinstance(piece, Out):
        return (piece,)
    return piece or ()


class EngineCore:
    """Routes events to processors and turns their outputs into sends, one thread at a time.

    It is also the processors' host (``Context.host``): their background jobs (``workers``: one
    thread per processor live, stepped offline), retraction, and the transport of clocked ones."""

    def __init__(self, cfg: Config, slots: list[Slot], counters: Counters | None = None,
                 record: Recorder | None = None, workers=None, host: HostRef | None = None,
                 send_ahead_ms: float | None = None) -> None:
        self.counters = counters or Counters()
        self.scheduler = Scheduler(self.counters)
        self.workers = workers if workers is not None else SteppedWorkers(self.counters)
        self._chain_pending: list[tuple[str, tuple[int, ...]]] = []
        self._warned_sysex = False
        self._chaining = False
        self.host = host
        if host is not None:
            host.target = self
        self._install(cfg, slots)
        self.record = record
        ahead = cfg.midi.send_ahead_ms if send_ahead_ms is None else send_ahead_ms
        self.send_ahead_ns = max(0, int(ahead * 1e6))  # the API decides when the config says -1
        # an echo's delay jitters by up to one JACK period (twice the send-ahead) on its way back
        self.echo = EchoGuard(int(cfg.midi.echo_window_ms * 1e6), self.counters,
                              tolerance_ns=3_000_000 + 2 * self.send_ahead_ns)
        self._next_idle_ns = 0
        self._held_notes: dict[str, set[tuple[int, int]]] = {}  # source -> {(status ch, pitch)}
        self._held_buttons: set[tuple[str, int]] = set()  # (source, button), for the panic combination
        self._combo_since: int | None = None  # when the panic combination was last completed
        self._combo_fired = False
        self._later: list[tuple[int, int, Event]] = []
        self._seq = itertools.count()
        self.outbox: list[Sent] = []

    def _install(self, cfg: Config, slots: list[Slot]) -> None:
        """Play ``slots`` under ``cfg``'s engine settings (at start, and on a reload)."""
        self.cfg = cfg
        self.slots = slots
        self._by_label = {s.label: s for s in slots}
        labels = set(self._by_label)
        for s in slots:
            s.chain_from = [x for x in chain_inputs(s.cfg, labels) if x != s.label]
        self._chained = any(s.chain_from for s in slots)
        self.scheduler.tap = self._tap if self._chained else None
        self.idle_interval_ns = int(cfg.engine.idle_interval_ms * 1e6)
        self.panic_hold_ns = int(cfg.engine.panic_hold_ms * 1e6)
        if cfg.engine.switch == "program" or cfg.engine.switch_cc >= 0:  # one plays at a time
            for i, s in enumerate(slots):
                s.active = i == 0

    def monitor_state(self) -> dict:
        """What ``genie monitor`` shows of the core (built on the engine thread, small)."""
        state = {"processors": [s.label for s in self.slots],
                 "playing": [s.label for s in self.slots if s.active],
                 "held": sorted({button for _, button in self._held_buttons}),
                 "sounding": len(self.scheduler.ledger.held),
                 "counters": dict(self.counters.values)}
        clocks = {}
        for s in self.slots:
            if s.transport is not None:
                clocks[s.label] = s.transport.describe()
        if clocks:
            state["transport"] = clocks
        return state

    def reload(self, cfg: Config, slots: list[Slot], now_ns: int) -> None:
        """The config was read again (SIGHUP): the old processors' notes end (they hear
        ``Ending.RELOAD``) and they stop; ``slots``, already started and warm, take over. A clocked
        processor of the same name keeps the DAW's position (its transport carries over)."""
        old = {s.label: s for s in self.slots}
        for slot in self.slots:
            self._end_slot(slot, now_ns)
            self._tell(slot, Ending.RELOAD)
        for slot in self.slots:
            try:
                slot.proc.stop()
            except Exception as exc:  # noqa: BLE001 - its notes have ended; the new ones play
                log.error("processor %s failed to stop: %s", slot.label, exc)
        for slot in slots:
            was = old.get(slot.label)
            if slot.transport is not None and was is not None and was.transport is not None \
                    and (slot.cfg.beats_per_bar, slot.cfg.clock_lost_ms, slot.cfg.clock_offset_ms) == \
                    (was.cfg.beats_per_bar, was.cfg.clock_lost_ms, was.cfg.clock_offset_ms):
                slot.transport = was.transport
        self._install(cfg, slots)
        log.info("reloaded: %s", ", ".join(s.label for s in slots))

    # ---- input -------------------------------------------------------------------------------

    def feed(self, ev: Event, now_ns: int) -> None:
        """Handle one event (due now, or later when its time is in the future)."""
        if ev.time_ns > now_ns:
            heapq.heappush(self._later, (ev.time_ns, next(self._seq), ev))
            return
        if isinstance(ev, MidiEvent):
            self._feed_midi(ev, now_ns)
        else:
            self._feed_button(ev, now_ns)

    def _feed_midi(self, ev: MidiEvent, now_ns: int) -> None:
        msg = ev.message
        if msg == (0xF7,):  # an end-of-sysex alone: the engine's nudge to rtmidi (see Engine)
            return
        glued = split_glued_sysex(msg)
        if glued is not None:
            self.counters.add("dropped_malformed")  # the cut sysex itself
            if not self._warned_sysex:
                self._warned_sysex = True
                log.warning("a sysex message cut short (no F7) from %s held up the messages after "
                            "it; Genie took them back out of it (they came late)", ev.source)
            self.counters.add("recovered_after_cut_sysex", len(glued))
            for m in glued:
                self._feed_midi(MidiEvent(ev.time_ns, ev.source, m), now_ns)
            return
        if not valid_message(msg):
            self.counters.add("dropped_malformed")
            return
        if not self._releases_own_note(ev) and self.echo.is_echo(msg, now_ns, ev.time_ns):
            self.counters.add("dropped_echo")
            return
        if self.record:
            self.record("in", ev.time_ns, ev.source, msg)
        status = ev.status
        if status == CONTROL_CHANGE and msg[1] in (CC_ALL_SOUND_OFF, CC_ALL_NOTES_OFF):
            self.release_all(now_ns)
            return
        if status == CONTROL_CHANGE and msg[1] == self.cfg.engine.panic_cc and msg[2] > 0:
            self.panic(now_ns)
            return
        if ev.is_note_on:
            self._held_notes.setdefault(ev.source, set()).add((msg[0] & 0x0F, msg[1]))
        elif ev.is_note_off:
            self._held_notes.get(ev.source, set()).discard((msg[0] & 0x0F, msg[1]))
        if status == PROGRAM_CHANGE and self.cfg.engine.switch == "program":
            self.switch(msg[1], now_ns)
            return
        if status == CONTROL_CHANGE and msg[1] == self.cfg.engine.switch_cc:
            self.switch(msg[2], now_ns)
            return
        self._midi_button(ev, now_ns)
        for slot in self.slots:
            if slot.active and slot.takes(ev.source):
                self._to_slot(slot, ev, now_ns)

    def _to_slot(self, slot: Slot, ev: MidiEvent, now_ns: int) -> None:
        """One MIDI event for one processor: as transport, a button, passed through, or as is."""
        msg, status = ev.message, ev.status
        channel = ev.channel
        if channel is None:  # system messages: clock and transport, for clocked slots only
            if slot.transport is not None:
                for tev in slot.transport.feed(msg, ev.time_ns):
                    self._call(slot, slot.proc.on_event, tev, now_ns)
            return
        if slot.cfg.channel and channel != slot.cfg.channel - 1:
            return
        if (ev.is_note_on or ev.is_note_off) and msg[1] in slot.note_buttons:
            source = f"{ev.source}#{msg[1]}" if slot.per_key else ev.source
            bev = ButtonEvent(ev.time_ns, source, slot.note_buttons[msg[1]],
                              ev.is_note_on, msg[2] if ev.is_note_on else None)
            self._call(slot, slot.proc.on_event, bev, now_ns)
            return
        if status == CONTROL_CHANGE and msg[1] in slot.cc_buttons:
            # down from 64, up below; only the crossing counts (a knob presses once)
            button = slot.cc_buttons[msg[1]]
            pressed = msg[2] >= midi_buttons.CC_PRESS
            if pressed != ((ev.source, button) in slot.held_buttons):
                self._call(slot, slot.proc.on_event,
                           ButtonEvent(ev.time_ns, ev.source, button, pressed), now_ns)
            return
        kind = _passthrough_kind(msg)
        if kind is not None and kind in slot.cfg.passthrough:
            out = _rechannel(msg, slot.cfg.out_channel - 1)
            self.scheduler.push(now_ns, slot.cfg.output, out, (slot.label, "passthrough"))
            return
        self._call(slot, slot.proc.on_event, ev, now_ns)

    def _feed_button(self, ev: ButtonEvent, now_ns: int) -> None:
        if self.record:
            note = midi_buttons.note_for(self.cfg.processors[0].buttons if self.cfg.processors
                                         else [], ev.button)
            msg = (NOTE_ON, note, ev.velocity or 100) if ev.pressed else (NOTE_OFF, note, 0)
            self.record("in", ev.time_ns, ev.source, msg)
        self._combo(ev.source, ev.button, ev.pressed, now_ns)
        for slot in self.slots:
            if slot.active and slot.takes(ev.source):
                self._call(slot, slot.proc.on_event, ev, now_ns)

    def _combo(self, source: str, button: int, pressed: bool, now_ns: int) -> None:
        """The panic combination (``engine.panic_buttons``) held together for ``panic_hold_ms``,
        from any source (keyboard, gamepad, MIDI buttons): a deliberate gesture, not a fast run."""
        key = (source.split("#")[0], button)
        if pressed:
            self._held_buttons.add(key)
        else:
            self._held_buttons.discard(key)
        combo = set(self.cfg.engine.panic_buttons)
        held = {b for _, b in self._held_buttons}
        if len(combo) > 1 and combo <= held:
            if self._combo_since is None and not self._combo_fired:
                self._combo_since = now_ns
        else:
            self._combo_since, self._combo_fired = None, False

    def _midi_button(self, ev: MidiEvent, now_ns: int) -> None:
        """A note or CC that is a button of the first processor hearing it: for the combination."""
        msg = ev.message
        for slot in self.slots:
            if not (slot.active and slot.takes(ev.source)):
                continue
            if (ev.is_note_on or ev.is_note_off) and msg[1] in slot.note_buttons:
                self._combo(f"{ev.source}#{msg[1]}", slot.note_buttons[msg[1]], ev.is_note_on, now_ns)
            elif ev.status == CONTROL_CHANGE and len(msg) == 3 and msg[1] in slot.cc_buttons:
                self._combo(ev.source, slot.cc_buttons[msg[1]], msg[2] >= midi_buttons.CC_PRESS, now_ns)
            return

    @property
    def echo_window_ns(self) -> int:
        return self.echo.window_ns

    @echo_window_ns.setter
    def echo_window_ns(self, ns: int) -> None:
        self.echo.window_ns = ns

    def _releases_own_note(self, ev: MidiEvent) -> bool:
        """A note-off for a note this source is holding is its own release, never an echo.

        Genie's output can hold the same note-off just before it: a re-trigger ends the note
        before playing it again. Dropping the player's release then would leave the note sounding
        (and re-triggered, and its next release dropped again, for as long as they play)."""
        return ev.is_note_off and (ev.message[0] & 0x0F, ev.message[1]) in self._held_notes.get(
            ev.source, ())

    def source_lost(self, source: str, now_ns: int) -> None:
        """An input port went away: release whatever it was holding, as if the player let go."""
        for channel, pitch in sorted(self._held_notes.pop(source, set())):
            self.feed(MidiEvent(now_ns, source, (NOTE_OFF | channel, pitch, 0)), now_ns)
        for slot in self.slots:
            for src, button in [k for k in slot.held_buttons
                                if k[0] == source or k[0].startswith(source + "#")]:
                self._call(slot, slot.proc.on_event, ButtonEvent(now_ns, src, button, False),
                           now_ns)
            self._emit(self.scheduler.release(slot.label, source), now_ns)

    # ---- processors --------------------------------------------------------------------------

    def _call(self, slot: Slot, fn: Callable, arg, now_ns: int) -> None:
        if isinstance(arg, ButtonEvent):
            key = (arg.source, arg.button)
            if arg.pressed:
                slot.held_buttons[key] = 1
            else:
                slot.held_buttons.pop(key, None)
        try:
            outs = list(fn(arg) or ())
        except Exception as exc:  # a processor bug must cost its notes, not the gig
            self.counters.add(f"processor_errors.{slot.label}")
            log.error("processor %s raised %s: %s; its notes are released", slot.label,
                      type(exc).__name__, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            self._emit(self.scheduler.release(slot.label), now_ns)
            self._tell(slot, Ending.ERROR)
            return
        self.schedule(slot, outs, now_ns)

    def _tell(self, slot: Slot, reason: str) -> None:
        """The engine ended a processor's notes and dropped its queue: cancel its jobs, tell it why."""
        for handle in slot.jobs:
            handle.cancel()
        slot.jobs.clear()
        tell = getattr(slot.proc, "on_release", None)
        if tell is None:
            return
        try:
            tell(reason)
        except Exception as exc:  # noqa: BLE001 - telling must not take the engine down
            self.counters.add(f"processor_errors.{slot.label}")
            log.error("processor %s raised %s in on_release(%s): %s", slot.label,
                      type(exc).__name__, reason, exc)

    # ---- the processors' host (Context.host) -----------------------------------------------------

    def submit(self, label: str, job, on_piece=None) -> Handle:
        """Run ``job`` off the engine thread for processor ``label`` (daemon.workers)."""
        slot = self._by_label[label]
        slot.jobs = [h for h in slot.jobs if not h.done()]
        handle = self.workers.submit(label, job, on_piece)
        slot.jobs.append(handle)
        return handle

    def retract(self, label: str, from_ns: int | None = None, voice: str | None = None,
                end_sounding: bool = False, now_ns: int | None = None) -> int:
        """Take back ``label``'s queued outputs (``Scheduler.retract``)."""
        dropped, sent = self.scheduler.retract(label, from_ns, voice, end_sounding)
        if sent:
            self._emit(sent, now_ns if now_ns is not None else 0)
        if dropped:
            self.counters.add(f"retracted.{label}", dropped)
        return dropped

    def transport(self, label: str) -> Transport | None:
        slot = self._by_label.get(label)
        return slot.transport if slot is not None else None

    def _apply_work(self, now_ns: int) -> None:
        """Pieces of background jobs, on the engine thread: through ``on_piece``, then scheduled."""
        for handle, piece in self.workers.collect(now_ns):
            if handle.cancelled:
                continue
            slot = self._by_label.get(handle.owner)
            if slot is None or not slot.active:
                handle.cancel()
                continue
            self._call(slot, handle.on_piece or _as_outs, piece, now_ns)

    # ---- chains: one processor's output as another's input -------------------------------------

    def _tap(self, processor: str, port: str, msg: tuple[int, ...]) -> None:
        self._chain_pending.append((processor, msg))

    def _run_chains(self, now_ns: int) -> None:
        """Feed what chained processors sent to the processors that listen to them."""
        if self._chaining:
            return
        self._chaining = True
        try:
            while self._chain_pending:
                pending, self._chain_pending = self._chain_pending, []
                for label, msg in pending:
                    ev = MidiEvent(now_ns, label, msg)
                    for slot in self.slots:
                        if slot.active and label in slot.chain_from:
                            self._to_slot(slot, ev, now_ns)
                self._emit(self.scheduler.pop_due(now_ns + self.send_ahead_ns), now_ns)
        finally:
            self._chaining = False

    def schedule(self, slot: Slot, outs: Iterable[Out], now_ns: int) -> None:
        """Queue a processor's outputs on its port and channel."""
        channel = slot.cfg.out_channel - 1
        for out in outs:
            msg = tuple(out.message)
            if not valid_message(msg):
                self.counters.add(f"bad_output.{slot.label}")
                continue
            if not out.keep_channel:
                msg = _rechannel(msg, channel)
            self.scheduler.push(max(out.due_ns, 0), slot.cfg.output, msg, (slot.label, out.voice))

    def switch(self, index: int, now_ns: int) -> None:
        """Program Change (or ``engine.switch_cc``): make the ``index``-th processor the one that
        plays (all stay warm); the old one's notes end."""
        if not 0 <= index < len(self.slots) or self.slots[index].active:
            return
        for slot in self.slots:
            if slot.active:
                slot.active = False
                self._end_slot(slot, now_ns)
                self._tell(slot, Ending.SWITCH)
        self.slots[index].active = True
        log.info("switched to processor %s", self.slots[index].label)

    def _end_slot(self, slot: Slot, now_ns: int) -> None:
        # The processor hears the release of every button it holds (their notes end below): a
        # button held across a switch must not look held to it when it plays again.
        for source, button in list(slot.held_buttons):
            try:
                list(slot.proc.on_event(ButtonEvent(now_ns, source, button, False)) or ())
            except Exception as exc:  # noqa: BLE001 - its notes end anyway
                log.debug("processor %s raised on a release at switch: %s", slot.label, exc)
        slot.held_buttons.clear()
        sent = self.scheduler.release(slot.label)
        sent += [(slot.cfg.output, (CONTROL_CHANGE | (slot.cfg.out_channel - 1), CC_SUSTAIN, 0)),
                 (slot.cfg.output, (CONTROL_CHANGE | (slot.cfg.out_channel - 1), CC_ALL_NOTES_OFF, 0))]
        self._emit(sent, now_ns)

    def server_lost(self, now_ns: int) -> None:
        """The audio server went away with Genie's ports: nothing can be sent, so the ledger and
        the queue forget everything (a synth on that server is gone too) and the processors hear
        why; what was held by the inputs is forgotten as well."""
        self.scheduler.all_notes_off()
        self._held_notes.clear()
        self._held_buttons.clear()
        for slot in self.slots:
            slot.held_buttons.clear()
            self._tell(slot, Ending.SERVER_LOST)

    def release_all(self, now_ns: int) -> None:
        """CC 120/123 from the DAW: end every note Genie sounds and drop what is queued."""
        self._emit(self.scheduler.all_notes_off(), now_ns)
        for slot in self.slots:
            self._tell(slot, Ending.ALL_NOTES_OFF)

    def output_channels(self) -> set[tuple[str, int]]:
        """(port, channel 0-15) every processor may play on: its out_channel and the channels
        it names itself (``output_channels()``, e.g. drums on 10)."""
        out = set()
        for slot in self.slots:
            out.add((slot.cfg.output, slot.cfg.out_channel - 1))
            named = getattr(slot.proc, "output_channels", None)
            for ch in (named() if callable(named) else ()):
                if 1 <= ch <= 16:
                    out.add((slot.cfg.output, ch - 1))
        return out

    def clear_outputs(self) -> list[Sent]:
        """Sustain off and all-notes-off on every channel Genie may use: at start-up, a synth may
        still sound notes of a Genie that crashed (SIGKILL, power loss)."""
        chans = sorted(self.output_channels())
        return ([(port, (CONTROL_CHANGE | ch, CC_SUSTAIN, 0)) for port, ch in chans]
                + [(port, (CONTROL_CHANGE | ch, CC_ALL_NOTES_OFF, 0)) for port, ch in chans])

    def panic(self, now_ns: int) -> None:
        """Note-offs for everything sounding, sustain off, all-notes-off (on every channel used
        and every channel the processors may use); queues emptied."""
        for slot in self.slots:
            slot.held_buttons.clear()
        self._held_buttons.clear()
        self.counters.add("panics")
        self._emit(self.scheduler.panic(self.output_channels()), now_ns)
        for slot in self.slots:
            self._tell(slot, Ending.PANIC)
        log.warning("panic: all notes off")

    # ---- time --------------------------------------------------------------------------------

    def due(self, now_ns: int) -> list[Sent]:
        """What is due now (e.g. the note a press just made), without running idle work."""
        self._emit(self.scheduler.pop_due(now_ns + self.send_ahead_ns), now_ns)
        out, self.outbox = self.outbox, []
        return out

    def tick(self, now_ns: int) -> list[Sent]:
        """Advance to ``now_ns``: due events, idle calls, due outputs. Returns what to send."""
        while self._later and self._later[0][0] <= now_ns:
            _, _, ev = heapq.heappop(self._later)
            self.feed(ev, now_ns)
        self._apply_work(now_ns)
        if self._combo_since is not None and now_ns - self._combo_since >= self.panic_hold_ns:
            self._combo_since, self._combo_fired = None, True  # once per holding
            self.panic(now_ns)
        for slot in self.slots:
            if slot.transport is not None and slot.active:
                for tev in slot.transport.check(now_ns):
                    self._call(slot, slot.proc.on_event, tev, now_ns)
        if now_ns >= self._next_idle_ns:
            self._next_idle_ns = now_ns + self.idle_interval_ns
            for slot in self.slots:
                if slot.active:
                    self._call(slot, slot.proc.on_idle, now_ns, now_ns)
        self._emit(self.scheduler.pop_due(now_ns + self.send_ahead_ns), now_ns)
        out, self.outbox = self.outbox, []
        return out

    def next_wake_ns(self) -> int:
        """When ``tick`` next has something to do (without new input)."""
        candidates = [self._next_idle_ns] if any(
            s.active and s.has_idle for s in self.slots) else []
        due = self.scheduler.next_due_ns()
        if due is not None:
            candidates.append(due - self.send_ahead_ns)
        if self._later:
            candidates.append(self._later[0][0])
        for slot in self.slots:
            lost = slot.transport.lost_deadline_ns() if slot.transport is not None else None
            if lost is not None and slot.active:
                candidates.append(lost)
        if self._combo_since is not None:
            candidates.append(self._combo_since + self.panic_hold_ns)
        if self.workers.busy():  # offline: a job makes its next piece at the next tick
            candidates.append(self._next_idle_ns)
        return min(candidates, default=NEVER_NS)

    def _emit(self, sent: list[Sent], now_ns: int) -> None:
        for port, msg in sent:
            self.outbox.append((port, msg))
            self.echo.sent(now_ns, msg)
            if self.record:
                self.record("out", now_ns, port, msg)
        if self._chain_pending:
            self._run_chains(now_ns)

    def stop(self, now_ns: int) -> list[Sent]:
        """End of the session: panic sequence, processors stopped. Returns the final sends."""
        for slot in self.slots:
            self._tell(slot, Ending.STOP)
        self.workers.stop()
        for slot in self.slots:
            try:
                slot.proc.stop()
            except Exception as exc:  # still send the note-offs below
                log.error("processor %s failed to stop: %s", slot.label, exc)
        for slot in self.slots:
            slot.held_buttons.clear()
        self._emit(self.scheduler.panic(), now_ns)
        out, self.outbox = self.outbox, []
        return out
