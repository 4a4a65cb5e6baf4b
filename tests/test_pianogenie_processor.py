"""Piano Genie export (TorchScript step parity), the ``pianogenie`` processor, and its commands."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon import runtime
from daemon.events import CONTROL_CHANGE, NOTE_OFF, NOTE_ON, ButtonEvent, MidiEvent
from daemon.processor import Context, ProcessorError
from pianogenie import data, export
from pianogenie.model import PianoGenie, PianoGenieConfig
from pianogenie.processor import (LOWEST_PITCH, START_KEY, PianoGenieProcessor, allowed_keys,
                                  dt_bucket, parse_scale)

MS = 1_000_000


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random Piano Genie, exported: (eager model, folder with the two artefacts)."""
    torch.manual_seed(0)
    model = PianoGenie(PianoGenieConfig(rnn_dim=16)).eval()
    with torch.no_grad():  # sharper than init, so that temperature and keys matter
        model.decoder.output.weight.mul_(20)
    out = tmp_path_factory.mktemp("pg")
    export.export_model(model, out)
    return model, out


class QuickStart(PianoGenieProcessor):
    warmup_calls = 2  # the tests time nothing; start-up stays cheap for the property tests


def make(tiny, seed=0, **options) -> PianoGenieProcessor:
    proc = QuickStart()
    proc.start(Context("pianogenie", {"weights": str(tiny[1] / export.DECODER_FILE), **options}, seed=seed))
    return proc


def press(proc, button, t_ms, source="kb", velocity=None):
    return list(proc.on_event(ButtonEvent(int(t_ms * MS), source, button, True, velocity)))


def release(proc, button, t_ms, source="kb"):
    return list(proc.on_event(ButtonEvent(int(t_ms * MS), source, button, False)))


# ---- export ----------------------------------------------------------------------------------


def test_exported_decoder_step_matches_eager_model_over_a_whole_sequence(tiny):
    model, out = tiny
    step = runtime.load_torchscript(out / export.DECODER_FILE)
    torch.manual_seed(1)
    keys = torch.randint(0, 88, (3, 128))
    dt = torch.randint(0, 33, (3, 128))
    with torch.no_grad():
        buttons = model.buttons(keys, dt)
        full, _ = model.decoder(model.quantizer.to_real(buttons).unsqueeze(-1), keys, dt)
        h, c = step.init_state(3)
        prev = torch.full((3,), START_KEY)
        for i in range(128):
            logits, h, c = step(buttons[:, i], prev, dt[:, i], h, c)
            torch.testing.assert_close(logits, full[:, i], atol=1e-5, rtol=0)
            prev = keys[:, i]


def test_exported_encoder_gives_the_models_buttons(tiny):
    model, out = tiny
    enc = runtime.load_torchscript(out / export.ENCODER_FILE)
    keys = torch.randint(0, 88, (1, 200))
    dt = torch.randint(0, 33, (1, 200))
    assert torch.equal(enc(keys, dt), model.buttons(keys, dt))


def test_the_baseline_is_not_exported(tmp_path):
    with pytest.raises(ValueError):
        export.export_model(PianoGenie(PianoGenieConfig(num_buttons=0, rnn_dim=8)), tmp_path)


# ---- ready rows ------------------------------------------------------------------------------


def test_ready_rows_equal_a_fresh_step(tiny):
    proc = make(tiny, temperature=0.7)
    for i, b in enumerate([3, 5, 0, 7]):
        press(proc, b, 100 * i)
        release(proc, b, 100 * i + 50)
    now = 300 * MS + 70 * MS  # 70 ms after the last press
    proc.refresh(now)
    bucket = dt_bucket(70 * MS)
    assert set(proc._ready) == {bucket, bucket + 1}
    step = proc.step
    for b in range(8):
        logits, h, c = step(np.array([b]), np.array([proc.prev_key]), np.array([bucket]), proc.h, proc.c)
        with torch.no_grad():
            probs = torch.softmax(torch.from_numpy(logits + proc._mask) / 0.7, -1)[0].numpy()
        row = proc._ready[bucket]
        np.testing.assert_allclose(row.probs[b], probs, atol=1e-6)
        np.testing.assert_allclose(row.h[:, b:b + 1], h, atol=1e-6, rtol=0)
        np.testing.assert_allclose(row.c[:, b:b + 1], c, atol=1e-6, rtol=0)


