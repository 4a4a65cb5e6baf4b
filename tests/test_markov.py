"""The bigram Markov model, its file format, the ``markov`` processor, and ``genie train markov``."""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

import mido
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.events import NOTE_OFF, NOTE_ON, ButtonEvent, MidiEvent, Out
from daemon.processor import Context, ProcessorError
from markov import model as mm
from markov.processor import MarkovProcessor

SCALE = [60, 62, 64, 65, 67, 69, 71, 72]


def scale_model(alpha: float = 0.1) -> mm.BigramModel:
    """Up and down a C major scale, many times: a model that knows step-wise motion only."""
    up_down = SCALE + SCALE[-2::-1]
    return mm.fit([up_down * 5, up_down * 3], mm.MarkovConfig(alpha=alpha))


# ---- fitting and likelihood ------------------------------------------------------------------


def test_fit_counts_every_transition_once():
    model = mm.fit([[60, 62, 60], [60, 62], [67]])
    assert model.transitions == 3  # [67] alone has no transition
    assert model.counts[60, 62] == 2
    assert model.counts[62, 60] == 1
    assert model.counts.sum(axis=1)[67] == 0
    assert model.counts.dtype == np.int64 and model.counts.shape == (128, 128)


def test_smoothing_gives_unseen_pitches_alpha_share():
    alpha = 0.5
    model = mm.fit([[60, 62, 60, 62]], mm.MarkovConfig(alpha=alpha))  # 60->62 twice, 62->60 once
    probs = np.exp(model.log_probs)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    row_total = 2 + 128 * alpha
    assert probs[60, 62] == pytest.approx((2 + alpha) / row_total)
    assert probs[60, 61] == pytest.approx(alpha / row_total)
    assert probs[5, 100] == pytest.approx(1 / 128)  # a never-seen previous pitch: uniform


def test_perplexity_on_seen_data_beats_uniform_and_unigram():
    model = scale_model(alpha=0.01)
    seen = [SCALE + SCALE[-2::-1]]
    ppl = model.perplexity(seen)
    assert ppl < 2.5  # each step has at most two successors in the data
    assert scale_model(alpha=1.0).perplexity(seen) > ppl  # heavier smoothing costs likelihood
    assert ppl < model.perplexity(seen, unigram=True) < 128
    total, n = model.nll(seen)
    assert n == len(seen[0]) - 1
    assert ppl == pytest.approx(math.exp(total / n))


def test_perplexity_of_unseen_jumps_is_high():
    model = scale_model()
    assert model.perplexity([[60, 100, 30, 90]]) > 100


def test_perplexity_needs_transitions():
    with pytest.raises(ValueError, match="no transitions"):
        scale_model().perplexity([[60], []])


def test_fit_rejects_non_midi_pitches():
    with pytest.raises(ValueError, match="0..127"):
        mm.fit([[60, 128]])


# ---- data ------------------------------------------------------------------------------------


def test_read_pitches_orders_by_onset_then_pitch(tmp_path):
    """Two tracks, a chord, a note-on of velocity 0 (a note-off): all merged in playing order."""
    midi = mido.MidiFile(type=1, ticks_per_beat=480)
    melody, second = mido.MidiTrack(), mido.MidiTrack()
    midi.tracks += [melody, second]
    melody += [
        mido.Message("note_on", note=67, velocity=90, time=0),
        mido.Message("note_on", note=67, velocity=0, time=480),  # note-off spelled as a note-on
        mido.Message("note_on", note=64, velocity=90, time=0),  # t=480, with 60 below it
        mido.Message("note_off", note=64, velocity=0, time=480),
        mido.Message("note_on", note=72, velocity=90, time=480),  # t=1440
    ]
    second += [
        mido.Message("note_on", note=60, velocity=80, time=480),  # t=480
        mido.Message("note_on", note=62, velocity=80, time=480),  # t=960
    ]
    path = tmp_path / "tune.mid"
    midi.save(path)
    assert mm.read_pitches(path) == [67, 60, 64, 62, 72]


def test_read_pitches_names_a_corrupt_file(tmp_path):
    path = tmp_path / "broken.mid"
    path.write_bytes(b"MThd\x00\x00\x00\x06garbage")
    with pytest.raises(ValueError, match="broken.mid") as info:
        mm.read_pitches(path)
    assert "\n" not in str(info.value)


def test_split_rule_matches_sha1_of_stem():
    import hashlib

    for stem in ["ashover1", "jigs12", "reelsa-c5", "waltzes3", "x"]:
        h = int(hashlib.sha1(stem.encode()).hexdigest(), 16) % 10
        assert mm.split_of(stem) == {0: "test", 1: "validation"}.get(h, "train")
    splits = [mm.split_of(f"tune{i}") for i in range(2000)]
    assert 0.07 < splits.count("test") / 2000 < 0.13
    assert 0.07 < splits.count("validation") / 2000 < 0.13


