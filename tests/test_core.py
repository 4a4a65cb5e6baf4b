"""EngineCore routing and safety, on a fake clock with in-memory processors."""

from daemon.config import Config, ProcessorConfig, parse_config
from daemon.core import EngineCore, Slot
from daemon.events import ButtonEvent, MidiEvent, Out
from daemon.processor import BaseProcessor, Context
from daemon.processors.thru import ThruProcessor

MS = 1_000_000


class Recording(BaseProcessor):
    """Remembers what it was given; plays a note per press; raises on button 7."""

    name = "recording"

    def __init__(self):
        self.events = []

    def on_event(self, ev):
        self.events.append(ev)
        if isinstance(ev, ButtonEvent):
            if ev.button == 7:
                raise RuntimeError("boom")
            if ev.pressed:
                return [Out(ev.time_ns, (0x90, 40 + ev.button, 90), voice=str(ev.button))]
            return [Out(ev.time_ns, (0x80, 40 + ev.button, 0), voice=str(ev.button))]
        return ()


def make(raw=None, procs=None):
    cfg = parse_config(raw or {"processor": [{"name": "thru"}]})
    slots = []
    for pcfg in cfg.processors:
        p = (procs or {}).get(pcfg.label) or ThruProcessor()
        p.start(Context(pcfg.label, dict(pcfg.options)))
        slots.append(Slot(pcfg, p))
    cfg.midi.echo_window_ms = 0
    core = EngineCore(cfg, slots)
    core.echo_window_ns = 0
    return core


def midi(t, msg, source="Genie in"):
    return MidiEvent(t * MS, source, tuple(msg))


def run(core, events, until_ms=None):
    out = []
    for ev in events:
        core.feed(ev, ev.time_ns)
        out += core.tick(ev.time_ns)
    out += core.tick((until_ms or 10_000) * MS)
    return out


def test_thru_rechannels_notes_and_maps_buttons_to_their_notes():
    core = make({"processor": [{"name": "thru", "out_channel": 3,
                                "options": {"notes": [30, 31, 32, 33, 34, 35, 36, 37]}}]})
    out = run(core, [midi(0, (0x90, 50, 100)), midi(1, (0x80, 50, 0)),
                     midi(2, (0x90, 64, 80)), midi(3, (0x80, 64, 0))])
    assert [m for _, m in out] == [(0x92, 50, 100), (0x82, 50, 0), (0x92, 32, 80), (0x82, 32, 0)]


def test_channel_filter_and_passthrough_rules():
    core = make({"processor": [{"name": "thru", "channel": 2, "passthrough": ["pitchbend"]}]})
    out = run(core, [midi(0, (0x90, 50, 100)),  # channel 1: filtered out
                     midi(1, (0x91, 51, 100)), midi(2, (0xE1, 0, 64)),  # bend passes
                     midi(3, (0xB1, 1, 30)),  # mod wheel: not in passthrough
                     midi(4, (0x81, 51, 0))])
    assert [m for _, m in out] == [(0x90, 51, 100), (0xE0, 0, 64), (0x80, 51, 0)]


def test_processor_exception_releases_its_notes_and_the_engine_goes_on():
    rec = Recording()
    core = make({"processor": [{"name": "thru", "label": "rec"}]}, {"rec": rec})
    out = run(core, [ButtonEvent(0, "k", 1, True), ButtonEvent(MS, "k", 7, True),
                     ButtonEvent(2 * MS, "k", 2, True), ButtonEvent(3 * MS, "k", 2, False)])
    assert [m for _, m in out] == [(0x90, 41, 90), (0x80, 41, 0), (0x90, 42, 90), (0x80, 42, 0)]
    assert core.counters.get("processor_errors.rec") == 1


def test_program_change_switches_processor_and_ends_the_old_ones_notes():
    a, b = Recording(), Recording()
    core = make({"engine": {"switch": "program"},
                 "processor": [{"name": "thru", "label": "a"},
                               {"name": "thru", "label": "b", "out_channel": 2}]},
                {"a": a, "b": b})
    out = run(core, [ButtonEvent(0, "k", 1, True), midi(1, (0xC0, 1)),
                     ButtonEvent(2 * MS, "k", 2, True)])
    msgs = [m for _, m in out]
    assert msgs[:4] == [(0x90, 41, 90), (0x80, 41, 0), (0xB0, 64, 0), (0xB0, 123, 0)]
    assert msgs[4] == (0x91, 42, 90)
    assert all(not isinstance(e, ButtonEvent) or e.button != 2 for e in a.events)


def test_echo_of_our_own_output_is_dropped():
    core = make()
    core.echo_window_ns = 5 * MS
    out = run(core, [midi(0, (0x90, 50, 100)), midi(2, (0x90, 50, 100), source="DAW"),
                     midi(20, (0x80, 50, 0))])
    assert [m for _, m in out] == [(0x90, 50, 100), (0x80, 50, 0)]
    assert core.counters.get("dropped_echo") == 1