def test_ready_rows_refresh_when_the_bucket_changes_and_saturate(tiny):
    proc = make(tiny)
    proc.refresh(0)
    assert set(proc._ready) == {32}  # before any press: the saturated bucket
    press(proc, 2, 1000)
    assert proc._ready == {}
    proc.refresh(1000 * MS + 1 * MS)
    assert set(proc._ready) == {0, 1}
    first = proc._ready[0]
    proc.refresh(1000 * MS + 2 * MS)
    assert proc._ready[0] is first  # same bucket: nothing recomputed
    proc.refresh(1000 * MS + 100 * MS)
    assert set(proc._ready) == {3, 4}
    proc.refresh(1000 * MS + 5000 * MS)
    assert set(proc._ready) == {32}


def test_idle_refresh_does_not_change_what_is_played(tiny):
    """A press takes the same key whether its row was ready (on_idle ran) or computed at the press."""
    presses = [(b, t) for b, t in zip([0, 3, 7, 4, 4, 1, 6, 2, 5, 7], range(0, 2000, 137))]
    eager, lazy = make(tiny, seed=5), make(tiny, seed=5)
    played = {id(eager): [], id(lazy): []}
    for b, t in presses:
        eager.on_idle(int(t * MS) - 1)
        for proc in (eager, lazy):
            played[id(proc)] += [o.message[1] for o in press(proc, b, t)]
            release(proc, b, t + 20)
    assert played[id(eager)] == played[id(lazy)]
    assert eager.misses == 0 and lazy.misses == len(presses)


# ---- the processor ---------------------------------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 9), st.booleans(), st.sampled_from(["kb", "pad"]),
                          st.integers(0, 300)), max_size=40))
def test_every_note_on_gets_its_note_off_on_release(tiny, events):
    proc = make(tiny)
    sounding: dict[tuple[str, int], int] = {}
    t = 0
    for button, pressed, source, gap in events:
        t += gap
        outs = (press if pressed else release)(proc, button, t, source)
        key = (source, button)
        if button >= 8:
            assert outs == []
        elif pressed and key in sounding:
            assert outs == []  # a held button pressed again does nothing
        elif pressed:
            assert len(outs) == 1 and outs[0].message[0] == NOTE_ON and outs[0].voice == f"{source}:{button}"
            assert outs[0].message[1] not in sounding.values()  # no key twice at once
            sounding[key] = outs[0].message[1]
        elif key in sounding:
            assert [o.message for o in outs] == [(NOTE_OFF, sounding.pop(key), 0)]
        else:
            assert outs == []


def test_temperature_zero_is_deterministic_and_seed_free(tiny):
    runs = []
    for seed in (0, 1, 2):
        proc = make(tiny, seed=seed, temperature=0.0)
        notes = []
        for i, b in enumerate([0, 1, 2, 3, 4, 5, 6, 7, 7, 3, 0]):
            notes += [o.message[1] for o in press(proc, b, 120 * i)]
            release(proc, b, 120 * i + 60)
        runs.append(notes)
    assert runs[0] == runs[1] == runs[2]


def test_a_seed_fixes_the_notes_at_the_live_temperature(tiny):
    def play(seed):
        proc = make(tiny, seed=seed)
        out = []
        for i, b in enumerate([0, 4, 7, 2, 2, 5, 1] * 3):
            out += [o.message[1] for o in press(proc, b, 90 * i)]
            release(proc, b, 90 * i + 45)
        return out
    assert play(3) == play(3)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["C major", "A minor", "F# dorian", "Bb minor pentatonic", "D blues", "E mixolydian"]),
       st.integers(21, 90), st.integers(0, 40), st.floats(0.0, 2.0),
       st.lists(st.integers(0, 7), min_size=1, max_size=30))
