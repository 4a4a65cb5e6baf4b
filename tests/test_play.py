"""``genie play``: a MIDI file through the processors on a simulated clock, deterministically."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

import mido
import pytest
from click.testing import CliRunner

import daemon.session
from daemon.cli import cli
from daemon.config import Config, ProcessorConfig
from daemon.events import NOTE_OFF, NOTE_ON, ButtonEvent, Event, MidiEvent, Out
from daemon.io.recorder import INPUT_TRACK
from daemon.offline import play_file, read_events, to_buttons
from daemon.processor import BaseProcessor

# (pitch, start ms, length ms): overlapping notes, a repeated pitch, one outside the button map
NOTES = [(60, 0, 300), (64, 150, 300), (67, 500, 120), (60, 700, 200), (48, 1000, 450),
         (72, 1000, 100), (81, 1600, 250)]


def make_midi(path: Path, notes=NOTES, tempo: int = 500_000, tpb: int = 480) -> None:
    """A type-1 file: tempo on track 0, the notes on track 1 (tick times from ms)."""
    mid = mido.MidiFile(type=1, ticks_per_beat=tpb)
    meta = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=tempo, time=0)])
    msgs = []
    for pitch, start, length in notes:
        msgs.append((start, 1, mido.Message("note_on", note=pitch, velocity=90)))
        msgs.append((start + length, 0, mido.Message("note_off", note=pitch, velocity=0)))
    msgs.sort(key=lambda m: (m[0], m[1]))
    track, last = mido.MidiTrack(), 0
    for ms, _, msg in msgs:
        tick = round(mido.second2tick(ms / 1000, tpb, tempo))
        track.append(msg.copy(time=tick - last))
        last = tick
    mid.tracks += [meta, track]
    mid.save(path)


def notes_of(track: mido.MidiTrack, tpb: int = 500) -> list[tuple[float, str, int]]:
    """(ms, "on"/"off", pitch) of a track written by Genie (1 tick = 1 ms)."""
    out, tick = [], 0
    for msg in track:
        tick += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            out.append((tick * 500 / tpb, "on", msg.note))
        elif msg.type in ("note_on", "note_off"):
            out.append((tick * 500 / tpb, "off", msg.note))
    return out


def file_notes(path: Path) -> list[tuple[float, str, int]]:
    out, seconds = [], 0.0
    for msg in mido.MidiFile(path):
        seconds += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            out.append((seconds * 1000, "on", msg.note))
        elif msg.type in ("note_on", "note_off"):
            out.append((seconds * 1000, "off", msg.note))
    return out


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "genie.toml"
    path.write_text('[engine]\nseed = 7\n\n[[processor]]\nname = "thru"\noutput = "Piano"\n')
    return path


def play(config: Path, *args: str):
    return CliRunner().invoke(cli, ["--config", str(config), "play", *args])


def test_thru_plays_the_file_back(tmp_path: Path, config: Path) -> None:
    src, out = tmp_path / "in.mid", tmp_path / "out.mid"
    make_midi(src, tempo=400_000)  # 150 bpm: the reader must apply the file's tempo
    result = play(config, str(src), "--out", str(out), "--processor", "thru")
    assert result.exit_code == 0, result.output
    summary = result.stdout.strip().splitlines()
    assert len(summary) == 1 and "7 notes" in summary[0] and str(out) in summary[0]

    mid = mido.MidiFile(out)
    names = [t.name for t in mid.tracks]
    assert names[1:] == [INPUT_TRACK, "Genie out (output)"]  # --processor: default output port
    played = notes_of(mid.tracks[2])
    want = file_notes(src)
    assert [(kind, pitch) for _, kind, pitch in played] == [(k, p) for _, k, p in want]
    for (got_ms, _, _), (want_ms, _, _) in zip(played, want):
        assert abs(got_ms - want_ms) <= 1.0
    assert [(k, p) for _, k, p in notes_of(mid.tracks[1])] == [(k, p) for _, k, p in want]

    sounding: dict[int, int] = {}
    for _, kind, pitch in played:
        sounding[pitch] = sounding.get(pitch, 0) + (1 if kind == "on" else -1)
        assert sounding[pitch] in (0, 1)
    assert set(sounding.values()) == {0}  # every note-on has its note-off


def test_same_input_and_seed_give_identical_bytes(tmp_path: Path, config: Path) -> None:
    src = tmp_path / "in.mid"
    make_midi(src)
    outs = [tmp_path / "a.mid", tmp_path / "b.mid"]
    for out in outs:
        result = play(config, str(src), "--out", str(out), "--processor", "thru", "--seed", "3")
        assert result.exit_code == 0, result.output
    assert outs[0].read_bytes() == outs[1].read_bytes()


def test_configured_processors_are_used_without_processor_option(tmp_path: Path,
                                                                 config: Path) -> None:
    src, out = tmp_path / "in.mid", tmp_path / "out.mid"
    make_midi(src)
    result = play(config, str(src), "--out", str(out))
    assert result.exit_code == 0, result.output
    mid = mido.MidiFile(out)
    assert [t.name for t in mid.tracks[1:]] == [INPUT_TRACK, "Piano (output)"]
    assert len([n for n in notes_of(mid.tracks[2]) if n[1] == "on"]) == len(NOTES)


@pytest.mark.parametrize("content", [None, b"not a midi file at all", b"MThd\x00\x00\x00\x06"])
def test_missing_or_corrupt_input_is_one_line(tmp_path: Path, config: Path, content) -> None:
    src, out = tmp_path / "bad.mid", tmp_path / "out.mid"
    if content is not None:
        src.write_bytes(content)
    result = play(config, str(src), "--out", str(out), "--processor", "thru")
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(src) in lines[0], result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_buttons_follow_the_contour(tmp_path: Path, config: Path) -> None:
    src, out = tmp_path / "in.mid", tmp_path / "out.mid"
    make_midi(src)
    result = play(config, str(src), "--out", str(out), "--processor", "thru", "--buttons")
    assert result.exit_code == 0, result.output
    thru_notes = [60, 62, 64, 65, 67, 69, 71, 72]  # thru's default: button i plays notes[i]
    played = [n for n in notes_of(mido.MidiFile(out).tracks[2])]
    ons = [(ms, pitch) for ms, kind, pitch in played if kind == "on"]
    # Pitch range 48..81 split in 8 bands: 60->2, 64->3, 67->4, 60->2, 48->0, 72->5, 81->7.
    assert [pitch for _, pitch in ons] == [thru_notes[b] for b in (2, 3, 4, 2, 0, 5, 7)]
    assert [round(ms) for ms, _ in ons] == [0, 150, 500, 700, 1000, 1000, 1600]
    assert sum(1 for n in played if n[1] == "off") == len(ons)


def test_to_buttons_rules() -> None:
    def ev(t, msg):
        return MidiEvent(t, "file", msg)

    in_map = [ev(0, (NOTE_ON, 64, 80)), ev(1, (NOTE_ON, 72, 70)), ev(2, (NOTE_OFF, 64, 0)),
              ev(3, (NOTE_ON, 72, 0)), ev(4, (0xB0, 1, 5))]
    got = to_buttons(in_map, [60, 62, 64, 65, 67, 69, 71, 72])
    assert got == [ButtonEvent(0, "file", 2, True, 80), ButtonEvent(1, "file", 7, True, 70),
                   ButtonEvent(2, "file", 2, False), ButtonEvent(3, "file", 7, False), in_map[4]]

    # Outside the map: bands of the pitch range; a held button re-triggers, then releases last.
    bands = [ev(0, (NOTE_ON, 40, 90)), ev(1, (NOTE_ON, 41, 90)), ev(2, (NOTE_OFF, 40, 0)),
             ev(3, (NOTE_OFF, 41, 0)), ev(4, (NOTE_ON, 55, 90)), ev(5, (NOTE_OFF, 55, 0))]
    got = to_buttons(bands, [60, 62, 64, 65, 67, 69, 71, 72])
    assert got == [ButtonEvent(0, "file", 0, True, 90), ButtonEvent(1, "file", 0, False),
                   ButtonEvent(1, "file", 0, True, 90), ButtonEvent(3, "file", 0, False),
                   ButtonEvent(4, "file", 7, True, 90), ButtonEvent(5, "file", 7, False)]


class EchoLater(BaseProcessor):
    """Test double: each press submits slow work that answers 100 ms later, on the sim clock."""

    name: ClassVar[str] = "echo-later"
    seen: ClassVar[list] = []

    def start(self, ctx) -> None:
        super().start(ctx)
        EchoLater.seen = []

    def on_event(self, ev: Event) -> Iterable[Out]:
        now = self.ctx.now_ns()
        EchoLater.seen.append((ev.time_ns, now))
        if isinstance(ev, ButtonEvent) and ev.pressed:
            pitch = 30 + ev.button + self.ctx.rng().randrange(10)

            def job(token):
                due = self.ctx.now_ns() + 100_000_000
                yield [Out(due, (NOTE_ON, pitch, 100)), Out(due + 50_000_000, (NOTE_OFF, pitch, 0))]

            self.ctx.submit(job)
        return ()


def test_workers_and_processors_run_on_the_simulated_clock(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(daemon.session, "load", lambda name: EchoLater)
    src = tmp_path / "in.mid"
    make_midi(src, notes=[(60, 0, 100), (62, 250, 100), (64, 1250, 100)])
    cfg = Config(processors=[ProcessorConfig(name="echo-later", label="echo")])
    outs = []
    for i in range(2):
        out = tmp_path / f"out{i}.mid"
        stats = play_file(cfg, src, out, seed=11)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    assert stats["notes_out"] == 3 and stats["processors"] == ["echo"]
    assert cfg.midi.send_ahead_ms == -1.0  # the caller's config is left alone
    # The processor saw the simulated clock: each event arrives exactly at its file time.
    assert all(abs(t - now) == 0 for t, now in EchoLater.seen)
    assert [round(t / 1e6) for t, _ in EchoLater.seen] == [0, 100, 250, 350, 1250, 1350]
    ons = [ms for ms, kind, _ in notes_of(mido.MidiFile(tmp_path / "out0.mid").tracks[2])
           if kind == "on"]
    assert ons == [100, 350, 1350]
    # 2 s after the last event, then stop
    assert stats["seconds"] == pytest.approx(1.35 + 2, abs=0.01)


def test_read_events_merges_tracks_in_time_order(tmp_path: Path) -> None:
    path = tmp_path / "two.mid"
    mid = mido.MidiFile(type=1, ticks_per_beat=100)  # 120 bpm default: 1 tick = 5 ms
    mid.tracks.append(mido.MidiTrack([mido.Message("note_on", note=60, time=10),
                                      mido.Message("note_off", note=60, time=100)]))
    mid.tracks.append(mido.MidiTrack([mido.Message("note_on", note=70, time=50),
                                      mido.Message("note_off", note=70, time=100)]))
    mid.save(path)
    events = read_events(path)
    assert [(e.time_ns // 1_000_000, e.message[1]) for e in events] == [
        (50, 60), (250, 70), (550, 60), (750, 70)]
    assert {e.source for e in events} == {"file"}
