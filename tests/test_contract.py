"""The contract for processors that think ahead (DESIGN.md): streaming, cancellable jobs on a
worker per processor, retract, being told why notes ended, the transport, ``buttons = "none"``
and chains, shown with the test processors ``bars`` (clocked, like drums) and ``answerer``
(streaming, like a transformer) from tests/plugins, offline on a simulated clock and live on the
engine's real worker threads."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import mido
import pytest

import daemon.session
from daemon.config import ConfigError, parse_config
from daemon.core import EngineCore, HostRef, Slot
from daemon.events import (CLOCK, CONTINUE, NOTE_OFF, NOTE_ON, SONG_POSITION, STOP, Counters,
                           MidiEvent, Out, is_note_off, is_note_on)
from daemon.inputqueue import InputQueue
from daemon.offline import _drive, clock_events, play_file
from daemon.processor import BaseProcessor, Context, Ending
from daemon.transport import Transport
from daemon.workers import ThreadedWorkers

from offline_helpers import MS, clock_at, left_sounding, offline_core, ons  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent / "plugins"))
from genie_testplugins.answerer import AnswererProcessor  # noqa: E402
from genie_testplugins.bars import BarsProcessor  # noqa: E402

PLUGINS = {"bars": BarsProcessor, "answerer": AnswererProcessor}


def offline(raw: dict, procs: dict | None = None):
    return offline_core(raw, {**PLUGINS, **(procs or {})})


# ---- the transport ---------------------------------------------------------------------------


def test_transport_counts_clocks_estimates_tempo_and_follows_spp_stop_continue_and_loss():
    t = Transport(beats_per_bar=4, lost_after_ns=300 * MS)
    evs = []
    for ev in clock_at(93, 0, 200):
        evs += t.feed(ev.message, ev.time_ns)
    assert evs[0].kind == "start" and [e.tick for e in evs[1:4]] == [0, 1, 2]
    assert t.tempo_bpm == pytest.approx(93, abs=0.01)
    last = evs[-1]
    assert last.kind == "tick" and last.tick == 199 and last.bar == 2 and last.beat_in_bar == 0
    # predicted times continue the grid
    assert t.time_of(240) == pytest.approx(240 * 60e9 / 93 / 24, abs=1000)
    stop = t.feed((STOP,), 3_000 * MS)
    assert [e.kind for e in stop] == ["stop"] and not t.running
    assert t.feed((CLOCK,), 3_010 * MS) == []  # the clock goes on; the position does not
    pos = t.feed((SONG_POSITION, 16 % 128, 16 // 128), 3_020 * MS)  # bar 1 (16 sixteenths)
    assert pos[0].kind == "position" and pos[0].tick == 96 and pos[0].bar == 1
    cont = t.feed((CONTINUE,), 3_030 * MS)
    assert cont[0].kind == "continue" and cont[0].tick == 96
    tick = t.feed((CLOCK,), 3_040 * MS)
    assert tick[0].tick == 96 and tick[0].on_beat
    assert t.check(3_040 * MS + 299 * MS) == []
    lost = t.check(3_040 * MS + 300 * MS)
    assert [e.kind for e in lost] == ["lost"] and not t.running and t.tempo_bpm is None


def test_clock_and_transport_bytes_survive_a_flood():
    q = InputQueue(16, Counters())
    for i in range(100):
        q.push(MidiEvent(i, "kbd", (0x90, 60, 100)))
        q.push(MidiEvent(i, "daw", (CLOCK,)))
    q.push(MidiEvent(200, "daw", (STOP,)))
    kept = q.pop_batch(1000)
    assert sum(e.message == (CLOCK,) for e in kept) == 100 and kept[-1].message == (STOP,)


# ---- a clocked processor, offline ------------------------------------------------------------


@pytest.mark.parametrize("bpm", [120, 93])
def test_clocked_processor_plays_bars_ahead_on_the_beat(bpm):
    core, clock, sent = offline({"processor": [{"name": "bars", "clock": True}]})
    beat_ns = 60e9 / bpm
    stop = MidiEvent(round(12 * beat_ns) - MS, "daw", (STOP,))  # just before bar 3
    _drive(core, clock_at(bpm, 0, 24 * 12) + [stop], clock)  # 3 bars of 4/4
    got = ons(sent)
    assert len(got) == 12
    for k, (t, pitch) in enumerate(got):
        assert abs(t - k * beat_ns) < 0.01 * MS, (k, t)  # on the beat (simulated: exact)
        assert pitch == (36 if k % 4 == 0 else 42)
    bars = core.slots[0].proc
    assert bars.jobs == [] and len(bars.schedule) == 0  # bar 3, decided ahead, forgotten at Stop
    assert left_sounding(sent) == set()


def test_clocked_processor_stops_on_stop_and_resumes_at_the_song_position():
    core, clock, sent = offline({"processor": [{"name": "bars", "clock": True}]})
    tick = 60e9 / 120 / 24
    events = clock_at(120, 0, 24 * 2 + 6)  # into beat 3 ...
    stop_ns = round((24 * 2 + 6) * tick)
    events += [MidiEvent(stop_ns, "daw", (STOP,))]  # ... stop mid-beat, with beat 3's note sounding
    events += [MidiEvent(stop_ns + round(i * tick), "daw", (CLOCK,)) for i in range(1, 48)]
    spp_ns = stop_ns + 48 * round(tick)
    events += [MidiEvent(spp_ns, "daw", (SONG_POSITION, 32, 0)),  # 32 sixteenths: bar 2
               MidiEvent(spp_ns + 1, "daw", (CONTINUE,))]
    events += [MidiEvent(spp_ns + round(i * tick), "daw", (CLOCK,)) for i in range(1, 30)]
    _drive(core, events, clock)
    before = [(t, p) for t, p in ons(sent) if t < stop_ns]
    after_stop = [(t, p) for t, p in ons(sent) if stop_ns <= t <= spp_ns]
    resumed = [(t, p) for t, p in ons(sent) if t > spp_ns]
    assert [p for _, p in before] == [36, 42, 42]
    assert after_stop == []  # the next bar, planned ahead, was retracted
    offs = [t for t, m in sent if is_note_off(m) and m[1] == 42 and t >= stop_ns]
    assert offs and offs[0] == stop_ns  # beat 3's note ended at the Stop, not later
    assert resumed[0][1] == 36  # bar 2's downbeat, at the first clock after Continue
    assert resumed[0][0] == spp_ns + round(tick)
    assert left_sounding(sent) == set()


def test_a_lost_clock_ends_the_groove():
    core, clock, sent = offline({"processor": [{"name": "bars", "clock": True, "clock_lost_ms": 200}]})
    events = clock_at(120, 0, 24 * 3 + 2)  # the DAW dies early in bar 1 ...
    _drive(core, events, clock)
    last_clock = events[-1].time_ns
    played = ons(sent)
    assert all(t <= last_clock + 200 * MS for t, _ in played)
    assert len(played) == 4  # bar 0 only: bar 1, planned ahead, never played
    assert left_sounding(sent) == set()
    bars = core.slots[0].proc
    assert not bars.planned


def test_genie_play_drives_the_transport_from_the_tempo_map(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(daemon.session, "load", lambda name: PLUGINS[name])
    src = tmp_path / "in.mid"
    mid = mido.MidiFile(type=0, ticks_per_beat=480)
    mid.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=round(60e6 / 93)),
                                      mido.Message("note_on", note=60, velocity=80, time=0),
                                      mido.Message("note_off", note=60, time=480 * 7)]))
    mid.save(src)
    cfg = parse_config({"processor": [{"name": "bars", "clock": True}]})
    times = []
    for i, bpm in enumerate((None, 120.0)):
        out = tmp_path / f"out{i}.mid"
        play_file(cfg, src, out, bpm=bpm)
        played = mido.MidiFile(out)
        t, got = 0.0, []
        for msg in played:
            t += msg.time
            if msg.type == "note_on" and msg.velocity and msg.note in (36, 42):
                got.append(t)
        times.append(got)
    for got, bpm in zip(times, (93, 120)):
        assert len(got) >= 8
        for k, t in enumerate(got[:8]):
            assert t == pytest.approx(k * 60 / bpm, abs=0.002)
    a = tmp_path / "again.mid"
    play_file(cfg, src, a)
    assert a.read_bytes() == (tmp_path / "out0.mid").read_bytes()  # deterministic


def test_clock_events_follow_tempo_changes(tmp_path: Path):
    src = tmp_path / "t.mid"
    mid = mido.MidiFile(type=0, ticks_per_beat=480)
    mid.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500_000),
                                      mido.MetaMessage("set_tempo", tempo=1_000_000, time=480 * 2),
                                      mido.Message("note_on", note=60, time=480 * 2)]))
    mid.save(src)
    evs = [e for e in clock_events(src, 4 * 10**9) if e.message == (CLOCK,)]
    gaps = [b.time_ns - a.time_ns for a, b in zip(evs, evs[1:])]
    assert gaps[0] == pytest.approx(500e6 / 24, abs=2) and gaps[60] == pytest.approx(1e9 / 24, abs=2)


# ---- a streaming processor -------------------------------------------------------------------


def phrase(start_ms: int, pitches, source="kbd") -> list[MidiEvent]:
    out = []
    for i, p in enumerate(pitches):
        out += [MidiEvent((start_ms + i * 100) * MS, source, (NOTE_ON, p, 90)),
                MidiEvent((start_ms + i * 100 + 80) * MS, source, (NOTE_OFF, p, 0))]
    return out


def test_an_answer_streams_then_stops_when_the_musician_plays_again_offline():
    raw = {"processor": [{"name": "answerer", "buttons": "none",
                          "options": {"compute_ms": 0.0, "spacing_ms": 100.0}}]}
    core, clock, sent = offline(raw)
    # 8 notes heard; silence; the answer (8 notes, 100 ms apart) starts 300 + 30 ms after the
    # last release (at 780 ms), so its notes are due from about 1,110 ms; at 1,600 ms the
    # musician plays again
    heard = phrase(0, [60, 62, 64, 65, 67, 69, 71, 72])
    answer_from = (700 + 80 + 300) * MS
    again = phrase(1_600, [48])
    _drive(core, heard + again, clock)
    answer = [(t, p) for t, p in ons(sent) if p >= 72 and t >= answer_from]
    cut_ns = again[0].time_ns
    assert [p for _, p in answer] == [72, 74, 76, 77, 79]  # five of eight played ...
    assert all(t < cut_ns for t, _ in answer)  # ... and nothing after the cut
    offs_at_cut = [m[1] for t, m in sent if t == cut_ns and is_note_off(m)]
    assert offs_at_cut == [79]  # the sounding answer note ended at the new note, not later
    assert core.slots[0].proc.cancelled == 1
    assert left_sounding(sent) == set()


def test_an_answer_starts_before_its_job_ends_and_stops_within_one_tick_live():
    """On the engine's real worker threads: each answer note takes 40 ms to 'compute'."""
    cfg = parse_config({"processor": [{"name": "answerer", "buttons": "none",
                                       "options": {"compute_ms": 40.0, "silence_ms": 50.0,
                                                   "spacing_ms": 60.0, "lead_ms": 10.0}}]})
    cfg.midi.send_ahead_ms = 0
    host, wake = HostRef(), threading.Event()
    proc = AnswererProcessor()
    proc.start(Context("answerer", dict(cfg.processors[0].options), now_ns=time.perf_counter_ns, host=host))
    workers = ThreadedWorkers(wake.set)
    core = EngineCore(cfg, [Slot(cfg.processors[0], proc)], workers=workers, host=host)
    core.echo_window_ns = 0
    sent = []

    def run_until(pred, timeout_s=5.0):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            sent.extend((time.perf_counter_ns(), m) for _, m in core.tick(time.perf_counter_ns()))
            if pred():
                return True
            wake.wait(0.002)
            wake.clear()
        return False

    t0 = time.perf_counter_ns()
    for i, p in enumerate([60, 64, 67, 72, 76, 79]):
        core.feed(MidiEvent(t0, "kbd", (NOTE_ON, p, 90)), t0)
        core.feed(MidiEvent(t0, "kbd", (NOTE_OFF, p, 0)), t0)
    try:
        assert run_until(lambda: any(is_note_on(m) for _, m in sent))
        assert proc.answer is not None and not proc.answer.done()  # streaming: the job goes on
        now = time.perf_counter_ns()
        core.feed(MidiEvent(now, "kbd", (NOTE_ON, 40, 90)), now)  # play again
        cut = core.due(now)  # the same engine pass
        assert proc.answer is None and proc.cancelled == 1
        played_before = sum(is_note_on(m) for _, m in sent)
        assert 1 <= played_before < 6
        run_until(lambda: False, timeout_s=0.6)  # the job's pieces still in flight are dropped
        assert sum(is_note_on(m) for _, m in sent) == played_before
        assert left_sounding(sent + [(now, m) for _, m in cut]) == set()
    finally:
        workers.stop()