def test_scale_and_range_restriction_never_leave_the_scale(tiny, scale, low, span, temperature, buttons):
    high = min(low + span + 12, 108)
    proc = make(tiny, scale=scale, low=low, high=high, temperature=temperature)
    classes = parse_scale(scale)
    for i, b in enumerate(buttons):
        for o in press(proc, b, 40 * i):
            pitch = o.message[1]
            assert pitch % 12 in classes and low <= pitch <= high
        if i % 3:
            release(proc, b, 40 * i + 20)


def test_scales_parse():
    assert parse_scale("C major") == {0, 2, 4, 5, 7, 9, 11}
    assert parse_scale("a minor") == parse_scale("C major")
    assert parse_scale("F# minor pentatonic") == {6, 9, 11, 1, 4}
    assert parse_scale("") == set(range(12))
    with pytest.raises(ValueError):
        parse_scale("H major")
    mask = allowed_keys("C major", 60, 72)
    assert [int(k) + LOWEST_PITCH for k in np.flatnonzero(mask)] == [60, 62, 64, 65, 67, 69, 71, 72]


def test_four_button_mode_plays_model_buttons_0_2_5_7(tiny):
    four = make(tiny, buttons=4, temperature=0.0)
    eight = make(tiny, temperature=0.0)
    for i, (b4, b8) in enumerate(zip([0, 1, 2, 3, 3, 0], [0, 2, 5, 7, 7, 0])):
        assert [o.message for o in press(four, b4, 100 * i)] == [o.message for o in press(eight, b8, 100 * i)]
        release(four, b4, 100 * i + 50)
        release(eight, b8, 100 * i + 50)
    assert press(four, 4, 1000) == [] and press(four, 7, 1000) == []


def test_a_chord_is_fed_low_button_first(tiny):
    """5 then 2 within chord_ms: the model's memory afterwards is that of 2 then 5."""
    proc = make(tiny, temperature=0.0, chord_ms=5.0)
    press(proc, 4, 0)
    release(proc, 4, 100)
    k5 = press(proc, 5, 500)[0].message[1] - LOWEST_PITCH
    k2 = press(proc, 2, 502)[0].message[1] - LOWEST_PITCH
    ref = make(tiny, temperature=0.0, chord_ms=5.0)
    press(ref, 4, 0)
    release(ref, 4, 100)
    ref._held[("other", 5)] = k5 + LOWEST_PITCH  # 5's key sounds, so 2 avoids it in both
    assert press(ref, 2, 500)[0].message[1] - LOWEST_PITCH == k2  # drawn before 5, as if first
    ref._feed(5, 0, k5)  # then 5 with its already sounding key
    torch.testing.assert_close(proc.h, ref.h, atol=1e-6, rtol=0)
    torch.testing.assert_close(proc.c, ref.c, atol=1e-6, rtol=0)
    assert proc.prev_key == ref.prev_key == k5


def test_presses_further_apart_than_chord_ms_are_not_reordered(tiny):
    proc = make(tiny, temperature=0.0, chord_ms=5.0)
    press(proc, 5, 0)
    k2 = press(proc, 2, 40)[0].message[1] - LOWEST_PITCH
    assert proc.prev_key == k2


def test_velocity_from_input_else_default(tiny):
    proc = make(tiny, velocity=77)
    assert press(proc, 0, 0, velocity=33)[0].message[2] == 33
    assert press(proc, 1, 10)[0].message[2] == 77


def test_reset_by_cc_and_by_button_combination(tiny):
    proc = make(tiny, reset_cc=20, reset_buttons=[0, 7])
    press(proc, 3, 0)
    assert proc.prev_key != START_KEY
    assert list(proc.on_event(MidiEvent(10 * MS, "kb", (CONTROL_CHANGE, 20, 127)))) == []
    assert proc.prev_key == START_KEY and proc.last_press_ns is None and not proc.h.any()
    press(proc, 0, 100)
    assert proc.prev_key != START_KEY
    assert press(proc, 7, 110) == []  # completes the combination: reset, no note
    assert proc.prev_key == START_KEY
    release(proc, 0, 200)
    release(proc, 7, 200)
    assert len(press(proc, 7, 300)) == 1


def test_sustain_passes_through(tiny):
    proc = make(tiny)
    outs = list(proc.on_event(MidiEvent(5, "kb", (CONTROL_CHANGE, 64, 127))))
    assert [o.message for o in outs] == [(CONTROL_CHANGE, 64, 127)]