# ---- the button sampler ----------------------------------------------------------------------


def test_button_table_is_mirrored_and_never_repeats():
    for b in range(4):
        lo, hi = mm.BUTTON_INTERVALS[b]
        assert (lo, hi) == tuple(-x for x in reversed(mm.BUTTON_INTERVALS[7 - b]))
        assert hi < 0
    starts = [lo for lo, _ in mm.BUTTON_INTERVALS]
    assert starts == sorted(starts)


MODELS = {"scale": scale_model(), "repeats": mm.fit([[64] * 50], mm.MarkovConfig(alpha=0.01))}


@settings(max_examples=400, deadline=None)
@given(
    which=st.sampled_from(sorted(MODELS)),
    prev=st.integers(0, 127),
    button=st.integers(0, 7),
    seed=st.integers(0, 2**32),
    temperature=st.sampled_from([0.0, 0.3, 1.0, 3.0]),
    low=st.integers(0, 60),
    span=st.integers(0, 67),
)
def test_buttons_move_the_way_they_say(which, prev, button, seed, temperature, low, span):
    high = low + span
    model = MODELS[which]  # "repeats" puts all its mass on no movement: the window must still win
    pitch = model.next_pitch(prev, button, random.Random(seed), temperature, low, high)
    assert low <= pitch <= high
    d_lo, d_hi = mm.BUTTON_INTERVALS[button]
    if button < 4 and prev > low:
        assert pitch < prev
    if button >= 4 and prev < high:
        assert pitch > prev
    if max(prev + d_lo, low) <= min(prev + d_hi, high):  # the window meets the range
        assert prev + d_lo <= pitch <= prev + d_hi


def test_sampler_follows_the_data_within_a_window():
    """From 64 the scale model has seen 65 (up a step) and 62 (down a step), never 66."""
    model = scale_model(alpha=0.01)
    rng = random.Random(1)
    ups = [model.next_pitch(64, 4, rng) for _ in range(300)]  # window 65..66
    assert ups.count(65) > 290
    downs = [model.next_pitch(64, 3, rng) for _ in range(300)]  # window 62..63
    assert downs.count(62) > 290
    assert model.next_pitch(64, 4, rng, temperature=0) == 65


def test_temperature_flattens_the_choice():
    model = scale_model(alpha=0.01)
    hot = [model.next_pitch(64, 4, random.Random(s), temperature=50.0) for s in range(400)]
    assert 100 < hot.count(66) < 300


def test_sampler_is_deterministic_for_a_seed():
    model = scale_model()

    def melody(seed):
        rng, prev, out = random.Random(seed), 60, []
        for b in [4, 5, 6, 7, 0, 1, 2, 3] * 4:
            prev = model.next_pitch(prev, b, rng)
            out.append(prev)
        return out

    assert melody(3) == melody(3)
    assert melody(3) != melody(4)


def test_bad_button_or_range_is_refused():
    with pytest.raises(ValueError, match="button"):
        mm.button_window(60, 8)
    with pytest.raises(ValueError, match="range"):
        mm.button_window(60, 0, low=80, high=70)


# ---- file format -----------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path):
    model = scale_model(alpha=0.25)
    model.meta = {"data": "hand-made", "metrics": {"validation": {"perplexity": 1.5}}}
    path = tmp_path / "m.json"
    model.save(path)
    again = mm.BigramModel.load(path)
    np.testing.assert_array_equal(again.counts, model.counts)
    assert again.config == model.config
    assert again.meta == model.meta
    np.testing.assert_allclose(again.log_probs, model.log_probs)
    doc = json.loads(path.read_text())  # plain JSON, sparse: only the non-zero counts
    assert sum(len(row) for row in doc["counts"].values()) == np.count_nonzero(model.counts)


def _valid_doc(tmp_path) -> dict:
    path = tmp_path / "valid.json"
    scale_model().save(path)
    return json.loads(path.read_text())


