"""The Drum VAE and the Music Transformer through real JACK ports, with their shipped weights (or,
in a checkout without them, a tiny exported model of the same format).

Drums: a JACK client is the DAW (MIDI clock at 120 and 93 BPM, Start, Stop, a lost clock); the
same clock played offline through the same processor and seed says which notes are due when,
so every note that arrives is checked against its own due time. Answers: a phrase, a silence,
an answer on channel 2; playing again stops it and nothing is left sounding."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from jack_helpers import NOTE_OFF, NOTE_ON, Daw, config_text, drain, is_on, play_phrase, sounding_after
from offline_helpers import MS, offline_core

from daemon.events import CLOCK, START, STOP, MidiEvent, now_ns
from daemon.offline import _drive

jack = pytest.mark.jack
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def drum_weights(tmp_path_factory) -> Path:
    shipped = ROOT / "drumvae" / "weights" / "drumvae.pt"
    if shipped.is_file():
        return shipped
    from drumvae.export import export_model
    from drumvae.model import DrumVAE, DrumVAEConfig

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("drumvae")
    export_model(DrumVAE(DrumVAEConfig(enc_hidden=16, z_dim=8, dec_hidden=32, num_styles=2)), ["rock", "funk"], out)
    return out / "drumvae.pt"


@pytest.fixture(scope="module")
def answer_weights(tmp_path_factory) -> Path:
    shipped = ROOT / "musiclm" / "weights" / "musiclm_maestro.pt"
    if shipped.is_file():
        return shipped
    from musiclm import tokenizer as tk
    from musiclm.export import export_model
    from musiclm.model import MusicTransformer, MusicTransformerConfig

    torch.manual_seed(0)
    model = MusicTransformer(MusicTransformerConfig(max_len=64, n_layer=1, n_head=2, d_model=32, d_ff=64))
    return export_model(model, tmp_path_factory.mktemp("musiclm") / "musiclm_maestro.pt", tk.PERFORMANCE_VOCAB)


class PrerollDaw(Daw):
    """A DAW that sends clock before it starts (as most do), then Start and clock."""

    def run(self) -> None:
        tick_ns = 60e9 / self.bpm / 24
        t0 = now_ns() + 20 * MS
        self.times: list[tuple[int, tuple[int, ...]]] = []
        for i in range(-24, self.ticks):
            due = t0 + round((i + 24) * tick_ns)
            while (left := due - now_ns()) > 0:
                time.sleep(min(left / 1e9, 0.005))
            if i == 0:
                self.times.append((self.client.send((START,)), (START,)))
            t = self.client.send((CLOCK,))
            self.times.append((t, (CLOCK,)))
            if i >= 0:
                self.sent.append(t)


@jack
@pytest.mark.parametrize("bpm", [120, 93])
def test_drums_play_each_note_at_its_due_time_on_the_daws_clock(rig, drum_weights, bpm):
    options = f'options = {{ weights = "{drum_weights}" }}'
    rig.genie(config_text(f'name = "drumvae"\nclock = true\nclock_lost_ms = 300\n{options}',
                          midi="echo_window_ms = 0"))
    c = rig.client()
    daw = PrerollDaw(c, bpm, 24 * 8)  # 2 bars, then the clock stops: lost
    daw.start()
    daw.join(30)
    got = drain(c)
    live = [(t, m) for t, m in got if is_on(m)]
    # the same clock, offline, through the same processor and seed: which note is due when
    t0 = daw.times[0][0]
    core, clock, sent = offline_core(
        {"processor": [{"name": "drumvae", "clock": True, "clock_lost_ms": 300.0,
                        "options": {"weights": str(drum_weights)}}]},
        {"drumvae": __import__("drumvae.processor", fromlist=["x"]).DrumVAEProcessor})
    _drive(core, [MidiEvent(t - t0, "daw", m) for t, m in daw.times], clock)
    due = [(t + t0, m) for t, m in sent if is_on(m)]
    assert live and [m for _, m in live] == [m for _, m in due]  # the same notes, channel 10
    assert all(m[0] == NOTE_ON | 9 for _, m in live)
    period = 256 / 48000 * 1e9  # functional bounds here; genie bench drumvae measures at 64 frames
    start = daw.sent[0]
    # the notes of the downbeat that Start plays are placed when the first clock arrives (one
    # JACK hop late, then one out); every later note is placed ahead on the clock's line and
    # lands within a period (JACK writes output at the start of a cycle) of its due time, give or
    # take a cycle the loaded test machine's non-real-time server runs late (genie bench clock
    # measures the jitter itself, at 64 frames)
    lag = [a - d for (a, _), (d, _) in zip(live, due) if d > start + 60e9 / bpm / 4]
    first = [a - d for (a, _), (d, _) in zip(live, due) if d <= start + 60e9 / bpm / 4]
    assert max(lag) - min(lag) < 2 * period + 2 * MS, [round(x / MS, 2) for x in lag]
    assert max(first, default=0) < 3 * period + 3 * MS, [round(x / MS, 2) for x in first]
    assert sounding_after([m for _, m in got]) == set()


@jack
def test_drums_stop_with_the_daw_and_end_on_sigterm(rig, drum_weights):
    options = f'options = {{ weights = "{drum_weights}" }}'
    proc = rig.genie(config_text(f'name = "drumvae"\nclock = true\n{options}', midi="echo_window_ms = 0"))
    c = rig.client()
    daw = PrerollDaw(c, 120, 24 * 3 + 7)
    daw.start()
    daw.join(30)
    c.send((STOP,))
    first = drain(c)
    assert [m for _, m in first if is_on(m)]
    assert sounding_after([m for _, m in first]) == set()
    daw = PrerollDaw(c, 120, 24 * 2 + 5)  # again, and the daemon is stopped mid-groove
    daw.start()
    daw.join(30)
    import signal

    proc.stop(signal.SIGTERM, timeout_s=15)
    rest = drain(c, quiet_s=0.5)
    assert sounding_after([m for _, m in first + rest]) == set()


@jack
def test_an_answer_follows_a_phrase_and_stops_when_the_musician_plays(rig, answer_weights):
    options = (f'options = {{ weights = "{answer_weights}", silence_ms = 500.0, length_s = 30.0, '
               f'length_notes = 400 }}')
    rig.genie(config_text(f'name = "musiclm"\n{options}', midi="echo_window_ms = 0"))
    c = rig.client()
    play_phrase(c)
    quiet_at = now_ns()
    deadline = time.monotonic() + 10
    answer = []
    while time.monotonic() < deadline and not any(is_on(m) for _, m in answer):
        answer += c.expect(1, 0.5)
    first = next(t for t, m in answer if is_on(m))
    assert all(m[0] & 0x0F == 1 for _, m in answer if is_on(m))  # the answer's own channel (2)
    assert first - quiet_at >= 450 * MS  # it waited for the silence
    time.sleep(1.0)
    answer += drain(c, quiet_s=0.05, limit_s=0.3)
    cut = c.send((NOTE_ON, 48, 90))
    rest = drain(c, quiet_s=0.4, limit_s=3.0)
    c.send((NOTE_OFF, 48, 0))
    late = [m for t, m in rest if is_on(m) and t > cut + 30 * MS]
    assert late == [], late  # the answer stopped (the next one waits for the next silence)
    assert sounding_after([m for _, m in answer + rest]) == set()
