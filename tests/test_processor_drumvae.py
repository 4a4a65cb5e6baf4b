"""The live ``drumvae`` processor on the processor contract, offline on a simulated clock: in time
with a DAW clock at 120 and 93 BPM (hits on the grid plus the model's offsets), Start/Stop/SPP and
a lost clock, its own clock, taps, fills, morphing and humanize. A tiny untrained model is
exported for the tests (the shipped weights are used by the end-to-end test); what is checked
is the timing and the contract, not the musicality."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from offline_helpers import MS, clock_at, left_sounding, offline_core

from daemon.events import CLOCK, NOTE_ON, SONG_POSITION, STOP, ButtonEvent, MidiEvent, is_note_on
from daemon.offline import _drive
from daemon.processor import ProcessorError
from drumvae.export import export_model
from drumvae.kit import GM_OUTPUT_PITCHES
from drumvae.model import DrumVAE, DrumVAEConfig
from drumvae.processor import STEPS, TICKS_PER_STEP, DrumVAEProcessor

SEG_TICKS = STEPS * TICKS_PER_STEP


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    model = DrumVAE(DrumVAEConfig(enc_hidden=16, z_dim=8, dec_hidden=32, num_styles=2))
    with torch.no_grad():  # a bias that makes hits likely, so the patterns are busy
        model.decoder.out.bias[:9] += 1.0
    out = tmp_path_factory.mktemp("drumvae")
    export_model(model, ["rock", "funk"], out)
    return out / "drumvae.pt"


class Logged(DrumVAEProcessor):
    """Remembers every hit it put on the schedule: (tick with offset, pitch, velocity)."""

    def start(self, ctx):
        self.placed = []
        super().start(ctx)

    def _add(self, seg, p, from_tick, window=None):
        schedule = self.schedule
        add = schedule.add

        def logged(tick, msg, voice=""):
            if is_note_on(msg):
                self.placed.append((tick, msg[1], msg[2]))
            add(tick, msg, voice)

        schedule.add = logged
        try:
            super()._add(seg, p, from_tick, window)
        finally:
            del schedule.add


def drums(weights, clock=True, slot=None, **options):
    raw = {"processor": [{"name": "drumvae", "clock": clock, "buttons": "white-keys", **(slot or {}),
                          "options": {"weights": str(weights), **options}}]}
    return offline_core(raw, {"drumvae": Logged})


@pytest.mark.parametrize("bpm", [120, 93])
def test_hits_land_on_the_daws_grid_plus_the_models_offsets(weights, bpm):
    core, clock, sent = drums(weights)
    tick_ns = 60e9 / bpm / 24
    start = round(24 * tick_ns)
    events = clock_at(bpm, start, SEG_TICKS * 3, preroll=24)  # a beat of clock, Start, 6 bars
    stop_ns = events[-1].time_ns + round(tick_ns / 2)
    _drive(core, events + [MidiEvent(stop_ns, "daw", (STOP,))], clock)
    proc = core.slots[0].proc
    played = [(t, m) for t, m in sent if is_note_on(m)]
    assert played and all(m[0] == NOTE_ON | 9 for _, m in played)  # channel 10
    assert {m[1] for _, m in played} <= set(GM_OUTPUT_PITCHES)
    assert proc.decodes >= 2  # segments decoded ahead, on the worker
    # (an early hit on the very first step has nowhere earlier to go: it plays at the Start)
    expected = sorted((max(start + round(tick * tick_ns), start), pitch, vel)
                      for tick, pitch, vel in proc.placed if start + round(tick * tick_ns) < stop_ns)
    got = sorted((t, m[1], m[2]) for t, m in played)
    assert len(got) == len(expected)
    for (t, pitch, vel), (te, pe, ve) in zip(got, expected):
        assert (pitch, vel) == (pe, ve)
        assert abs(t - te) < 0.01 * MS  # simulated: exact, offsets included
    offs = [tick % TICKS_PER_STEP for tick, _, _ in proc.placed]
    assert any(0 < o < TICKS_PER_STEP for o in offs)  # micro-timing: off the grid
    assert left_sounding(sent) == set()


def test_start_plays_from_the_downbeat_stop_and_a_lost_clock_end_it(weights):
    core, clock, sent = drums(weights, slot={"clock_lost_ms": 200.0})
    tick_ns = 60e9 / 120 / 24
    events = clock_at(120, 0, 100)
    stop_ns = events[-1].time_ns + MS
    events.append(MidiEvent(stop_ns, "daw", (STOP,)))
    _drive(core, events, clock)
    first = min(t for t, m in sent if is_note_on(m))
    assert first <= TICKS_PER_STEP * tick_ns / 2  # the downbeat's hits (or an early one)
    assert not [t for t, m in sent if is_note_on(m) and t > stop_ns]
    assert left_sounding(sent) == set()
    # a DAW that dies: no Stop, the clock goes silent
    core, clock, sent = drums(weights, slot={"clock_lost_ms": 200.0})
    events = clock_at(120, 0, 150)
    _drive(core, events, clock)
    last_clock = events[-1].time_ns
    assert not [t for t, m in sent if is_note_on(m) and t > last_clock + 200 * MS]
    assert left_sounding(sent) == set()


def test_song_position_resumes_on_the_grid_of_the_new_bar(weights):
    core, clock, sent = drums(weights)
    tick_ns = round(60e9 / 120 / 24)
    events = clock_at(120, 0, 40) + [MidiEvent(40 * tick_ns, "daw", (STOP,)),
                                       MidiEvent(41 * tick_ns, "daw", (SONG_POSITION, 64, 0))]  # bar 4
    from daemon.events import CONTINUE
    resume = 50 * tick_ns
    events += [MidiEvent(resume, "daw", (CONTINUE,))]
    events += [MidiEvent(resume + i * tick_ns, "daw", (CLOCK,)) for i in range(60)]
    _drive(core, events, clock)
    proc = core.slots[0].proc
    after = [tick for tick, _, _ in proc.placed if tick >= 64 * TICKS_PER_STEP - 3]
    assert after and min(after) >= 64 * TICKS_PER_STEP - 3  # placed from bar 4's grid on
    assert left_sounding(sent) == set()


def test_own_clock_plays_at_its_tempo_and_sends_clock(weights):
    core, clock, sent = drums(weights, clock=False, bpm=100.0, start=True, send_clock=True)
    _drive(core, [MidiEvent(3_000 * MS, "kbd", (0x90, 72, 100)),  # button 7: stop
                  MidiEvent(3_050 * MS, "kbd", (0x80, 72, 0))], clock)
    clocks = [t for t, m in sent if m == (CLOCK,)]
    gaps = np.diff(clocks)
    assert len(clocks) > 100 and abs(gaps.mean() - 60e9 / 100 / 24) < 1000
    assert sent[0][1] == (0xFA,) and (0xFC,) in [m for _, m in sent]
    assert [t for t, m in sent if is_note_on(m)]
    assert not [t for t, m in sent if is_note_on(m) and t > 3_000 * MS]
    assert left_sounding(sent) == set()


def test_taps_become_the_groove_from_the_next_bar(weights):
    core, clock, sent = drums(weights)
    tick_ns = 60e9 / 120 / 24
    events = clock_at(120, 0, SEG_TICKS * 3)
    taps = [round((96 + 12 * i) * tick_ns) for i in range(8)]  # bar 1: eighth notes
    for t in taps:
        events += [MidiEvent(t + 2 * MS, "kbd", (0x90, 60, 90)), MidiEvent(t + 40 * MS, "kbd", (0x80, 60, 0))]
    proc_z = []
    _drive(core, sorted(events, key=lambda e: e.time_ns), clock)
    proc = core.slots[0].proc
    proc_z.append(proc.z)
    assert proc.decodes >= 3
    assert left_sounding(sent) == set()
    core2, clock2, _ = drums(weights)
    _drive(core2, clock_at(120, 0, SEG_TICKS * 3), clock2)
    assert not np.allclose(core2.slots[0].proc.z, proc.z)  # the taps made another groove


def test_fill_keep_and_morph_controls_change_what_is_decoded(weights):
    core, clock, sent = drums(weights)
    tick_ns = 60e9 / 120 / 24
    ev = clock_at(120, 0, SEG_TICKS * 2)
    at = round(10 * tick_ns)
    ev += [MidiEvent(at, "kbd", (0x90, 69, 90)), MidiEvent(at + MS, "kbd", (0x80, 69, 0)),  # fill
           MidiEvent(at + 2 * MS, "kbd", (0x90, 71, 90)), MidiEvent(at + 3 * MS, "kbd", (0x80, 71, 0)),  # keep A
           MidiEvent(at + 4 * MS, "kbd", (0x90, 67, 90)), MidiEvent(at + 5 * MS, "kbd", (0x80, 67, 0)),  # new
           MidiEvent(at + 6 * MS, "kbd", (0x90, 71, 90)), MidiEvent(at + 7 * MS, "kbd", (0x80, 71, 0)),  # keep B
           MidiEvent(at + 8 * MS, "kbd", (0xB0, 21, 64))]  # morph halfway
    _drive(core, sorted(ev, key=lambda e: e.time_ns), clock)
    proc = core.slots[0].proc
    assert proc.kept[0] is not None and proc.kept[1] is not None and not np.allclose(*proc.kept)
    assert proc.morph == pytest.approx(64 / 127)
    assert left_sounding(sent) == set()


def test_humanize_gives_the_heard_loop_back_with_the_models_feel(weights):
    core, clock, sent = drums(weights, mode="humanize")
    core.slots[0].note_buttons = {}  # buttons = "none"
    tick_ns = 60e9 / 120 / 24
    events = clock_at(120, 0, SEG_TICKS * 2 + 10, preroll=24)  # the DAW's clock runs before Start
    for step in range(0, STEPS, 4):  # kicks on the beats, hats between
        t = round(step * TICKS_PER_STEP * tick_ns) + MS
        events += [MidiEvent(t, "daw", (0x99, 36, 100)), MidiEvent(t + 10 * MS, "daw", (0x89, 36, 0)),
                   MidiEvent(t + round(12 * tick_ns), "daw", (0x99, 42, 80))]
    _drive(core, sorted(events, key=lambda e: e.time_ns), clock)
    played = [(t, m[1]) for t, m in sent if is_note_on(m) and t >= SEG_TICKS * tick_ns - 4 * tick_ns]
    assert sorted({p for _, p in played}) == [36, 42]
    assert len([p for _, p in played if p == 36]) == 8 and len([p for _, p in played if p == 42]) == 8
    assert left_sounding(sent) == set()


def test_bad_options_are_one_line_errors(weights):
    from daemon.processor import Context

    for options, why in (({"mode": "loud"}, "mode"), ({"style": "polka"}, "style"),
                         ({"pitches": [36, 38]}, "pitches")):
        with pytest.raises(ProcessorError, match=why):
            DrumVAEProcessor().start(Context("drumvae", {"weights": str(weights), **options}))
    with pytest.raises(Exception, match="not found"):
        DrumVAEProcessor().start(Context("drumvae", {"weights": "/nonexistent/drumvae.pt"}))


def test_press_to_note_contract_holds_without_an_engine(weights):
    """A processor started without a host still answers (nothing to schedule, no crash)."""
    from daemon.processor import Context

    proc = DrumVAEProcessor()
    proc.start(Context("drumvae", {"weights": str(weights)}))
    assert list(proc.on_event(ButtonEvent(0, "kbd", 4, True))) == []


def _with_spread(weights, tmp_path, tables):
    """A copy of the test weights with a spread file whose velocity tables play one fixed velocity
    per transform (every decoded velocity maps to v), so what was applied shows in every note."""
    import shutil

    from drumvae import spread

    for name in ("drumvae.pt", "drumvae.json"):
        shutil.copy(weights.with_name(name), tmp_path / name)
    out = {}
    for transform, v in tables.items():
        t = spread.Spread.identity()
        t.decoded[0] = np.linspace(-2, 2, spread.KNOTS)
        t.real[0] = v
        out[transform] = t
    spread.write(tmp_path / spread.SPREAD_FILE, out, "test")
    return tmp_path / "drumvae.pt"


def test_grooves_and_humanize_play_with_their_transforms_spread(weights, tmp_path):
    w = _with_spread(weights, tmp_path, {"reconstruction": 0.75, "humanize": 0.25, "tap2drum": 0.5})
    core, clock, sent = drums(w)
    _drive(core, clock_at(120, 0, SEG_TICKS + 4), clock)
    assert {m[2] for _, m in sent if is_note_on(m)} == {round(0.75 * 127)}  # a new groove: reconstruction's

    core, clock, sent = drums(w, mode="humanize")
    core.slots[0].note_buttons = {}
    tick_ns = 60e9 / 120 / 24
    events = clock_at(120, 0, SEG_TICKS * 2 + 10, preroll=24)
    for step in range(0, STEPS, 4):
        t = round(step * TICKS_PER_STEP * tick_ns) + MS
        events += [MidiEvent(t, "daw", (0x99, 36, 100)), MidiEvent(t + 10 * MS, "daw", (0x89, 36, 0))]
    _drive(core, sorted(events, key=lambda e: e.time_ns), clock)
    played = [m for _, m in sent if is_note_on(m)]
    assert len(played) == 8 and {m[2] for m in played} == {round(0.25 * 127)}  # the hits heard, humanize's
    assert left_sounding(sent) == set()

    core, clock, sent = drums(w, spread=False)  # as decoded
    _drive(core, clock_at(120, 0, SEG_TICKS + 4), clock)
    assert len({m[2] for _, m in sent if is_note_on(m)}) > 1


def test_a_corrupt_spread_file_is_a_one_line_error(weights, tmp_path):
    from daemon.processor import Context
    from drumvae import spread

    w = _with_spread(weights, tmp_path, {"reconstruction": 0.5})
    (tmp_path / spread.SPREAD_FILE).write_text('{"transforms": {"reconstruction": {"velocity": 3}}}')
    with pytest.raises(ProcessorError, match="unreadable"):
        DrumVAEProcessor().start(Context("drumvae", {"weights": str(w)}))