@pytest.mark.parametrize("corrupt, reason", [
    (lambda d: "{not json", "not valid JSON"),
    (lambda d: "", "not valid JSON"),
    (lambda d: json.dumps([1, 2]), "not a genie-markov-bigram file"),
    (lambda d: json.dumps({**d, "format": "something-else"}), "not a genie-markov-bigram file"),
    (lambda d: json.dumps({**d, "version": 99}), "unsupported version"),
    (lambda d: json.dumps({**d, "config": {"alpha": -1}}), "alpha"),
    (lambda d: json.dumps({**d, "config": {}}), "alpha"),
    (lambda d: json.dumps({**d, "counts": {"200": {"60": 1}}}), "counts key"),
    (lambda d: json.dumps({**d, "counts": {"60": {"61": -3}}}), r"counts\[60\]"),
    (lambda d: json.dumps({**d, "counts": {"60": {"61": 1.5}}}), r"counts\[60\]"),
    (lambda d: json.dumps({**d, "counts": {}}), "no transitions"),
    (lambda d: json.dumps({k: v for k, v in d.items() if k != "counts"}), "counts must be"),
])
def test_corrupt_file_is_a_one_line_value_error_naming_it(tmp_path, corrupt, reason):
    path = tmp_path / "corrupt-model.json"
    path.write_text(corrupt(_valid_doc(tmp_path)))
    with pytest.raises(ValueError, match=reason) as info:
        mm.load(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def test_missing_file_is_a_value_error_naming_it(tmp_path):
    path = tmp_path / "nowhere.json"
    with pytest.raises(ValueError, match="nowhere.json: not found"):
        mm.load(path)


def test_binary_file_is_a_value_error(tmp_path):
    path = tmp_path / "model.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="model.json"):
        mm.load(path)


# ---- the processor ---------------------------------------------------------------------------


def started(tmp_path=None, seed=0, **options) -> MarkovProcessor:
    if tmp_path is not None and "weights" not in options:
        path = tmp_path / "scale.json"
        scale_model(alpha=0.01).save(path)
        options["weights"] = str(path)
    proc = MarkovProcessor()
    proc.start(Context(name="markov", options=options, seed=seed))
    return proc


def press(proc, button, t=0, source="pad", velocity=None) -> list[Out]:
    return list(proc.on_event(ButtonEvent(t, source, button, True, velocity)))


def release(proc, button, t=0, source="pad") -> list[Out]:
    return list(proc.on_event(ButtonEvent(t, source, button, False)))


def test_press_then_release_pairs_note_on_and_off(tmp_path):
    proc = started(tmp_path, start_pitch=64, velocity=90)
    (on,) = press(proc, 4, t=1000)
    assert on == Out(1000, (NOTE_ON, 65, 90), voice="pad:4")  # the scale model's only step up
    (off,) = release(proc, 4, t=2000)
    assert off == Out(2000, (NOTE_OFF, 65, 0), voice="pad:4")


def test_overlapping_buttons_each_end_their_own_note(tmp_path):
    proc = started(tmp_path, start_pitch=64)
    (a,) = press(proc, 4)  # 65
    (b,) = press(proc, 4, source="keys")  # another device's button 4: its own voice, from 65
    (c,) = press(proc, 3)  # down from 67
    pitches = {o.voice: o.message[1] for o in (a, b, c)}
    assert pitches == {"pad:4": 65, "keys:4": 67, "pad:3": 65}
    offs = release(proc, 3) + release(proc, 4, source="keys") + release(proc, 4)
    assert [(o.voice, o.message) for o in offs] == [
        ("pad:3", (NOTE_OFF, 65, 0)), ("keys:4", (NOTE_OFF, 67, 0)), ("pad:4", (NOTE_OFF, 65, 0))]


def test_repress_of_a_held_button_does_nothing(tmp_path):
    proc = started(tmp_path, start_pitch=64)
    (on,) = press(proc, 4)
    assert press(proc, 4) == []  # key repeat or bounce: nothing, and the context does not move
    (off,) = release(proc, 4)
    assert off.message == (NOTE_OFF, on.message[1], 0)
    assert release(proc, 4) == []  # a second release has nothing to end
    (again,) = press(proc, 4)
    assert again.message[1] == on.message[1] + 2  # continues from 65: a step up is 67


def test_button_velocity_wins_over_the_default(tmp_path):
    proc = started(tmp_path, velocity=100)
    (on,) = press(proc, 5, velocity=33)
    assert on.message[2] == 33


def test_played_note_sets_the_context_and_emits_nothing(tmp_path):
    proc = started(tmp_path, start_pitch=60)
    assert list(proc.on_event(MidiEvent(0, "kbd", (NOTE_ON, 71, 80)))) == []
    assert list(proc.on_event(MidiEvent(0, "kbd", (NOTE_OFF, 71, 0)))) == []
    (on,) = press(proc, 4)
    assert on.message[1] == 72  # from 71 the scale goes to 72


def test_same_seed_same_notes_different_seed_different_notes():
    def play(seed):
        proc = started(seed=seed)  # the shipped weights
        notes = []
        for i, b in enumerate([4, 5, 6, 3, 2, 7, 0, 1] * 6):
            notes += [o.message[1] for o in press(proc, b, t=i)]
            release(proc, b, t=i)
        return notes

    assert play(7) == play(7)
    assert play(7) != play(8)


def test_processor_plays_within_its_range(tmp_path):
    proc = started(tmp_path, start_pitch=70, low=64, high=72)
    for i in range(200):
        b = i % 8
        (on,) = press(proc, b)
        assert 64 <= on.message[1] <= 72
        release(proc, b)


@pytest.mark.parametrize("options, match", [
    ({"low": 90, "high": 80}, "low/high"),
    ({"high": 128}, "low/high"),
    ({"velocity": 0}, "velocity"),
    ({"start_pitch": 200}, "start_pitch"),
    ({"temperature": -1.0}, "temperature"),
    ({"temprature": 1.0}, "unknown option"),
    ({"temperature": "hot"}, "must be float"),
])
def test_bad_options_are_processor_errors(options, match):
    with pytest.raises(ProcessorError, match=match):
        started(**options)


def test_corrupt_weights_stop_start_with_a_value_error_naming_them(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{}")
    with pytest.raises(ValueError, match=re.escape(str(path))):
        started(weights=str(path))


# ---- shipped weights and training ------------------------------------------------------------


def test_shipped_weights_load_with_their_model_card():
    from daemon.processor import package_file

    path = package_file(MarkovProcessor, MarkovProcessor.model_files[0])
    model = mm.load(path)
    assert model.transitions > 100_000
    meta = model.meta
    assert meta["data"] == "nottingham-jukedeck/MIDI/melody"
    val, test = meta["metrics"]["validation"], meta["metrics"]["test"]
    assert val["perplexity"] < val["unigram_perplexity"]
    assert test["perplexity"] < test["unigram_perplexity"]
    card = path.with_suffix(".md").read_text()
    for needed in ["GPL-3.0", "MIT", "sha1(stem) mod 10", f"alpha = {model.config.alpha:g}"]:
        assert needed in card
    for number in [val["perplexity"], val["unigram_perplexity"], test["perplexity"],
                   test["unigram_perplexity"]]:
        assert f"{number:.2f}" in card  # the card and the file tell the same story
    for split in ("train", "validation", "test"):
        assert f"{meta['files'][split]:,}" in card and f"{meta['notes'][split]:,}" in card
    assert path.stat().st_size < 50_000


TUNE = [60, 62, 64, 65, 67, 65, 64, 62, 60]


def _write_tune(path: Path, pitches: list[int]) -> None:
    midi = mido.MidiFile(ticks_per_beat=96)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    for p in pitches:
        track += [mido.Message("note_on", note=p, velocity=80, time=0),
                  mido.Message("note_off", note=p, velocity=0, time=96)]
    midi.save(path)


def test_train_command_writes_a_loadable_model(tmp_path):
    from daemon.commands.train import train

    data = tmp_path / "tunes"
    data.mkdir()
    stems = {"train": None, "validation": None, "test": None}
    i = 0
    while None in stems.values() or i < 12:  # at least one file in each split
        stems[mm.split_of(f"t{i}")] = f"t{i}"
        _write_tune(data / f"t{i}.mid", TUNE)
        i += 1
    out = tmp_path / "out" / "model.json"
    result = CliRunner().invoke(train, ["markov", "--data", str(data), "--out", str(out),
                                        "--alpha", "0.5"])
    assert result.exit_code == 0, result.output
    assert "perplexity validation" in result.output
    model = mm.load(out)
    assert model.config.alpha == 0.5
    assert sum(model.meta["files"].values()) == i
    assert model.counts[60, 62] == model.meta["files"]["train"]
    test = model.meta["metrics"]["test"]
    assert test["perplexity"] == pytest.approx(model.perplexity([TUNE]), abs=1e-4)
    assert test["perplexity"] < test["unigram_perplexity"]


def test_train_command_refuses_a_missing_data_folder(tmp_path):
    from daemon.commands.train import train

    result = CliRunner().invoke(train, ["markov", "--data", str(tmp_path / "nope"),
                                        "--out", str(tmp_path / "m.json")])
    assert result.exit_code == 2
    assert "nope" in result.output and "does not exist" in result.output
    assert not (tmp_path / "m.json").exists()


def test_train_module_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys, daemon.commands.train, markov.cli, markov.processor; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_a_fresh_start_never_sticks_at_an_edge():
    """Fresh from the start (mid-range), buttons 0-3 over and over: the melody goes down to the
    lowest note and then keeps moving instead of repeating it."""
    proc = MarkovProcessor()
    proc.start(Context(name="markov", options={}, seed=3))
    played = []
    for i in range(40):
        t = i * 200_000_000
        out = list(proc.on_event(ButtonEvent(t, "kbd", i % 4, True)))
        played += [o.message[1] for o in out if o.message[0] & 0xF0 == 0x90 and o.message[2]]
        proc.on_event(ButtonEvent(t + 100_000_000, "kbd", i % 4, False))
    repeats = sum(a == b for a, b in zip(played, played[1:]))
    assert played[0] < (55 + 88) // 2 + 1 and repeats <= 2, played