@pytest.mark.parametrize("options", [{"buttons": 6}, {"temperature": -1.0}, {"low": 80, "high": 70},
                                     {"scale": "X major"}, {"scale": "C major", "low": 61, "high": 61},
                                     {"reset_buttons": [9]}, {"nope": 1}, {"decoder": "vqvae"}])
def test_bad_options_are_one_line_errors(tiny, options):
    with pytest.raises(ProcessorError):
        make(tiny, **options)


def test_a_bad_weights_file_is_a_processor_error(tmp_path, tiny):
    bad = tmp_path / "x.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(ProcessorError, match="x.pt"):
        make(tiny, weights=str(bad))


@pytest.mark.parametrize("decoder, card", [("iqae", "pianogenie.md"), ("vq", "pianogenie_vq.md")])
def test_shipped_weights_load_and_play_in_range(decoder, card, caplog):
    proc = PianoGenieProcessor()
    with caplog.at_level("INFO"):
        proc.start(Context("pianogenie", {"decoder": decoder}, seed=0))
    dec_file, enc_file = export.artefact_files(decoder == "vq")
    assert dec_file in caplog.text  # the decoder asked for is the one that plays
    pitches = []
    for i, b in enumerate([0, 2, 4, 6, 7, 5, 3, 1]):
        pitches += [o.message[1] for o in press(proc, b, 200 * i)]
        release(proc, b, 200 * i + 100)
    assert len(pitches) == 8 and all(21 <= p <= 108 for p in pitches)
    assert (export.WEIGHTS_DIR / enc_file).is_file()
    text = (export.WEIGHTS_DIR / card).read_text()
    assert "Licence: CC BY-NC-SA 4.0 (weights, trained on MAESTRO via ASAP); the code is MIT" in text


# ---- commands --------------------------------------------------------------------------------


def test_buttons_command_prints_one_button_per_onset(tiny, tmp_path):
    import pretty_midi

    from pianogenie.cli import buttons_cmd
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(0)
    for i, p in enumerate([60, 62, 64, 65, 67, 20]):  # 20 is below the piano: not played
        inst.notes.append(pretty_midi.Note(velocity=90, pitch=p, start=0.5 * i, end=0.5 * i + 0.4))
    pm.instruments.append(inst)
    song = tmp_path / "song.mid"
    pm.write(str(song))
    result = CliRunner().invoke(buttons_cmd, [str(song), "--weights", str(tiny[1] / export.ENCODER_FILE),
                                              "--midi", str(tmp_path / "b.mid")])
    assert result.exit_code == 0, result.output
    lines = [ln for ln in result.output.splitlines() if "  button " in ln]
    assert len(lines) == 5 and "C4" in lines[0] and "G4" in lines[4]
    written = pretty_midi.PrettyMIDI(str(tmp_path / "b.mid")).instruments[0].notes
    assert len(written) == 5
    assert {n.pitch for n in written} <= set(export.BUTTON_NOTES)  # plays back as the same buttons
    assert all(ln.split("button ")[1][0] in "01234567" for ln in lines)  # numbered 0-7
    taught = [int(ln.split("button ")[1][0]) for ln in lines]
    assert min(taught) == (7 - (max(taught) - min(taught))) // 2  # the span centred, as a person places it
    raw = CliRunner().invoke(buttons_cmd, [str(song), "--weights", str(tiny[1] / export.ENCODER_FILE),
                                           "--as-encoded"])
    encoded = [int(ln.split("button ")[1][0]) for ln in raw.output.splitlines() if "  button " in ln]
    keys, dt = data.encode(np.array([0.5 * i for i in range(5)]), np.array([60, 62, 64, 65, 67]))
    with torch.no_grad():
        assert encoded == tiny[0].buttons(torch.from_numpy(keys)[None], torch.from_numpy(dt)[None])[0].tolist()
    assert len({t - e for t, e in zip(taught, encoded)}) == 1  # moved whole: the same steps and leaps
    assert ("centred on the 8 buttons" in result.output) == (taught != encoded)