def test_a_long_job_in_one_processor_does_not_hold_up_anothers():
    slow_started, release = threading.Event(), threading.Event()
    cfg = parse_config({"processor": [{"name": "thru", "label": "slow"}, {"name": "thru", "label": "quick"}]})
    host, wake = HostRef(), threading.Event()
    slots = [Slot(p, BaseProcessor()) for p in cfg.processors]
    for s in slots:
        s.proc.start(Context(s.label, {}, host=host))
    workers = ThreadedWorkers(wake.set)
    core = EngineCore(cfg, slots, workers=workers, host=host)

    def slow(token):
        slow_started.set()
        release.wait(5)
        yield Out(0, (NOTE_ON, 50, 1))

    def quick(token):
        yield Out(0, (NOTE_ON, 70, 1))

    try:
        core.submit("slow", slow)
        assert slow_started.wait(2)
        core.submit("quick", quick)
        deadline = time.monotonic() + 2
        got = []
        while time.monotonic() < deadline and not got:
            got = [m for _, m in core.tick(time.perf_counter_ns()) if is_note_on(m)]
            wake.wait(0.01)
        assert got == [(NOTE_ON, 70, 1)]  # while the slow job still runs
    finally:
        release.set()
        workers.stop()


# ---- retract, and being told -----------------------------------------------------------------


