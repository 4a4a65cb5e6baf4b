"""The recorder: journal on a low-priority thread, MIDI file on close, recovery after a crash."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import mido
import pytest
from click.testing import CliRunner

from daemon.cli import cli
from daemon.config import Config, ProcessorConfig
from daemon.core import EngineCore, Slot
from daemon.events import MidiEvent
from daemon.io.recorder import (
    INPUT_TRACK,
    Recorder,
    journal_path_for,
    read_journal,
    recover,
    write_midi,
)
from daemon.processor import Context
from daemon.processors.thru import ThruProcessor

MS = 1_000_000


def wait_for(condition, timeout_s: float = 5.0, what: str = "condition") -> None:
    """Poll ``condition`` until it holds or the deadline passes (no fixed sleep before asserts)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def journal_events(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(1 for line in path.read_bytes().split(b"\n")[1:] if line.strip())


def midi_events(track: mido.MidiTrack) -> list[tuple[int, mido.Message]]:
    """(absolute tick, message) for the non-meta messages of a track."""
    out, tick = [], 0
    for msg in track:
        tick += msg.time
        if not msg.is_meta:
            out.append((tick, msg))
    return out


def by_name(mid: mido.MidiFile) -> dict[str, mido.MidiTrack]:
    return {track.name: track for track in mid.tracks}


def test_record_from_threads_writes_one_track_per_port(tmp_path: Path) -> None:
    path = tmp_path / "take.mid"
    rec = Recorder(path, flush_interval_s=0.05, start_ns=1_000 * MS)
    rec.start()
    start = rec.start_ns
    ports = ["A out", "B out", "C out"]

    def play(port: str, pitch: int) -> None:
        for i in range(20):
            t = start + (i * 10 + 1) * MS + 400_000  # x.4 ms: rounds down to whole ms
            rec.record("out", t, port, (0x90, pitch + i, 100))
            rec.record("out", t + 5 * MS, port, (0x80, pitch + i, 0))

    threads = [threading.Thread(target=play, args=(p, 40 + 10 * k)) for k, p in enumerate(ports)]
    for th in threads:
        th.start()
    for i in range(20):
        rec.record("in", start + (i * 10) * MS + 600_000, "keys", (0x91, 60 + i, 90))  # x.6: up
    for th in threads:
        th.join()

    journal = journal_path_for(path)
    total = 3 * 40 + 20
    wait_for(lambda: journal_events(journal) == total, what="the journal to take every event")
    assert not path.exists()  # the MIDI file comes at close

    stats = rec.close()
    assert not journal.exists()
    assert stats.events == total and stats.tracks == 2 + len(ports)

    mid = mido.MidiFile(path)
    assert mid.type == 1 and mid.ticks_per_beat == 500
    tempo = [m for m in mid.tracks[0] if m.type == "set_tempo"]
    assert [m.tempo for m in tempo] == [500_000]  # 120 bpm at 500 ticks per beat: 1 tick = 1 ms
    assert [t.name for t in mid.tracks[1:]] == [INPUT_TRACK] + [f"{p} (output)" for p in ports]

    inputs = midi_events(by_name(mid)[INPUT_TRACK])
    assert [(tick, m.note, m.channel) for tick, m in inputs] == [
        (i * 10 + 1, 60 + i, 1) for i in range(20)]
    for k, port in enumerate(ports):
        outs = midi_events(by_name(mid)[f"{port} (output)"])
        expected = []
        for i in range(20):
            expected.append((i * 10 + 1, "note_on", 40 + 10 * k + i))
            expected.append((i * 10 + 6, "note_off", 40 + 10 * k + i))
        assert [(tick, m.type, m.note) for tick, m in outs] == expected


def test_system_messages_left_out_channel_and_sysex_kept(tmp_path: Path) -> None:
    path = tmp_path / "sys.mid"
    with Recorder(path, flush_interval_s=0.05) as rec:
        t = rec.start_ns
        rec.record("in", t + 1 * MS, "daw", (0xF8,))  # clock
        rec.record("in", t + 2 * MS, "daw", (0xFA,))  # start
        rec.record("in", t + 3 * MS, "daw", (0xF2, 0, 0))  # song position
        rec.record("out", t + 4 * MS, "out", (0xF0, 0x7D, 0x01, 0xF7))
        rec.record("out", t + 5 * MS, "out", (0xB0, 64, 0))
        rec.record("out", t + 5 * MS, "out", (0xB0, 123, 0))
    assert rec.stats.omitted == 3
    mid = mido.MidiFile(path)
    assert midi_events(by_name(mid)[INPUT_TRACK]) == []
    outs = midi_events(by_name(mid)["out (output)"])
    assert [(tick, m.type) for tick, m in outs] == [
        (4, "sysex"), (5, "control_change"), (5, "control_change")]
    assert [m.control for _, m in outs[1:]] == [64, 123]


def test_close_is_idempotent_and_record_never_blocks_on_io(tmp_path: Path) -> None:
    path = tmp_path / "idem.mid"
    rec = Recorder(path, flush_interval_s=60)  # the thread would not flush for a minute
    rec.start()
    t0 = time.perf_counter()
    for i in range(10_000):
        rec.record("out", rec.start_ns + i * MS, "p", (0x90, 60, 1))
    assert time.perf_counter() - t0 < 1.0
    assert journal_events(rec.journal_path) == 0  # nothing written on the caller's thread
    first = rec.close()  # wakes the thread at once, flushes the rest
    assert first.events == 10_000
    assert rec.close() is first
    assert not rec._thread.is_alive()
    assert rec._thread.name == "genie-recorder"


def test_engine_stop_note_offs_and_panic_ccs_are_recorded(tmp_path: Path) -> None:
    cfg = Config(processors=[ProcessorConfig(name="thru", label="thru", output="synth")])
    cfg.midi.send_ahead_ms = 0
    proc = ThruProcessor()
    proc.start(Context(name="thru", options={}))
    path = tmp_path / "engine.mid"
    rec = Recorder(path, flush_interval_s=0.05, start_ns=0)
    rec.start()
    core = EngineCore(cfg, [Slot(cfg.processors[0], proc)], record=rec.record)
    core.feed(MidiEvent(10 * MS, "keys", (0x90, 50, 80)), 10 * MS)
    core.tick(10 * MS)
    core.feed(MidiEvent(20 * MS, "keys", (0x90, 52, 80)), 20 * MS)
    core.tick(20 * MS)
    core.stop(30 * MS)  # both notes still held: the panic must end them
    rec.close()

    outs = midi_events(by_name(mido.MidiFile(path))["synth (output)"])
    ons = [(tick, m.note) for tick, m in outs if m.type == "note_on" and m.velocity > 0]
    offs = [(tick, m.note) for tick, m in outs
            if m.type == "note_off" or (m.type == "note_on" and m.velocity == 0)]
    ccs = [(tick, m.control, m.value) for tick, m in outs if m.type == "control_change"]
    assert ons == [(10, 50), (20, 52)]
    assert sorted(offs) == [(30, 50), (30, 52)]
    assert ccs == [(30, 64, 0), (30, 123, 0)]
    inputs = midi_events(by_name(mido.MidiFile(path))[INPUT_TRACK])
    assert [(tick, m.note) for tick, m in inputs] == [(10, 50), (20, 52)]


def test_recover_a_journal_cut_short_by_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "gig.mid"
    rec = Recorder(path, flush_interval_s=0.02)
    rec.start()
    t = rec.start_ns
    for i in range(10):
        rec.record("in", t + i * 100 * MS, "keys", (0x90, 60 + i, 100))
        rec.record("out", t + i * 100 * MS + 2 * MS, "Genie out", (0x90, 70 + i, 100))
        rec.record("out", t + i * 100 * MS + 50 * MS, "Genie out", (0x80, 70 + i, 0))
    wait_for(lambda: journal_events(rec.journal_path) == 30, what="the journal to be flushed")

    # The crash: the journal as it is on disk now, its last line cut short mid-write.
    crashed = tmp_path / "crash" / "gig.mid.journal"
    crashed.parent.mkdir()
    shutil.copy(rec.journal_path, crashed)
    data = crashed.read_bytes()
    assert data.endswith(b"]\n")
    crashed.write_bytes(data[:-6])
    rec.close()

    stats = recover(crashed)  # default output: the journal's path without .journal
    out = crashed.parent / "gig.mid"
    # 29 events, and a note-off for each note the crash left open: the 10 keys held on the
    # input, and the last output note whose note-off was the line cut short
    assert stats.skipped_lines == 1 and stats.events == 29 + 11 and stats.tracks == 3
    recovered, complete = mido.MidiFile(out), mido.MidiFile(path)
    assert len(recovered.tracks) == len(complete.tracks)
    for got, want in zip(recovered.tracks, complete.tracks):
        assert got.name == want.name
    got_out = midi_events(by_name(recovered)["Genie out (output)"])
    want_out = midi_events(by_name(complete)["Genie out (output)"])
    assert [(t, m.bytes()) for t, m in got_out[:-1]] == [(t, m.bytes()) for t, m in want_out[:-1]]
    assert got_out[-1][1].type == "note_off" and got_out[-1][1].note == 79  # closed at the end
    got_in = midi_events(by_name(recovered)[INPUT_TRACK])
    assert [(t, m.bytes()) for t, m in got_in[:10]] == \
        [(t, m.bytes()) for t, m in midi_events(by_name(complete)[INPUT_TRACK])]
    assert sorted(m.note for _, m in got_in[10:] if m.type == "note_off") == list(range(60, 70))
    assert crashed.exists()  # recover leaves the journal for the user to remove


def test_recover_skips_damaged_lines_in_the_middle(tmp_path: Path) -> None:
    journal = tmp_path / "x.mid.journal"
    header = json.dumps({"genie_journal": 1, "start_ns": 0})
    journal.write_bytes("\n".join([
        header,
        '["out",1000000,"p","903c64"]',
        "\x00\x00\x00\x00",  # what a power cut can leave
        '["out",2000000,"p","90zz64"]',  # not hex
        '["out",3000000,"p","9999"]',  # not a MIDI message
        '["sideways",3000000,"p","903c64"]',
        '["out",4000000,"p","803c00"]',
    ]).encode("latin-1") + b"\n")
    start_ns, events, skipped = read_journal(journal)
    assert start_ns == 0 and skipped == 4
    assert events == [("out", 1 * MS, "p", (0x90, 60, 100)), ("out", 4 * MS, "p", (0x80, 60, 0))]


@pytest.mark.parametrize("content", [
    b"",
    b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xf4",
    b'{"some": "json"}\n["out",1,"p","903c64"]\n',
    bytes(range(256)) * 4,
])
def test_recover_something_that_is_not_a_journal(tmp_path: Path, content: bytes) -> None:
    bogus = tmp_path / "bogus.journal"
    bogus.write_bytes(content)
    with pytest.raises(ValueError) as info:
        recover(bogus, tmp_path / "out.mid")
    message = str(info.value)
    assert "\n" not in message and str(bogus) in message and "not a Genie journal" in message
    assert not (tmp_path / "out.mid").exists()


def test_recover_command(tmp_path: Path) -> None:
    journal = tmp_path / "set.mid.journal"
    journal.write_bytes(json.dumps({"genie_journal": 1, "start_ns": 0}).encode() + b"\n"
                        + b'["in",5000000,"keys","903c64"]\n["out",6000000,"o","903c64"]\n'
                        + b'["out",7000000,"o","80')
    runner = CliRunner()
    result = runner.invoke(cli, ["recover", str(journal)])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 1
    assert "4 events" in result.stdout and "1 damaged line" in result.stdout  # 2 + 2 notes closed
    mid = mido.MidiFile(tmp_path / "set.mid")
    assert [t.name for t in mid.tracks[1:]] == [INPUT_TRACK, "o (output)"]
    assert [(t, m.type, m.note) for t, m in midi_events(mid.tracks[2])] == [(6, "note_on", 60), (6, "note_off", 60)]

    other = tmp_path / "other.mid"
    result = runner.invoke(cli, ["recover", str(journal), "--out", str(other)])
    assert result.exit_code == 0 and other.exists()

    garbage = tmp_path / "garbage.journal"
    garbage.write_bytes(b"\xff\xfe nonsense\n")
    result = runner.invoke(cli, ["recover", str(garbage)])
    assert result.exit_code != 0
    assert result.stderr.strip().count("\n") == 0 and str(garbage) in result.stderr

    result = runner.invoke(cli, ["recover", str(tmp_path / "missing.journal")])
    assert result.exit_code != 0
    assert result.stderr.strip().count("\n") == 0 and "missing.journal" in result.stderr


def test_a_leftover_journal_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "again.mid"
    journal_path_for(path).write_text("an unfinished recording\n")
    with pytest.raises(FileExistsError, match="genie recover"):
        Recorder(path)
    assert journal_path_for(path).read_text() == "an unfinished recording\n"


def test_write_midi_is_atomic_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "w.mid"
    path.write_bytes(b"old")
    write_midi(path, [("out", 3 * MS, "p", (0x90, 60, 1))])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.mid"]
    assert [(t, m.note) for t, m in midi_events(mido.MidiFile(path).tracks[2])] == [(3, 60)]


# ---- never overwrite a take or a file ----------------------------------------------------------


def test_take_path_never_destroys_a_file(tmp_path):
    import os

    from daemon.io.recorder import take_path

    take = tmp_path / "take.mid"
    assert take_path(take) == take
    take.write_bytes(b"first take")
    assert take_path(take) == tmp_path / "take-2.mid"
    (tmp_path / "take-2.mid").write_bytes(b"second")
    (tmp_path / "take-3.mid.journal").write_bytes(b"an unfinished one")
    assert take_path(take) == tmp_path / "take-4.mid"
    assert take_path(take, force=True) == take
    os.symlink(tmp_path / "elsewhere", tmp_path / "link.mid")
    for bad in (tmp_path / "link.mid", Path("/dev/null"), tmp_path):
        with pytest.raises(ValueError, match="not a regular file"):
            take_path(bad)
    with pytest.raises(ValueError, match="is the input"):
        take_path(take, force=True, keep=(take,))


def test_genie_play_never_overwrites_its_input_or_an_earlier_output(tmp_path):
    import mido
    from click.testing import CliRunner

    from daemon.cli import cli

    src = tmp_path / "in.mid"
    mid = mido.MidiFile()
    mid.tracks.append(mido.MidiTrack([mido.Message("note_on", note=60, time=0),
                                      mido.Message("note_off", note=60, time=96)]))
    mid.save(src)
    before = src.read_bytes()
    r = CliRunner().invoke(cli, ["play", str(src), "--out", str(src), "--processor", "thru"])
    assert r.exit_code != 0 and "is the input" in r.output and src.read_bytes() == before
    out = tmp_path / "out.mid"
    out.write_bytes(b"yesterday's take")
    r = CliRunner().invoke(cli, ["play", str(src), "--out", str(out), "--processor", "thru"])
    assert r.exit_code == 0, r.output
    assert out.read_bytes() == b"yesterday's take" and (tmp_path / "out-2.mid").is_file()
    assert "out-2.mid" in r.output


def test_a_recovered_take_closes_the_notes_the_crash_left_open(tmp_path):
    import mido

    from daemon.io.recorder import Recorder, journal_path_for, recover

    take = tmp_path / "take.mid"
    rec = Recorder(take, flush_interval_s=0.01, start_ns=0)
    rec.start()
    rec.record("in", 1_000_000, "Genie in", (0x90, 60, 100))
    rec.record("out", 2_000_000, "Genie out", (0x90, 72, 90))
    rec.record("out", 3_000_000, "Genie out", (0x90, 74, 90))
    rec.record("out", 400_000_000, "Genie out", (0x80, 74, 0))
    rec.flush()  # what was on disk when the power went
    journal = journal_path_for(take)
    recover(journal)  # a SIGKILL: close() never ran
    mid = mido.MidiFile(take)
    for track in mid.tracks[1:]:
        on = {m.note for m in track if m.type == "note_on" and m.velocity}
        off = {m.note for m in track if m.type == "note_off" or (m.type == "note_on" and not m.velocity)}
        assert on <= off, (track.name, on, off)


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB file system of its own (tmpfs; needs mount rights, else skipped)."""
    import subprocess

    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_take_on_a_full_disk_is_saved_whole_elsewhere_and_said_so(full_disk, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    take = full_disk / "gig.mid"
    rec = Recorder(take, flush_interval_s=0.01, start_ns=0)
    rec.start()
    n = 6000  # far more than 64 KiB of journal
    for i in range(n):
        rec.record("in", i * MS, "keys", (0x90 if i % 2 == 0 else 0x80, 60 + i % 12, 100 if i % 2 == 0 else 0))
    with pytest.raises(OSError, match="the whole take is in"):
        rec.close()
    assert rec.rescued is not None and rec.rescued.is_file()
    saved = mido.MidiFile(rec.rescued)
    notes = [m for track in saved.tracks for m in track if m.type in ("note_on", "note_off")]
    assert len(notes) == n  # nothing lost