def test_buttons_leaves_a_vq_vaes_codes_where_the_encoder_puts_them(tmp_path):
    import pretty_midi

    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(0)
    for i, p in enumerate([40, 41, 43, 45, 43, 41]):  # low: the IQAE's encoder would be moved up
        inst.notes.append(pretty_midi.Note(velocity=90, pitch=p, start=0.3 * i, end=0.3 * i + 0.25))
    pm.instruments.append(inst)
    pm.write(str(tmp_path / "low.mid"))
    weights = export.WEIGHTS_DIR / export.VQ_ENCODER_FILE
    result = export.buttons_for_file(tmp_path / "low.mid", weights)
    keys, dt = data.encode(np.array(result["times"]), np.array(result["pitches"]))
    with torch.no_grad():
        want = runtime.load_torchscript(weights)(torch.from_numpy(keys)[None], torch.from_numpy(dt)[None])[0]
    assert result["moved"] == 0 and result["buttons"] == want.tolist()  # codes have no order to centre
    iqae = export.buttons_for_file(tmp_path / "low.mid")
    assert iqae["moved"] != 0 and min(iqae["buttons"]) == (7 - (max(iqae["buttons"]) - min(iqae["buttons"]))) // 2


# ---- rows made on the worker thread -----------------------------------------------------------


class DeferredHost:
    """A host whose jobs wait in a list until the test runs them (a late worker); running one
    hands its pieces to the processor's ``on_piece``, as the engine thread does."""

    def __init__(self):
        self.jobs = []

    def submit(self, label, job, on_piece):
        self.jobs.append(lambda: [list(on_piece(piece)) for piece in job(None)])

    def retract(self, *args):
        return 0

    def transport(self, label):
        return None


def make_deferred(tiny, **options):
    """A processor whose worker jobs wait in a list until the test runs them (a late worker)."""
    host = DeferredHost()
    proc = PianoGenieProcessor()
    proc.start(Context("pianogenie", {"weights": str(tiny[1] / export.DECODER_FILE), **options},
                       seed=0, host=host))
    return proc, host.jobs


def test_worker_rows_equal_the_rows_refresh_makes(tiny):
    proc, jobs = make_deferred(tiny, temperature=0.7)
    ref = make(tiny, temperature=0.7)
    for p in (proc, ref):
        press(p, 2, 0)
        release(p, 2, 50)
    now = 70 * MS
    list(proc.on_idle(now))
    assert proc._ready == {} and len(jobs) == 1  # nothing ready until the worker has run
    list(proc.on_idle(now + MS))
    assert len(jobs) == 1  # the same rows are not asked for twice
    jobs.pop()()
    ref.refresh(now)
    assert set(proc._ready) == set(ref._ready)
    for bucket, row in ref._ready.items():
        np.testing.assert_allclose(proc._ready[bucket].probs, row.probs, atol=1e-6)


def test_rows_a_worker_finishes_after_a_press_are_never_used(tiny):
    proc, jobs = make_deferred(tiny, temperature=0.0)
    ref = make(tiny, temperature=0.0)
    press(proc, 3, 0)
    press(ref, 3, 0)
    list(proc.on_idle(40 * MS))  # a refresh for the state after the first press is queued
    stale = jobs.pop()
    key_proc = press(proc, 5, 60)  # the musician plays before the worker is done
    key_ref = press(ref, 5, 60)
    stale()  # the late rows belong to the old state
    assert proc._ready == {}
    assert key_proc == key_ref


@pytest.mark.parametrize("flags, ckpt", [(["--vq"], "model"), ([], "vq")])
def test_export_refuses_a_checkpoint_of_the_other_bottleneck_in_one_line(tmp_path, flags, ckpt):
    from pathlib import Path

    from daemon.cli import cli
    path = Path(__file__).resolve().parents[1] / "checkpoints" / "pianogenie" / ckpt / "ckpt.pt"
    result = CliRunner().invoke(cli, ["export", "pianogenie", *flags, "--checkpoint", str(path),
                                      "--out", str(tmp_path)])
    assert result.exit_code == 2 and "VQ-VAE checkpoint" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not any(tmp_path.iterdir())  # nothing written