class Phrase(BaseProcessor):
    """Queues a phrase of 4 notes, 100 ms apart, on a press of note 60; records what it is told."""

    name = "phrase"

    def start(self, ctx):
        super().start(ctx)
        self.told = []

    def on_event(self, ev):
        if isinstance(ev, MidiEvent) and ev.is_note_on and ev.message[1] == 60:
            return [o for i, p in enumerate((70, 71, 72, 73))
                    for o in (Out(ev.time_ns + i * 100 * MS, (NOTE_ON, p, 90), voice=f"n{i}"),
                              Out(ev.time_ns + i * 100 * MS + 150 * MS, (NOTE_OFF, p, 0), voice=f"n{i}"))]
        if isinstance(ev, MidiEvent) and ev.is_note_on and ev.message[1] == 61:
            raise RuntimeError("boom")
        return ()

    def on_release(self, reason):
        self.told.append(reason)


def test_a_retracted_phrase_never_plays_and_sounding_notes_still_end():
    p = Phrase()
    core, clock, sent = offline({"processor": [{"name": "thru", "label": "phrase", "buttons": "none"}]},
                                {"phrase": p})
    core.feed(MidiEvent(0, "kbd", (NOTE_ON, 60, 90)), 0)
    sent_now = core.tick(120 * MS)  # notes 70 and 71 have started
    assert [m[1] for _, m in sent_now if is_note_on(m)] == [70, 71]
    dropped = p.ctx.retract(from_ns=150 * MS)  # take back what is due from 150 ms: 72, 73
    assert dropped == 4
    for ms in (150, 200, 250, 300, 400, 10_000):
        core.tick(ms * MS)
    assert [p_ for _, p_ in ons(sent)] == [70, 71]
    assert left_sounding(sent) == set()  # 71's note-off, due at 250 ms, was kept
    assert [t for t, m in sent if is_note_off(m) and m[1] == 71] == [250 * MS]
    # by voice, ending what sounds
    core.feed(MidiEvent(20_000 * MS, "kbd", (NOTE_ON, 60, 90)), 20_000 * MS)
    core.tick(20_000 * MS)
    assert p.ctx.retract(voice="n0", end_sounding=True) == 1  # its queued note-off; 70 ends now
    core.tick(30_000 * MS)
    assert [p_ for t, p_ in ons(sent) if t >= 20_000 * MS] == [70, 71, 72, 73]
    assert left_sounding(sent) == set()


