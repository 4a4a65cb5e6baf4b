"""Nothing breaks the gig (issue 11), the parts in the engine: a button held across a processor
switch plays again when switched back; panic and start-up clear every channel a processor may
use, also before any note was played."""

from __future__ import annotations

import pytest
from offline_helpers import MS, offline_core

from daemon.events import CONTROL_CHANGE, NOTE_OFF, NOTE_ON, MidiEvent, is_note_on


def test_a_button_held_across_a_switch_plays_when_switched_back():
    pytest.importorskip("torch")
    from daemon.processors.thru import ThruProcessor
    from pianogenie.processor import PianoGenieProcessor

    raw = {"engine": {"switch": "program"},
           "processor": [{"name": "pianogenie", "label": "genie"}, {"name": "thru", "label": "thru"}]}
    core, clock, sent = offline_core(raw, {"genie": PianoGenieProcessor, "thru": ThruProcessor})

    def at(ms, msg):
        core.feed(MidiEvent(ms * MS, "kbd", msg), ms * MS)
        core.tick(ms * MS)

    at(0, (NOTE_ON, 60, 90))  # button 0 down on Piano Genie ...
    at(100, (0xC0, 1))  # ... switch to thru while it is held ...
    at(200, (NOTE_OFF, 60, 0))  # ... released on the other processor
    at(300, (0xC0, 0))  # back to Piano Genie
    at(400, (NOTE_ON, 60, 90))  # the same button again
    played = [t for t, m in sent if is_note_on(m) and m[0] & 0x0F == 0]
    assert [round(t / MS) for t in played] == [0, 400]


def test_panic_clears_the_channels_processors_use_before_any_note():
    from daemon.processor import BaseProcessor

    class Drums(BaseProcessor):
        name = "drums"

        def output_channels(self):
            return (10,)

    core, clock, sent = offline_core(
        {"processor": [{"name": "thru", "out_channel": 3}, {"name": "drums", "output": "Genie drums"}]},
        {"thru": __import__("daemon.processors.thru", fromlist=["x"]).ThruProcessor, "drums": Drums})
    core.panic(0)
    cleared = {(m[0] & 0x0F, m[1]) for _, m in sent if m[0] & 0xF0 == CONTROL_CHANGE}
    assert cleared == {(2, 64), (2, 123), (0, 64), (0, 123), (9, 64), (9, 123)}
    assert {port for port, _ in core.clear_outputs()} == {"Genie out", "Genie drums"}
    assert len(core.clear_outputs()) == 6


@pytest.mark.jack
def test_a_restarted_genie_clears_its_channels_and_panic_works_before_any_note(rig):
    import os
    import subprocess

    from jack_helpers import config_text, genie_cmd

    c = rig.client(target_in=None, target_out=None)  # a synth that was left sounding
    listen = f"{c.name} listen:listen"
    g = rig.genie(config_text('name = "thru"\nout_channel = 4', midi="echo_window_ms = 0"), "-c", listen)
    first = c.take(2, 5.0)
    assert first == [(CONTROL_CHANGE | 3, 64, 0), (CONTROL_CHANGE | 3, 123, 0)]  # at start-up
    done = subprocess.run(genie_cmd("panic", config=g.config), env={**os.environ, **rig.env},
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert c.take(2, 5.0) == [(CONTROL_CHANGE | 3, 64, 0), (CONTROL_CHANGE | 3, 123, 0)]
