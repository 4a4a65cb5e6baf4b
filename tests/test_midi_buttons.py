"""MIDI controllers as the 8 buttons: presets, CC buttons, a CC that switches processors, and
``genie learn --midi`` (pure parts here; one session through a real JACK port at the end)."""

from __future__ import annotations

import json
import logging
import signal

import pytest
from click.testing import CliRunner

from daemon.cli import UserError
from daemon.commands.learn import learn, learn_midi_buttons
from daemon.config import ConfigError, ProcessorConfig, parse_config
from daemon.core import EngineCore, Slot
from daemon.events import ButtonEvent, MidiEvent
from daemon.io import midi_buttons as mb
from daemon.io.learn import load_learned, load_learned_midi, save_learned, save_learned_midi
from daemon.processor import Context
from daemon.processors.thru import ThruProcessor

MS = 1_000_000
PADS = list(range(36, 44))
CCS = [f"cc:{n}" for n in range(20, 28)]


# ---- parsing and the config -------------------------------------------------------------------

def test_presets_notes_and_ccs_parse_to_eight_entries():
    assert mb.parse_buttons("white-keys") == [60, 62, 64, 65, 67, 69, 71, 72]
    assert mb.parse_buttons("pads") == PADS
    assert mb.parse_buttons([36, "note:37", "CC:20", " cc:21", 40, 41, 42, 43]) == [
        36, 37, "cc:20", "cc:21", 40, 41, 42, 43]
    assert mb.lookup([36, 37, "cc:20", "cc:21", 40, 41, 42, 43]) == (
        {36: 0, 37: 1, 40: 4, 41: 5, 42: 6, 43: 7}, {20: 2, 21: 3})
    for bad, why in [("drums", "unknown preset"), (PADS[:7], "list 8"), ([*PADS[:7], 36], "twice"),
                     ([*PADS[:7], 128], "0-127"), ([*PADS[:7], "cc:123"], "channel mode"),
                     ([*PADS[:7], "pitch:3"], "not a control"), ([*PADS[:7], True], "not a control"),
                     (5, "preset")]:
        with pytest.raises(ValueError, match=why):
            mb.parse_buttons(bad)


def test_config_buttons_default_preset_and_explicit_values():
    cfg = parse_config({"processor": [{"name": "thru"}, {"name": "thru", "label": "drums",
                                                          "buttons": "pads"},
                                      {"name": "thru", "label": "knobs", "buttons": CCS},
                                      {"name": "thru", "label": "white", "buttons": "white-keys"}]})
    default, pads, knobs, white = cfg.processors
    assert default.buttons == [60, 62, 64, 65, 67, 69, 71, 72] and mb.is_default(default.buttons)
    assert pads.buttons == PADS and not mb.is_default(pads.buttons)
    assert knobs.buttons == CCS
    assert white.buttons == default.buttons and not mb.is_default(white.buttons)  # said, so kept
    assert mb.is_default(ProcessorConfig().buttons)


@pytest.mark.parametrize("raw, key, why", [
    ({"processor": [{"name": "thru", "buttons": "drums"}]}, "processor[0].buttons", "preset"),
    ({"processor": [{"name": "thru", "buttons": 36}]}, "processor[0].buttons", "preset"),
    ({"processor": [{"name": "thru", "buttons": [1, 2]}]}, "processor[0].buttons", "8"),
    ({"engine": {"switch_cc": 120}}, "engine.switch_cc", "0-119"),
    ({"engine": {"switch_cc": 20}, "processor": [{"name": "thru", "buttons": CCS}]},
     "processor[0].buttons", "switch_cc"),
    ({"engine": {"panic_cc": 27}, "processor": [{"name": "thru", "buttons": CCS}]},
     "processor[0].buttons", "panic_cc"),
])
def test_bad_buttons_name_the_key(raw, key, why):
    with pytest.raises(ConfigError) as err:
        parse_config(raw, "genie.toml")
    assert f"'{key}'" in str(err.value) and why in str(err.value) and "genie.toml" in str(err.value)


# ---- the engine ---------------------------------------------------------------------------------

def make(raw):
    cfg = parse_config(raw)
    cfg.midi.echo_window_ms = 0
    slots = []
    for pcfg in cfg.processors:
        proc = ThruProcessor()
        proc.start(Context(pcfg.label, dict(pcfg.options)))
        slots.append(Slot(pcfg, proc))
    core = EngineCore(cfg, slots)
    core.echo_window_ns = 0
    return core