def test_the_engine_tells_a_processor_why_its_notes_ended():
    a, b = Phrase(), Phrase()
    core, clock, sent = offline({"engine": {"switch": "program"},
                                 "processor": [{"name": "thru", "label": "a", "buttons": "none"},
                                               {"name": "thru", "label": "b", "buttons": "none"}]},
                                {"a": a, "b": b})
    handle = core.submit("a", lambda token: iter([Out(5 * 10**9, (NOTE_ON, 90, 1))]))
    core.feed(MidiEvent(0, "kbd", (0xB0, 123, 0)), 0)
    assert a.told == [Ending.ALL_NOTES_OFF] and handle.cancelled
    core.panic(MS)
    core.feed(MidiEvent(2 * MS, "kbd", (0xC0, 1)), 2 * MS)  # Program Change: b plays
    assert a.told == [Ending.ALL_NOTES_OFF, Ending.PANIC, Ending.SWITCH]
    core.feed(MidiEvent(3 * MS, "kbd", (NOTE_ON, 61, 90)), 3 * MS)  # b raises
    assert b.told[-1] == Ending.ERROR
    core.stop(4 * MS)
    assert a.told[-1] == Ending.STOP and b.told[-1] == Ending.STOP
    assert not any(is_note_on(m) and m[1] == 90 for _, m in sent)


