"""Drum VAE model: transforms, shapes, loss, a few training steps, resume, export parity, metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from drumvae import data, evaluate
from drumvae.model import HUMANIZE, RECONSTRUCT, TAP, TAP_FIXED, DrumVAE, DrumVAEConfig, transform

TINY = DrumVAEConfig(enc_hidden=16, z_dim=8, dec_hidden=16, dec_layers=2, num_styles=2, style_dim=2)


def _pattern() -> torch.Tensor:
    x = torch.zeros(1, 32, 27)
    x[0, 0, [0, 2]] = 1  # kick + hat on step 0
    x[0, 0, [9, 11]] = torch.tensor([0.8, 0.5])
    x[0, 0, [18, 20]] = torch.tensor([0.3, -0.2])
    x[0, 4, 1], x[0, 4, 10], x[0, 4, 19] = 1, 0.9, 0.1  # snare on step 4
    return x


def test_transforms_follow_groovae():
    x = _pattern()
    assert torch.equal(transform(x, torch.tensor([RECONSTRUCT])), x)
    h = transform(x, torch.tensor([HUMANIZE]))
    assert torch.equal(h[..., :9], x[..., :9]) and not h[..., 9:].any()
    t = transform(x, torch.tensor([TAP]))
    assert t[0, 0].nonzero().flatten().tolist() == [3, 12, 21]  # the loudest hit (kick) on lane 3
    assert t[0, 0, 12] == pytest.approx(0.8) and t[0, 0, 21] == pytest.approx(0.3)
    assert t[0, 4, 3] == 1 and t[0, 4, 12] == pytest.approx(0.9)
    f = transform(x, torch.tensor([TAP_FIXED]))
    assert not f[..., 9:18].any() and f[0, 0, 21] == pytest.approx(0.3)


def test_forward_shapes_and_loss():
    torch.manual_seed(0)
    m = DrumVAE(TINY)
    x = torch.from_numpy(data.synthetic(4, styles=("a", "b")).features())
    which, style, fill = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 0, 1]), torch.tensor([0, 0, 1, 1])
    (logits, vel, off), loss, terms = m(x, which, style, fill)
    assert logits.shape == vel.shape == off.shape == (4, 32, 9)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert set(terms) == {"hits_bce", "vel_se", "off_se", "kl_bits"}
    assert (vel >= 0).all() and (vel <= 1).all() and (off.abs() <= 1).all()


def test_free_running_decode_matches_teacher_forcing_on_its_own_output():
    torch.manual_seed(0)
    m = DrumVAE(TINY).eval()
    z, style, fill = torch.randn(3, 8), torch.tensor([0, 1, 0]), torch.tensor([1, 0, 0])
    noise = torch.rand(3, 32, 9)
    lg, v, o = m.decoder.sample(z, style, fill, noise, 1.0)
    hits = (noise < torch.sigmoid(lg)).float()
    lg2, v2, o2 = m.decoder(z, style, fill, torch.cat([hits, v, o], -1))
    torch.testing.assert_close(lg, lg2, atol=1e-5, rtol=0)
    torch.testing.assert_close(v, v2 * hits, atol=1e-5, rtol=0)


def _tiny_cfg(tmp_path, steps: int):
    from drumvae.train import TrainConfig
    from modelkit.loop import LoopConfig

    return TrainConfig(model=TINY, batch_size=16, eval_windows=8,
                       loop=LoopConfig(out_dir=str(tmp_path / "run"), steps=steps, lr=3e-3, ckpt_every=10,
                                       eval_every=10, log_every=5, threads=1))


def test_a_few_training_steps_reduce_the_loss_and_resume_exactly(tmp_path):
    from drumvae.train import train

    w = data.synthetic(64, styles=("a", "b"))
    ckpt = train(_tiny_cfg(tmp_path, 40), windows=w, progress=False)
    losses = [h["loss"] for h in ckpt["history"] if "loss" in h]
    assert ckpt["step"] == 40 and losses[-1] < losses[0]
    # resume to 60 == straight to 60
    train(_tiny_cfg(tmp_path, 60), windows=w, progress=False)
    straight = train(_tiny_cfg(tmp_path / "b", 60), windows=w, progress=False)
    from modelkit.checkpoints import load_checkpoint

    resumed = load_checkpoint(tmp_path / "run" / "ckpt.pt")
    for k, v in straight["model"].items():
        torch.testing.assert_close(resumed["model"][k], v)


def test_unknown_config_keys_fail():
    from drumvae.train import TrainConfig

    with pytest.raises(ValueError, match="nonsense"):
        TrainConfig.from_dict({"nonsense": 1})
    with pytest.raises(ValueError, match="loop: unknown key.s. bogus"):
        TrainConfig.from_dict({"loop": {"bogus": 1}})


def test_export_parity_with_eager(tmp_path):
    from daemon import runtime
    from drumvae import export

    torch.manual_seed(0)
    m = DrumVAE(TINY).eval()
    export.export_model(m, ["a", "b"], tmp_path)
    art = runtime.load_torchscript(tmp_path / export.MODEL_FILE)
    x = torch.from_numpy(data.synthetic(3, styles=("a", "b")).features())
    which, eps = torch.tensor([0, 1, 2]), torch.randn(3, 8)
    with torch.no_grad():
        mu, logvar = m.encode(x, which)
        torch.testing.assert_close(art.encode(x, which, eps), mu + torch.exp(0.5 * logvar) * eps, atol=1e-5, rtol=0)
        style, fill, noise = torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]), torch.rand(3, 32, 9)
        for a, b in zip(art.decode(mu, style, fill, noise, 0.7), m.decoder.sample(mu, style, fill, noise, 0.7)):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    rebuilt, meta = export.load_exported(tmp_path)
    assert meta["styles"] == ["a", "b"]
    for k, v in m.state_dict().items():
        torch.testing.assert_close(rebuilt.state_dict()[k], v)


def test_step_accuracy_and_f1_on_hand_made_patterns():
    true = np.zeros((1, 4, 9), np.uint8)
    true[0, 0, 0] = true[0, 2, 1] = 1
    pred = true.copy()
    assert evaluate.step_accuracy(pred, true) == 1.0
    pred[0, 2, 2] = 1  # one extra hat on step 2: that step is wrong
    assert evaluate.step_accuracy(pred, true) == 0.75
    pred[0, 0, 0] = 0  # kick missed on step 0
    assert evaluate.step_accuracy(pred, true) == 0.5
    per, micro = evaluate.f1_per_class(pred, true)
    assert per[0] == 0.0 and per[1] == 1.0 and per[2] == 0.0 and np.isnan(per[3])
    assert micro == pytest.approx(2 * 1 / (2 * 1 + 1 + 1))


def test_velocity_and_timing_errors_on_true_positives():
    h = np.zeros((1, 2, 9), np.float32)
    h[0, 0, 0] = h[0, 1, 1] = 1
    tv, to = h * 0.5, h * 0.0
    ph = h.copy()
    ph[0, 1, 1] = 0  # the snare is missed: not counted in the errors
    pv, po = ph * (0.5 + 10 / 127), ph * 0.5  # kick 10 velocity units louder, half a half-step early
    vel, ms = evaluate.tp_errors((ph, pv, po), (h, tv, to), np.array([120.0]))
    assert vel == pytest.approx(10, abs=1e-4)
    assert ms == pytest.approx(0.25 * 125.0)  # a 16th at 120 BPM is 125 ms; offset 1 = 62.5 ms


def test_wasserstein():
    a = np.arange(100.0)
    assert evaluate.wasserstein1(a, a) == pytest.approx(0)
    assert evaluate.wasserstein1(a, a + 3) == pytest.approx(3)


def test_ship_writes_weights_metrics_and_card(tmp_path):
    import json

    from drumvae import export
    from drumvae.train import train

    w = data.synthetic(64, styles=("a", "b"))
    train(_tiny_cfg(tmp_path, 20), windows=w, progress=False)
    out = tmp_path / "weights"
    r = export.ship(tmp_path / "run", out, windows=w)
    for name in ("drumvae.pt", "drumvae.json", "drumvae.md", "drumvae_metrics.json", "drumvae_loss.png",
                 "drumvae_f1.png", "drumvae_example.png", "drumvae_grooves.json", "drumvae_spread.json"):
        assert (out / name).is_file(), name
    from drumvae import spread

    assert set(spread.read(out / "drumvae_spread.json")) == {"reconstruction", "humanize", "tap2drum",
                                                           "tap2drum-fixed-velocity"}
    bank = json.loads((out / "drumvae_grooves.json").read_text())["z"]  # made with the shipped encoder
    assert {len(z) for style in bank.values() for z in style} == {_tiny_cfg(tmp_path, 20).model.z_dim}
    metrics = json.loads((out / "drumvae_metrics.json").read_text())  # strict JSON (no NaN)
    assert set(metrics["modes"]) == {"reconstruction", "humanize", "humanize, hits decoded", "tap2drum",
                                     "tap2drum-fixed-velocity"}
    assert metrics["modes"]["humanize"]["step_acc_free"] == 1.0  # the given hits, played as given
    assert set(metrics["modes"]["humanize"]["played"]) == {"velocity_mae_midi", "timing_mae_ms", "distances"}
    assert 0 <= r["modes"]["reconstruction"]["step_acc_free"] <= 1
    assert "CC BY 4.0" in (out / "drumvae.md").read_text()
    from drumvae import evaluate

    again = evaluate.run(out, windows=w)  # the shipped artefact, rebuilt eagerly, gives the same numbers
    assert again["modes"]["humanize"]["velocity_mae_midi"] == pytest.approx(
        r["modes"]["humanize"]["velocity_mae_midi"], nan_ok=True)
    assert "target" in evaluate.format_report(again)


def test_forced_hits_noise_plays_exactly_the_given_hits():
    from drumvae.model import forced_hits

    torch.manual_seed(1)
    m = DrumVAE(TINY).eval()
    hits = (torch.rand(2, 32, 9) < 0.2).float()
    lg, v, o = m.decoder.sample(torch.randn(2, 8), torch.tensor([0, 1]), torch.tensor([0, 0]), forced_hits(hits), 1.0)
    played = forced_hits(hits) < torch.sigmoid(lg)
    assert torch.equal(played, hits.bool())
    assert not v[~hits.bool()].any() and (v[hits.bool()] > 0).all()


# ---- what the training adds: scheduled sampling, augmentation ----------------------------------


def test_scheduled_sampling_feeds_the_models_own_predictions_in_training_only():
    from dataclasses import replace

    torch.manual_seed(0)
    m = DrumVAE(replace(TINY, sched_sampling=1.0, dropout=0.0))  # no dropout: both passes alike
    x = torch.from_numpy(data.synthetic(3, styles=("a", "b")).features())
    z, style, fill = torch.randn(3, 8), torch.tensor([0, 1, 0]), torch.tensor([0, 0, 1])
    m.train()
    own = m.scheduled_inputs(z, style, fill, x)
    with torch.no_grad():
        logits, vel, off = m.decoder(z, style, fill, x)
    hit = (logits > 0).float()
    torch.testing.assert_close(own, torch.cat([hit, vel * hit, off * hit], -1))
    m.eval()
    assert torch.equal(m.scheduled_inputs(z, style, fill, x), x)
    m.train()
    m.cfg.sched_sampling = 0.0
    assert torch.equal(m.scheduled_inputs(z, style, fill, x), x)


def _augmenting_task(**augment):
    """A task on 64 synthetic windows of two styles whose batches of 64 get only ``augment``."""
    from drumvae.train import Augment, DrumTask, TrainConfig

    cfg = TrainConfig(model=TINY, batch_size=64)
    cfg.augment = Augment(**{"bar_mix_p": 0.0, "hit_drop_p": 0.0, "lane_mix_p": 0.0, **augment})
    return DrumTask(cfg, data.synthetic(64, styles=("a", "b"))), cfg


def test_augmented_windows_mix_bars_of_one_style_and_only_lose_hits():
    task, cfg = _augmenting_task(bar_mix_p=1.0)
    b = task.batch(5, 0, 1)
    train_x = task.train_x
    for x, s in zip(b["x"], b["style"]):  # each second bar is some training window's, of this style
        match = [i for i in range(len(train_x)) if torch.equal(train_x[i, 16:], x[16:])]
        assert match and any(int(task.train_style[i]) == int(s) for i in match)
    task, cfg = _augmenting_task(hit_drop_p=1.0, hit_drop_rate=0.5)
    b = task.batch(5, 0, 1)
    rng = np.random.default_rng([cfg.loop.seed, 5])
    orig = train_x[torch.from_numpy(rng.integers(0, len(train_x), 64))]
    hits, kept = orig[..., :9], b["x"][..., :9]
    assert (kept <= hits).all() and kept.sum() < 0.7 * hits.sum()  # hits only go, about half of them
    gone = (hits > 0) & (kept == 0)
    assert not b["x"][..., 9:18][gone].any() and not b["x"][..., 18:][gone].any()
    assert torch.equal(task.batch(5, 0, 1)["x"], b["x"])  # a pure function of (seed, step)


def test_a_run_saved_before_augmentation_resumes_without_it():
    from drumvae.train import TrainConfig

    old = TrainConfig().to_dict()
    del old["augment"]
    del old["model"]["sched_sampling"]
    cfg = TrainConfig.from_dict(old)
    assert cfg.augment.bar_mix_p == cfg.augment.hit_drop_p == 0.0 and cfg.model.sched_sampling == 0.0
    assert TrainConfig().augment.bar_mix_p > 0 and TrainConfig().model.sched_sampling > 0
    before_lanes = TrainConfig().to_dict()  # saved before lane mixing: resumes without it
    del before_lanes["augment"]["lane_mix_p"]
    assert TrainConfig.from_dict(before_lanes).augment.lane_mix_p == 0.0 and TrainConfig().augment.lane_mix_p > 0


def test_lane_mixing_takes_cymbals_or_toms_from_a_window_of_the_same_style():
    from drumvae.train import LANE_GROUPS

    task, cfg = _augmenting_task(lane_mix_p=1.0)
    b = task.batch(3, 0, 1)
    rng = np.random.default_rng([cfg.loop.seed, 3])
    own = task.train_x[torch.from_numpy(rng.integers(0, len(task.train_x), 64))]

    def cols(classes):
        return [c + k * 9 for k in range(3) for c in classes]

    changed = 0
    for x, o, s in zip(b["x"], own, b["style"]):
        assert torch.equal(x[:, cols((0, 1))], o[:, cols((0, 1))])  # kick and snare: the window's own
        kept = [g for g in LANE_GROUPS if torch.equal(x[:, cols(g)], o[:, cols(g)])]
        assert len(kept) >= 1  # one group at most comes from elsewhere
        for g in LANE_GROUPS:  # ... and from a training window of this style
            match = [i for i in range(len(task.train_x)) if torch.equal(task.train_x[i][:, cols(g)], x[:, cols(g)])]
            assert any(int(task.train_style[i]) == int(s) for i in match)
        changed += len(kept) == 1
    assert changed > 32  # most windows got another window's cymbals or toms


def test_a_run_can_start_from_another_runs_weights(tmp_path):
    from dataclasses import replace

    from drumvae.train import DrumTask, stage_model, train
    from modelkit.checkpoints import load_checkpoint

    w = data.synthetic(64, styles=("a", "b"))
    train(_tiny_cfg(tmp_path, 10), windows=w, progress=False)
    first = load_checkpoint(tmp_path / "run" / "ckpt.pt")
    cfg = _tiny_cfg(tmp_path / "second", 10)
    cfg.init_from = str(tmp_path / "run" / "ckpt.pt")
    start = DrumTask(cfg, w).build_model().state_dict()
    assert all(torch.equal(start[k], first["model"][k]) for k in start)
    train(cfg, windows=w, progress=False)
    from drumvae import export

    r = export.ship(tmp_path / "second" / "run", tmp_path / "weights", windows=w)
    assert [st["step"] for st in r["run"]["stages"]] == [10]
    card = (tmp_path / "weights" / "drumvae.md").read_text()
    assert "Two runs" in card and f"--init-from {cfg.init_from}" in card and "20 steps" in card
    staged = stage_model(TINY, replace(TINY, sched_sampling=0.5, z_dim=99), ["sched_sampling", "z_dim"])
    assert staged == replace(TINY, sched_sampling=0.5)  # training's settings may change, the weights' shape not
    cfg.model = replace(TINY, sched_sampling=0.5, dropout=0.1)
    assert all(torch.equal(v, first["model"][k]) for k, v in DrumTask(cfg, w).build_model().state_dict().items())
    cfg.model = replace(TINY, dec_hidden=TINY.dec_hidden * 2)
    with pytest.raises(ValueError, match="another model"):
        DrumTask(cfg, w).build_model()


def test_the_ranks_of_a_two_process_run_share_one_batch():
    from drumvae.train import DrumTask, TrainConfig

    task = DrumTask(TrainConfig(model=TINY, batch_size=32), data.synthetic(64, styles=("a", "b")))
    whole = task.batch(7, 0, 1)
    halves = [task.batch(7, r, 2) for r in (0, 1)]
    for k in whole:
        assert torch.equal(torch.cat([h[k] for h in halves]), whole[k]), k


# ---- spread: a drummer's spread for the decoded velocities and offsets ----------------------------


def test_spread_maps_decoded_values_onto_the_real_distribution_per_class_and_position():
    from drumvae import spread

    rng = np.random.default_rng(0)
    hits = np.zeros((400, 32, 9), np.uint8)
    hits[:, ::2, 0] = 1  # kicks on 8ths: positions 0 and 2 only
    hits[:3, 1, 1] = 1  # three snares: too few to measure
    real_v = rng.beta(5, 2, hits.shape) * hits  # skewed, as real velocities are
    real_o = rng.laplace(0.1, 0.2, hits.shape).clip(-1, 1) * hits  # peaked, heavy tails
    # the decoder's over-smoothed guess: each value pulled most of the way to the mean, plus noise
    dec_v = (0.7 + 0.3 * (real_v - 0.7) + rng.normal(0, 0.02, hits.shape)) * hits
    dec_o = (0.1 + 0.2 * (real_o - 0.1) + rng.normal(0, 0.01, hits.shape)) * hits
    table = spread.fit((hits, dec_v, dec_o), (hits, real_v, real_o))
    assert np.isnan(table.decoded[:, 1]).all()  # the snare cells: played as decoded
    v, o = table.apply(hits, dec_v, dec_o)
    k = np.arange(32) % 4
    for played, real, dec in ((v, real_v, dec_v), (o, real_o, dec_o)):
        for pos in (0, 2):
            h = hits[:, k == pos, 0].astype(bool)
            p, r, d = played[:, k == pos, 0][h], real[:, k == pos, 0][h], dec[:, k == pos, 0][h]
            assert evaluate.wasserstein1(p, r) < 0.1 * evaluate.wasserstein1(d, r)  # the real distribution
            assert (np.diff(p[np.argsort(d)]) >= -1e-6).all()  # in the decoded values' order
    assert v[:3, 1, 1] == pytest.approx(dec_v[:3, 1, 1])  # an unmeasured cell plays as decoded
    assert not v[hits == 0].any() and not o[hits == 0].any()  # silence stays silent
    wild_v, wild_o = table.apply(hits, dec_v * 5, dec_o * 5)  # outside the knots: the real extremes
    assert wild_v[..., 0].max() <= real_v.max() and wild_o[..., 0].max() <= real_o.max()
    assert wild_v.min() >= 0 and wild_v.max() <= 1 and wild_o.min() >= -1 and wild_o.max() <= 1


def test_spread_tables_round_trip_and_reject_bad_files(tmp_path):
    from drumvae import spread

    rng = np.random.default_rng(1)
    hits = (rng.random((300, 32, 9)) < 0.3).astype(np.uint8)
    t = spread.fit((hits, rng.random(hits.shape) * hits, rng.random(hits.shape) * hits),
                   (hits, rng.random(hits.shape) * hits, rng.random(hits.shape) * hits))
    t.decoded[:, 4] = t.real[:, 4] = np.nan  # an unmeasured class
    path = spread.write(tmp_path / spread.SPREAD_FILE, {"humanize": t}, "test")
    back = spread.read(path)["humanize"]
    assert back.decoded == pytest.approx(t.decoded, abs=1e-5, nan_ok=True)
    assert back.real == pytest.approx(t.real, abs=1e-5, nan_ok=True)
    d = t.to_dict()
    d["offset"]["decoded"][0][0] = d["offset"]["decoded"][0][0][::-1]  # not increasing
    with pytest.raises(ValueError):
        spread.Spread.from_dict(d)
    with pytest.raises(ValueError):
        spread.Spread.from_dict({"velocity": {"decoded": [[[0.0] * 3]], "real": [[[0.0] * 3]]},
                                 "offset": {"decoded": [[[0.0] * 3]], "real": [[[0.0] * 3]]}})