def play(core, msgs, source="pad"):
    out = []
    for i, msg in enumerate(msgs):
        t = (i + 1) * MS
        core.feed(MidiEvent(t, source, tuple(msg)), t)
        out += [m for _, m in core.tick(t)]
    return out


def test_pads_preset_plays_buttons_with_velocity():
    core = make({"processor": [{"name": "thru", "buttons": "pads"}]})
    assert play(core, [(0x99, 36, 80), (0x99, 43, 33), (0x89, 36, 0), (0x99, 43, 0),
                       (0x99, 60, 90)]) == [
        (0x90, 60, 80), (0x90, 72, 33), (0x80, 60, 0), (0x80, 72, 0),
        (0x90, 60, 90)]  # 60 is no pad: a plain note, played thru


def test_cc_buttons_press_at_64_once_and_release_below():
    core = make({"processor": [{"name": "thru", "buttons": [60, "cc:21", *CCS[2:]]}]})
    knob = [(0xB0, 21, v) for v in (0, 40, 63, 64, 90, 127, 100, 64, 63, 10, 0)]
    assert play(core, knob) == [(0x90, 62, 100), (0x80, 62, 0)]  # one press, one release
    # a pad that sends 127 / 0; the default velocity, since a CC value is a switch
    assert play(core, [(0xB3, 27, 127), (0xB3, 27, 127), (0xB3, 27, 0)]) == [
        (0x90, 72, 100), (0x80, 72, 0)]
    assert play(core, [(0xB0, 1, 90)]) == [(0xB0, 1, 90)]  # the mod wheel still passes through


def test_a_lost_source_releases_its_held_cc_button_and_channels_filter():
    core = make({"processor": [{"name": "thru", "buttons": CCS, "channel": 2}]})
    assert play(core, [(0xB0, 20, 127)]) == []  # channel 1: not this processor's
    assert play(core, [(0xB1, 20, 127), (0xB1, 25, 127)]) == [(0x90, 60, 100), (0x90, 69, 100)]
    core.source_lost("pad", 10 * MS)
    assert sorted(m for _, m in core.tick(10 * MS)) == [(0x80, 60, 0), (0x80, 69, 0)]
    assert play(core, [(0xB1, 20, 0)]) == []  # its release after the loss: nothing left to end


def test_switch_cc_picks_the_processor_and_ends_the_old_ones_notes():
    core = make({"engine": {"switch_cc": 16},
                 "processor": [{"name": "thru", "label": "a"},
                               {"name": "thru", "label": "b", "out_channel": 2,
                                "options": {"notes": [40, 41, 42, 43, 44, 45, 46, 47]}}]})
    assert [s.active for s in core.slots] == [True, False]  # one plays at a time
    out = play(core, [(0x90, 62, 70), (0xB0, 16, 1), (0x90, 64, 71), (0xB0, 16, 9),
                      (0xC0, 0), (0x90, 65, 72), (0xB0, 16, 0), (0x90, 67, 73)])
    assert out == [(0x90, 62, 70),  # a plays button 1
                   (0x80, 62, 0), (0xB0, 64, 0), (0xB0, 123, 0),  # CC 16 = 1: a's notes end
                   (0x91, 42, 71),  # b plays button 2; CC 16 = 9 names no processor: ignored
                   (0x91, 43, 72),  # Program Change without switch = "program": ignored
                   (0x81, 42, 0), (0x81, 43, 0), (0xB1, 64, 0), (0xB1, 123, 0),  # back to a
                   (0x90, 67, 73)]


def test_recorded_button_of_a_cc_map_is_a_note():
    seen = []
    cfg = parse_config({"processor": [{"name": "thru", "buttons": CCS}]})
    proc = ThruProcessor()
    proc.start(Context("thru", {}))
    core = EngineCore(cfg, [Slot(cfg.processors[0], proc)],
                      record=lambda d, t, port, msg: seen.append((d, msg)))
    core.feed(ButtonEvent(0, "keyboard", 3, True), 0)
    assert seen[0] == ("in", (0x90, 63, 100))


# ---- the learned map ----------------------------------------------------------------------------