# ---- buttons = "none", and chains ------------------------------------------------------------


class Heard(BaseProcessor):
    name = "heard"

    def start(self, ctx):
        super().start(ctx)
        self.events = []

    def on_event(self, ev):
        self.events.append(ev)
        return ()


def test_buttons_none_hears_every_note_as_a_note():
    h = Heard()
    core, clock, sent = offline({"processor": [{"name": "thru", "label": "h", "buttons": "none"}]}, {"h": h})
    core.feed(MidiEvent(0, "kbd", (NOTE_ON, 60, 90)), 0)  # C4: button 0 under the default map
    assert [type(e).__name__ for e in h.events] == ["MidiEvent"] and h.events[0].message == (NOTE_ON, 60, 90)


def test_a_chain_feeds_one_processors_notes_to_the_next():
    from daemon.processors.thru import ThruProcessor

    h = Heard()
    core, clock, sent = offline({"processor": [
        {"name": "thru", "label": "player", "out_channel": 2},
        {"name": "thru", "label": "listener", "inputs": ["player"], "buttons": "none", "out_channel": 3}]},
        {"player": ThruProcessor(), "listener": h})
    core.feed(MidiEvent(0, "kbd", (NOTE_ON, 60, 90)), 0)  # button 0 for the player
    core.tick(0)
    core.feed(MidiEvent(50 * MS, "kbd", (NOTE_OFF, 60, 0)), 50 * MS)
    core.tick(50 * MS)
    heard = [(e.source, e.message[0] & 0xF0, e.message[1]) for e in h.events]
    played = [m for _, m in sent if is_note_on(m)]
    assert heard == [("player", NOTE_ON, played[0][1]), ("player", NOTE_OFF, played[0][1])]
    assert [e.time_ns for e in h.events] == [0, 50 * MS]  # when the player's notes sounded


def test_a_circle_of_chained_processors_is_refused():
    with pytest.raises(ConfigError, match="circle"):
        parse_config({"processor": [{"name": "thru", "label": "a", "inputs": ["b"]},
                                    {"name": "thru", "label": "b", "inputs": ["a"]}]})