def test_a_release_is_never_taken_for_an_echo_of_a_retrigger():
    # Two players on one pitch: b's note-on re-triggers it (Genie sends off 53, on 53); a lets go
    # 1 ms later. a's note-off equals Genie's re-trigger note-off within the echo window, but a
    # holds 53: it is a's release. Dropped, 53 would sound on after both let go.
    core = make()
    core.echo_window_ns = 5 * MS
    out = run(core, [midi(0, (0x90, 53, 100), source="a"), midi(1, (0x90, 53, 90), source="b"),
                     midi(2, (0x80, 53, 0), source="a"), midi(3, (0x80, 53, 0), source="b"),
                     midi(300, (0x90, 53, 100), source="a"), midi(301, (0x80, 53, 0), source="a")])
    msgs = [m for _, m in out]
    assert core.counters.get("dropped_echo") == 0
    assert msgs[-2:] == [(0x90, 53, 100), (0x80, 53, 0)]  # no re-trigger later: nothing stuck
    on = sum(m[0] & 0xF0 == 0x90 for m in msgs)
    off = sum(m[0] & 0xF0 == 0x80 for m in msgs)
    assert on == off


def test_daw_all_notes_off_ends_sounding_notes():
    core = make()
    out = run(core, [midi(0, (0x90, 50, 100)), midi(1, (0xB0, 123, 0))])
    assert [m for _, m in out] == [(0x90, 50, 100), (0x80, 50, 0)]


def test_panic_cc_and_button_combination():
    core = make({"engine": {"panic_cc": 20, "panic_buttons": [0, 7]},
                 "processor": [{"name": "thru"}]})
    out = run(core, [midi(0, (0x90, 50, 100)), midi(1, (0xB0, 20, 127))])
    assert [m for _, m in out] == [(0x90, 50, 100), (0x80, 50, 0), (0xB0, 64, 0), (0xB0, 123, 0)]
    # the combination held for panic_hold_ms (500): both notes played, then everything ends
    core2 = make({"engine": {"panic_buttons": [0, 7]}, "processor": [{"name": "thru"}]})
    out = run(core2, [ButtonEvent(0, "k", 0, True), ButtonEvent(MS, "k", 7, True)])
    assert [m for _, m in out] == [(0x90, 60, 100), (0x90, 72, 100), (0x80, 60, 0), (0x80, 72, 0),
                                   (0xB0, 64, 0), (0xB0, 123, 0)]
    assert core2.counters.get("panics") == 1


def test_panic_is_deliberate_on_every_source():
    """A fast run over the combination is no panic; held from MIDI note buttons it is."""
    core = make({"engine": {"panic_buttons": [0, 3, 4, 7]}, "processor": [{"name": "thru"}]})
    run_over = [ButtonEvent(i * 20 * MS, "keyboard", b, True) for i, b in enumerate((0, 3, 4, 7))]
    run_over += [ButtonEvent(100 * MS + i * 20 * MS, "keyboard", b, False) for i, b in enumerate((0, 3, 4, 7))]
    run(core, run_over)
    assert core.counters.get("panics") == 0
    core = make({"engine": {"panic_buttons": [0, 3, 4, 7]}, "processor": [{"name": "thru"}]})
    held = [midi(i, (0x90, p, 100)) for i, p in enumerate((60, 65, 67, 72))]  # C4 F4 G4 C5
    run(core, held, until_ms=700)
    assert core.counters.get("panics") == 1


def test_lost_source_releases_what_it_held():
    core = make()
    out = run(core, [midi(0, (0x90, 50, 100), source="usb"), midi(0, (0x90, 51, 100), source="other")])
    core.source_lost("usb", 5 * MS)
    out += core.tick(5 * MS)
    assert [m for _, m in out] == [(0x90, 50, 100), (0x90, 51, 100), (0x80, 50, 0)]
    assert core.scheduler.ledger.sounding() == [("Genie out", 0, 51)]


def test_malformed_messages_are_dropped_and_counted():
    core = make()
    out = run(core, [midi(0, (0x90, 50)), midi(1, (0x30, 1, 2)), midi(2, (0xF0, 1, 2)),
                     midi(3, (0x90, 200, 1))])
    assert out == []
    assert core.counters.get("dropped_malformed") == 4


def test_clock_goes_only_to_processors_that_want_it():
    a, b = Recording(), Recording()
    core = make({"processor": [{"name": "thru", "label": "a", "clock": True},
                               {"name": "thru", "label": "b"}]}, {"a": a, "b": b})
    run(core, [midi(0, (0xF8,)), midi(1, (0xFA,)), midi(2, (0xF8,))])
    # transport, not bytes; the clock then stops and is lost
    assert [(e.kind, e.tick) for e in a.events] == [("start", 0), ("tick", 0), ("lost", 1)]
    assert b.events == []


def test_future_outputs_wait_for_their_due_time_minus_send_ahead():
    core = make()
    core.send_ahead_ns = 2 * MS
    slot = core.slots[0]
    core.schedule(slot, [Out(10 * MS, (0x90, 60, 1))], 0)
    assert core.tick(7 * MS) == []
    assert core.next_wake_ns() <= 8 * MS
    assert core.tick(8 * MS) == [("Genie out", (0x90, 60, 1))]


def test_stop_sends_the_panic_sequence():
    core = make()
    run(core, [midi(0, (0x90, 50, 100))])
    assert [m for _, m in core.stop(MS)] == [(0x80, 50, 0), (0xB0, 64, 0), (0xB0, 123, 0)]


def test_default_config_needs_no_file():
    assert Config().processors[0].name == "pianogenie"
    assert ProcessorConfig().buttons == [60, 62, 64, 65, 67, 69, 71, 72]