def test_learned_midi_map_is_kept_beside_gamepad_maps(tmp_path, caplog):
    path = tmp_path / "state" / "buttons.json"
    pad = ["BTN_SOUTH"] * 8
    save_learned_midi("nanoPAD:pads", [36, "cc:20", *PADS[2:]], path)
    assert load_learned(path) == {}  # a MIDI map alone is no damaged gamepad file
    save_learned("Pad A", pad, path)
    save_learned_midi("other:port", CCS, path)
    assert load_learned(path) == {"Pad A": pad}
    assert load_learned_midi(path) == ("other:port", CCS)
    raw = json.loads(path.read_text())
    assert raw["midi"] == {"port": "other:port", "buttons": CCS} and raw["version"] == 1
    save_learned_midi("p", PADS, path)
    assert json.loads(path.read_text())["midi"]["buttons"] == [f"note:{n}" for n in PADS]
    with pytest.raises(ValueError):
        save_learned_midi("p", PADS[:7], path)
    assert load_learned_midi(tmp_path / "none.json") is None
    raw["midi"] = {"port": "p", "buttons": ["cc:20"]}
    path.write_text(json.dumps(raw))
    with caplog.at_level(logging.WARNING, logger="genie.learn"):
        assert load_learned_midi(path) is None
        assert load_learned(path) == {"Pad A": pad}
    assert "midi map is damaged" in caplog.text


def test_a_learned_map_replaces_only_default_buttons():
    raw = {"processor": [{"name": "thru"}, {"name": "thru", "label": "set", "buttons": "white-keys"}]}
    assert mb.use_learned(raw["processor"], CCS) == ["thru"]  # the raw tables, before the check
    cfg = parse_config(raw)
    assert cfg.processors[0].buttons == CCS and not mb.is_default(cfg.processors[0].buttons)
    assert cfg.processors[1].buttons == [60, 62, 64, 65, 67, 69, 71, 72]


class ListPort:
    """Stands in for ``MidiInput``: ``drain`` hands out what was queued."""

    name = "fake:port"

    def __init__(self, msgs):
        self.msgs = [(tuple(m), 0.0) for m in msgs]

    def drain(self, limit):
        out, self.msgs = self.msgs[:limit], self.msgs[limit:]
        return out


def test_learning_notes_and_ccs_one_at_a_time():
    msgs = [(0x99, 36, 90), (0x99, 38, 90), (0x89, 38, 0), (0x89, 36, 0),  # 38: chord, ignored
            (0x99, 36, 50), (0x89, 36, 0),  # already button 0
            (0xB0, 20, 10), (0xB0, 20, 80), (0xB0, 20, 127), (0xB0, 20, 0),  # one CC press
            (0xF8,), (0xC0, 3), (0xB0, 123, 0),  # not controls
            *[m for n in (37, 38, 39, 40, 41) for m in ((0x90, n, 64), (0x90, n, 0))],
            (0xB0, 21, 127)]
    said = []
    port = ListPort([*msgs, (0xB0, 21, 0)])
    assert learn_midi_buttons(port, said.append, timeout_s=5) == [36, "cc:20", 37, 38, 39, 40,
                                                                   41, "cc:21"]
    assert said[0].startswith("Press the lowest button (button 0) on fake:port")
    assert "  button 1: CC 20" in said and "  button 2: note 37 (C#2)" in said
    assert any("already button 0" in s for s in said)
    with pytest.raises(UserError, match="no new button within"):
        learn_midi_buttons(ListPort(msgs[:4]), said.append, timeout_s=0.05)


def test_learn_midi_names_a_missing_port_in_one_line():
    r = CliRunner().invoke(learn, ["--midi", "no such port*", "--api", "jack", "--timeout", "1"])
    assert r.exit_code != 0 and "\n" not in str(r.exception).strip()


# ---- through real JACK ports --------------------------------------------------------------------

