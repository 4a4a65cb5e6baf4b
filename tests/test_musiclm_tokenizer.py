"""Performance and JSB encodings: frozen vocabularies, exact round trips, the sustain pedal."""

from pathlib import Path

import numpy as np
import pytest

from musiclm import tokenizer as tk

ASAP = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "asap-maestro-subset"


def random_notes(seed=0, n=300):
    rng = np.random.default_rng(seed)
    start = np.cumsum(rng.exponential(0.15, n)) * (rng.random(n) < 0.7)
    start = np.sort(np.abs(start + rng.random(n) * 3))
    end = start + rng.exponential(0.4, n)
    pitch = rng.integers(21, 109, n)
    vel = rng.integers(1, 128, n)
    # no two sounding notes of one pitch overlap (a re-struck key ends the previous one)
    order = np.lexsort((pitch, start))
    start, end, pitch, vel = start[order], end[order], pitch[order], vel[order]
    last_end = {}
    keep = []
    for i in range(n):
        p = int(pitch[i])
        if round(start[i] * 100) >= last_end.get(p, -1):
            keep.append(i)
            last_end[p] = round(end[i] * 100) + 1
    k = np.array(keep)
    return tk.Notes(start[k], end[k], pitch[k], vel[k])


def quantized(notes):
    q = lambda x: np.round(np.asarray(x) * 100).astype(int)  # noqa: E731
    return sorted(zip(q(notes.start), notes.pitch.tolist(), np.maximum(q(notes.end), q(notes.start)),
                      tk.velocity_bin(notes.velocity).tolist()))


def test_vocabulary_is_frozen():
    assert tk.PERFORMANCE_VOCAB_SIZE == 391 == 3 + 128 + 128 + 100 + 32
    assert (tk.NOTE_ON, tk.NOTE_OFF, tk.TIME_SHIFT, tk.VELOCITY) == (3, 131, 259, 359)
    assert tk.JSB_VOCAB_SIZE == 131
    assert tk.describe(tk.TIME_SHIFT) == "SHIFT 10ms" and tk.describe(tk.VELOCITY - 1) == "SHIFT 1000ms"


def test_round_trip_is_exact_on_the_grid():
    notes = random_notes()
    tokens = tk.encode(notes)
    assert tokens.min() >= tk.NOTE_ON and tokens.max() < tk.PERFORMANCE_VOCAB_SIZE
    assert quantized(tk.decode(tokens, max_duration_s=1e9)) == quantized(notes)


def test_long_gaps_take_several_shifts_and_velocity_only_when_it_changes():
    notes = tk.Notes(np.array([0.0, 2.5, 2.5]), np.array([0.1, 2.6, 2.6]), np.array([60, 64, 67]),
                     np.array([80, 81, 40]))
    text = [tk.describe(t) for t in tk.encode(notes)]
    assert text == ["VEL 20", "ON 60", "SHIFT 100ms", "OFF 60", "SHIFT 1000ms", "SHIFT 1000ms", "SHIFT 400ms",
                    "ON 64", "VEL 10", "ON 67", "SHIFT 100ms", "OFF 64", "OFF 67"]


def test_decode_ignores_orphan_note_offs_and_ends_stuck_notes():
    toks = [tk.NOTE_OFF + 50, tk.VELOCITY + 20, tk.NOTE_ON + 60] + [tk.TIME_SHIFT + 99] * 8
    notes = tk.decode(toks, max_duration_s=5.0)
    assert notes.pitch.tolist() == [60] and notes.end[0] == pytest.approx(5.0)
    assert notes.velocity[0] == 82


def write_pedal_file(path):
    import mido

    mid = mido.MidiFile(ticks_per_beat=480)  # 120 bpm: 960 ticks a second
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    tr += [mido.Message("note_on", note=60, velocity=70, time=0),
           mido.Message("control_change", control=64, value=127, time=480),  # 0.5 s pedal down
           mido.Message("note_off", note=60, velocity=0, time=480),  # 1.0 s key up: held by the pedal
           mido.Message("note_on", note=62, velocity=70, time=0),
           mido.Message("note_on", note=62, velocity=0, time=240),  # 1.25 s
           mido.Message("note_on", note=62, velocity=90, time=240),  # 1.5 s re-strike ends the first 62
           mido.Message("control_change", control=64, value=0, time=960),  # 2.5 s pedal up ends 60
           mido.Message("note_off", note=62, velocity=0, time=480)]  # 3.0 s
    mid.save(str(path))


def test_sustain_pedal_is_folded_into_durations(tmp_path):
    path = tmp_path / "pedal.mid"
    write_pedal_file(path)
    n = tk.read_midi(path)
    got = sorted(zip(n.pitch.tolist(), np.round(n.start, 3).tolist(), np.round(n.end, 3).tolist()))
    assert got == [(60, 0.0, 2.5), (62, 1.0, 1.5), (62, 1.5, 3.0)]
    raw = tk.read_midi(path, pedal=False)
    assert sorted(zip(raw.pitch.tolist(), np.round(raw.end, 3).tolist())) == [(60, 1.0), (62, 1.25), (62, 3.0)]


def test_midi_file_round_trip(tmp_path):
    notes = tk.decode(tk.encode(random_notes(1, 100)), max_duration_s=1e9)  # on the 10 ms grid
    tk.write_midi(notes, tmp_path / "x.mid")
    back = tk.read_midi(tmp_path / "x.mid", pedal=False)
    assert quantized(back) == quantized(notes)


@pytest.mark.skipif(not ASAP.is_dir(), reason="asap-maestro-subset not present")
def test_round_trip_on_real_performances():
    files = sorted(ASAP.glob("Chopin/**/*.mid"))[:2] + sorted(ASAP.glob("Bach/**/*.mid"))[:1]
    for f in files:
        if f.name == "midi_score.mid":
            continue
        notes = tk.read_midi(f)
        assert len(notes) > 100
        assert quantized(tk.decode(tk.encode(notes), max_duration_s=1e9)) == quantized(notes), f


def test_jsb_raster_order_rests_and_round_trip():
    frames = np.array([[72, 67, 64, 48], [72, np.nan, 64, 48]], dtype=np.float64)
    tokens = tk.jsb_encode(frames)
    assert tokens.tolist() == [tk.BOS, 75, 70, 67, 51, 75, tk.JSB_REST, 67, 51]
    np.testing.assert_array_equal(tk.jsb_decode(tokens), frames)


def test_tokens_before_cuts_at_an_onset():
    notes = tk.Notes(np.array([0.0, 0.5, 1.0]), np.array([0.2, 0.7, 1.2]), np.array([60, 62, 64]),
                     np.array([64, 64, 64]))
    toks = tk.encode(notes)
    cut = tk.tokens_before(toks, 1.0)
    assert [tk.describe(t) for t in toks[cut:cut + 1]] == ["ON 64"]