@pytest.mark.jack
def test_learn_midi_through_a_real_port_then_genie_run_plays_the_map(rig, tmp_path):
    from jack_helpers import config_text, genie_cmd

    from daemon.io.child import start_child, stop_child
    from daemon.io.jack import wait_connected
    from daemon.rigs.loopback import GenieProcess

    state = {"STATE_DIRECTORY": str(tmp_path / "state")}
    ctl = rig.client(target_in=None, target_out=None)  # the controller: its own output port
    proc, lines = start_child(genie_cmd("learn", "--midi", ctl.play_port, "--api", "jack",
                                        "--timeout", "20"),
                              "Press the lowest", 30, "genie learn", {**rig.env, **state})
    try:
        # learn connected its input to our port; what we send before JACK runs that graph is lost
        assert wait_connected(ctl.play_port), "\n".join(lines)
        controls = [36, "cc:20", 38, "cc:21", 40, 41, 42, 43]
        for c in controls:
            down, up = (((0xB0, int(c[3:]), 127), (0xB0, int(c[3:]), 0)) if isinstance(c, str)
                        else ((0x99, c, 100), (0x89, c, 0)))
            ctl.send(down)
            ctl.send(up)
        assert proc.wait(timeout=20) == 0, "\n".join(lines)
    finally:
        stop_child(proc)
    assert load_learned_midi(tmp_path / "state" / "buttons.json") == (ctl.play_port, controls)
    assert any("Saved the MIDI button map" in line for line in lines)

    # genie run plays it where the config leaves buttons unset; a set value wins
    two = config_text('name = "thru"\n\n[[processor]]\nname = "thru"\nlabel = "keys"\n'
                      'buttons = "white-keys"\nout_channel = 2\n', midi="echo_window_ms = 0")
    g = GenieProcess([], env={**rig.env, **state}, config=str(rig.write_config(two)))
    rig.daemons.append(g)
    g.start()
    assert any("the map learned on" in line and "for thru" in line for line in g.log_lines)
    c = rig.client()
    for sent, got in [((0x99, 36, 90), [(0x90, 60, 90), (0x91, 36, 90)]),  # button 0 / a note
                      ((0xB0, 21, 127), [(0x90, 65, 100)]),  # learned CC -> button 3
                      ((0x90, 62, 70), [(0x90, 62, 70), (0x91, 62, 70)])]:  # 62: keys' button 1
        c.send(sent)
        assert sorted(c.take(len(got))) == sorted(got), f"sent {sent}"
    assert g.stop(signal.SIGTERM) == 0


# ---- a whole keyboard folded onto the 8 buttons ------------------------------------------------


def test_a_folded_keyboard_keeps_the_contour_and_each_key_presses_on_its_own():
    from daemon.config import parse_config
    from daemon.core import EngineCore, Slot
    from daemon.events import ButtonEvent, MidiEvent
    from daemon.processor import BaseProcessor, Context

    class Presses(BaseProcessor):
        name = "presses"

        def start(self, ctx):
            super().start(ctx)
            self.events = []

        def on_event(self, ev):
            self.events.append(ev)
            return ()

    fold = mb.parse_buttons("range:48-72")  # a 25-key controller
    buttons = [fold.button(p) for p in range(40, 85)]
    assert buttons == sorted(buttons) and buttons[0] == 0 and buttons[-1] == 7  # contour kept
    assert len(set(fold.button(p) for p in range(48, 73))) == 8  # every button reachable
    assert mb.parse_buttons("keyboard").button(21) == 0 and mb.parse_buttons("keyboard").button(108) == 7
    for bad in ("range:72-48", "range:60-63", "range:x-y"):
        with pytest.raises(ValueError, match="range"):
            mb.parse_buttons(bad)

    cfg = parse_config({"processor": [{"name": "thru", "buttons": "range:48-72"}]})
    proc = Presses()
    proc.start(Context("thru", {}))
    core = EngineCore(cfg, [Slot(cfg.processors[0], proc)])
    for t, msg in enumerate([(0x90, 48, 90), (0x90, 49, 90), (0x80, 48, 0), (0x80, 49, 0)]):
        core.feed(MidiEvent(t, "kbd", msg), t)
    got = [(e.source, e.button, e.pressed) for e in proc.events if isinstance(e, ButtonEvent)]
    assert got == [("kbd#48", 0, True), ("kbd#49", 0, True), ("kbd#48", 0, False), ("kbd#49", 0, False)]
    core.feed(MidiEvent(10, "kbd", (0x90, 70, 90)), 10)
    core.source_lost("kbd", 11)  # the keyboard unplugged with a key down: released
    assert (proc.events[-1].source, proc.events[-1].pressed) == ("kbd#70", False)


def test_piano_genie_plays_from_a_folded_keyboard():
    pytest.importorskip("torch")
    from offline_helpers import offline_core

    from daemon.events import MidiEvent, is_note_on
    from pianogenie.processor import PianoGenieProcessor

    core, clock, sent = offline_core({"processor": [{"name": "pianogenie", "buttons": "keyboard"}]},
                                     {"pianogenie": PianoGenieProcessor})
    keys = [36, 43, 50, 57, 64, 71, 78, 85, 92, 99]
    for i, k in enumerate(keys):
        t = i * 200_000_000
        clock[0] = t
        core.feed(MidiEvent(t, "kbd", (0x90, k, 90)), t)
        core.tick(t)
        core.feed(MidiEvent(t + 100_000_000, "kbd", (0x80, k, 0)), t + 100_000_000)
        core.tick(t + 100_000_000)
    played = [m[1] for _, m in sent if is_note_on(m)]
    assert len(played) == len(keys)  # every key of a 61-key span plays a note
