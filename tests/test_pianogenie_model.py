"""Piano Genie data encoding, the model's pieces and its loss, and training (resume, DDP)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from pianogenie import data
from pianogenie.model import (Decoder, IntegerQuantizer, PianoGenie, PianoGenieConfig, VectorQuantizer,
                              contour_penalty, range_penalty, sample, sort_codes_by_pitch)

TINY = PianoGenieConfig(rnn_dim=16, rnn_layers=2)


def synthetic_performances(n: int = 12, notes: int = 300, seed: int = 0) -> data.Performances:
    """Random-walk 'performances' with splits train/validation/test, no dataset needed."""
    rng = np.random.default_rng(seed)
    times, keys, lengths, splits = [], [], [], []
    for i in range(n):
        k = np.clip(40 + np.cumsum(rng.integers(-3, 4, notes)), 0, 87)
        t = np.cumsum(rng.choice([0.0, 0.05, 0.1, 0.25, 0.5, 2.0], notes))
        times.append(t)
        keys.append(k.astype(np.int8))
        lengths.append(notes)
        splits.append(["train", "train", "validation", "test"][i % 4])
    return data.Performances(np.concatenate(times), np.concatenate(keys),
                             np.concatenate([[0], np.cumsum(lengths)]), [f"p{i}" for i in range(n)],
                             splits, {"split_rule": "synthetic", "counts": {}})


# ---- data ------------------------------------------------------------------------------------


def test_delta_time_quantization_is_31_25_hz_and_saturates():
    assert list(data.quantize_dt([0.0, 0.015, 0.017, 0.032, 0.5, 1.024, 1.5, np.inf])) == \
        [0, 0, 1, 1, 16, 32, 32, 32]
    assert data.dt_bucket_ns(32_000_000) == 1 and data.dt_bucket_ns(10**10) == 32


def test_encode_decode_round_trip():
    rng = np.random.default_rng(1)
    dt = rng.integers(0, 33, 200) / data.DT_RATE_HZ  # onsets on the 32 ms grid
    times = 3.0 + np.cumsum(dt)
    pitches = rng.integers(21, 109, 200)
    pitches = pitches[np.lexsort((pitches, times))]  # chords (dt = 0) come low note first
    keys, buckets = data.encode(times, pitches, first_dt_s=dt[0])
    t2, p2 = data.decode(keys, buckets, start_s=times[0])
    np.testing.assert_allclose(t2, times, atol=1e-9)
    np.testing.assert_array_equal(p2, pitches)
    assert buckets[0] == round(dt[0] * 31.25)


def test_encode_sorts_by_time_then_pitch_and_drops_off_keyboard_notes():
    keys, dt = data.encode([1.0, 0.5, 0.5, 0.5], [64, 60, 20, 109 - 50])
    assert list(keys + 21) == [59, 60, 64]  # 20 dropped; chord at 0.5 low first
    assert list(dt) == [32, 0, 16]


def test_split_rule_matches_source_md():
    assert data.split_of("Bach", "Fugue_bwv_846") in data.SPLITS
    import hashlib
    h = int(hashlib.sha1(b"Bach|Fugue_bwv_846").hexdigest(), 16) % 10
    assert data.split_of("Bach", "Fugue_bwv_846") == {0: "test", 1: "validation"}.get(h, "train")


def test_batches_are_a_function_of_seed_and_step_and_augmented_in_range():
    perf = synthetic_performances().subset("train")
    s = data.TrainSampler(perf, batch_size=8, seed=3)
    k1, d1 = s.batch(5)
    k2, d2 = s.batch(5)
    np.testing.assert_array_equal(k1, k2)
    np.testing.assert_array_equal(d1, d2)
    assert not np.array_equal(k1, s.batch(6)[0])
    assert k1.shape == (8, 128) and k1.min() >= 0 and k1.max() <= 87
    assert d1.min() >= 0 and d1.max() <= 32


def test_eval_windows_are_non_overlapping_and_unaugmented():
    perf = synthetic_performances(n=4, notes=300)
    sub = perf.subset("test")
    keys, dts = data.eval_windows(sub)
    assert keys.shape == (2, 128)  # one test performance of 300 notes: 2 windows
    t, k = sub.piece(0)
    np.testing.assert_array_equal(keys[1], k[128:256])
    assert dts[0, 0] == 32  # a piece's first note


@pytest.mark.skipif(not (data.datasets_root() / data.DATASET / "metadata.csv").is_file(),
                    reason="asap-maestro-subset not present")
def test_real_split_counts_follow_source_md():
    import csv
    rows = [r for r in csv.DictReader((data.datasets_root() / data.DATASET / "metadata.csv").open())
            if r["maestro_midi_performance"]]
    splits = [data.split_of(r["composer"], r["title"]) for r in rows]
    assert (splits.count("train"), splits.count("validation"), splits.count("test")) == (404, 59, 56)
    by_piece = {}
    for r, s in zip(rows, splits):
        by_piece.setdefault((r["composer"], r["title"]), set()).add(s)
    assert all(len(s) == 1 for s in by_piece.values())


# ---- model -----------------------------------------------------------------------------------


def test_quantizer_levels_and_straight_through_gradient():
    q = IntegerQuantizer(8)
    e = torch.tensor([-1.5, -1.0, -0.3, 0.0, 0.2, 0.99, 3.0], requires_grad=True)
    assert q.to_buttons(e).tolist() == [0, 0, 2, 4, 4, 7, 7]  # 0.0 -> 3.5 rounds to even
    y = q(e)
    torch.testing.assert_close(y.detach(), q.to_real(q.to_buttons(e)))
    levels = q.to_real(torch.arange(8))
    assert levels[0] == -1 and levels[-1] == 1
    (y * torch.arange(7.0)).sum().backward()
    torch.testing.assert_close(e.grad, torch.arange(7.0))  # identity gradient


def test_range_penalty_is_zero_inside_and_quadratic_outside():
    assert range_penalty(torch.tensor([[-1.0, 0.0, 0.5, 1.0]])) == 0
    assert range_penalty(torch.tensor([[1.5, -3.0]])) == pytest.approx((0.25 + 4.0) / 2)


def test_contour_penalty_on_hand_made_cases():
    keys = torch.tensor([[0, 2, 1, 1]])  # up 2, down 1, same
    agree = torch.tensor([[0.0, 1.0, 0.0, 0.5]])  # de = +1, -1, +0.5
    # terms: max(1 - 2*1, 0)^2 = 0; max(1 - (-1)(-1), 0)^2 = 0; dk = 0 -> 1
    assert contour_penalty(keys, agree) == pytest.approx(1 / 3)
    disagree = torch.tensor([[0.0, -1.0, 0.0, 0.0]])  # de = -1, +1, 0
    # (1 + 2)^2 = 9; (1 + 1)^2 = 4; 1
    assert contour_penalty(keys, disagree) == pytest.approx(14 / 3)


def test_loss_is_ce_plus_penalties_and_baseline_is_ce_only():
    torch.manual_seed(0)
    keys = torch.randint(0, 88, (3, 20))
    dt = torch.randint(0, 33, (3, 20))
    model = PianoGenie(TINY)
    logits, loss, terms = model(keys, dt, targets=keys)
    assert logits.shape == (3, 20, 88)
    torch.testing.assert_close(loss, terms["ce"] + terms["range"] + terms["contour"])
    base = PianoGenie(PianoGenieConfig(num_buttons=0, rnn_dim=16))
    _, bloss, bterms = base(keys, dt, targets=keys)
    assert set(bterms) == {"ce"} and bloss == bterms["ce"]
    assert model(keys, dt)[1] is None


def test_decoder_is_causal_and_step_matches_forward():
    torch.manual_seed(0)
    dec = Decoder(TINY).eval()
    keys = torch.randint(0, 88, (2, 12))
    dt = torch.randint(0, 33, (2, 12))
    level = torch.rand(2, 12, 1) * 2 - 1
    full, _ = dec(level, keys, dt)
    keys2 = keys.clone()
    keys2[:, 7:] = 0
    torch.testing.assert_close(dec(level, keys2, dt)[0][:, :8], full[:, :8])  # sees k_{<i} only
    h = torch.zeros(2, 2, 16)
    c = torch.zeros(2, 2, 16)
    prev = torch.full((2,), 88)
    for i in range(12):
        logits, h, c = dec.step(level[:, i], prev, dt[:, i], h, c)
        torch.testing.assert_close(logits, full[:, i], atol=1e-5, rtol=0)
        prev = keys[:, i]


def test_gradient_reaches_the_encoder_through_the_quantizer():
    torch.manual_seed(0)
    model = PianoGenie(TINY)
    keys = torch.randint(0, 88, (2, 16))
    _, loss, terms = model(keys, torch.randint(0, 33, (2, 16)), targets=keys)
    terms["ce"].backward()  # the CE alone: only the straight-through path reaches the encoder
    assert model.encoder.input.weight.grad.abs().sum() > 0


def test_sample_at_temperature_zero_is_deterministic():
    torch.manual_seed(0)
    dec = Decoder(TINY).eval()
    a = sample(dec, [0, 3, 7, 2], [32, 5, 5, 0], temperature=0)
    assert a == sample(dec, [0, 3, 7, 2], [32, 5, 5, 0], temperature=0)
    assert all(0 <= k < 88 for k in a)


# ---- training --------------------------------------------------------------------------------


def tiny_cfg(out: Path, steps: int, **kw):
    from pianogenie.train import TrainConfig
    return TrainConfig(out_dir=str(out), model=TINY, steps=steps, batch_size=4, ckpt_every=3,
                       eval_every=3, eval_windows=4, log_every=1, threads=1, **kw)


def test_resume_is_exact(tmp_path):
    from pianogenie.train import train
    perf = synthetic_performances()
    straight = train(tiny_cfg(tmp_path / "a", 6), perf, progress=False)
    train(tiny_cfg(tmp_path / "b", 3), perf, progress=False)
    resumed = train(tiny_cfg(tmp_path / "b", 6), perf, progress=False)
    assert resumed["step"] == straight["step"] == 6
    for k, v in straight["model"].items():
        assert torch.equal(v, resumed["model"][k]), k
    def strip(history):
        return [{k: v for k, v in h.items() if k != "ms_per_step"} for h in history]
    assert strip(resumed["history"]) == strip(straight["history"])
    assert (tmp_path / "b" / "best.pt").is_file() and (tmp_path / "b" / "history.json").is_file()


def test_a_run_from_before_the_vq_and_no_time_options_resumes(tmp_path):
    """The shipped run's checkpoint was written before the model had a bottleneck or time switch."""
    from dataclasses import replace

    from modelkit.checkpoints import save_atomic
    from pianogenie.train import load_checkpoint, train
    perf = synthetic_performances()
    train(tiny_cfg(tmp_path / "old", 3), perf, progress=False)
    ckpt = load_checkpoint(tmp_path / "old" / "ckpt.pt")
    for key in ("bottleneck", "code_dim", "commitment", "time_input"):
        del ckpt["model_args"][key], ckpt["config"]["model"][key]
    save_atomic(ckpt, tmp_path / "old" / "ckpt.pt")
    assert train(tiny_cfg(tmp_path / "old", 4), perf, progress=False)["step"] == 4
    with pytest.raises(ValueError, match="was made with model"):  # another model is still refused
        train(replace(tiny_cfg(tmp_path / "old", 5), model=replace(TINY, time_input=False)), perf, progress=False)


KEPT = Path(__file__).resolve().parents[1] / "checkpoints" / "pianogenie"


@pytest.mark.parametrize("run", sorted(p.name for p in KEPT.iterdir() if (p / "ckpt.pt").is_file()))
def test_every_kept_run_resumes_as_its_readme_says(tmp_path, run):
    """checkpoints/pianogenie/README: copy a run to runs/ and `genie train` resumes its ckpt.pt."""
    import shutil

    from pianogenie.train import TrainConfig, load_checkpoint, train
    shutil.copy(KEPT / run / "ckpt.pt", tmp_path / "ckpt.pt")
    kept = load_checkpoint(tmp_path / "ckpt.pt")
    cfg = TrainConfig.from_dict(kept["config"])
    cfg.out_dir, cfg.steps, cfg.threads, cfg.eval_windows = str(tmp_path), kept["step"] + 1, 1, 4
    after = train(cfg, synthetic_performances(), progress=False)  # the data here is synthetic
    assert after["step"] == kept["step"] + 1 and len(after["history"]) > len(kept["history"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out: str, result: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world),
                      RANK=str(rank), LOCAL_RANK=str(rank))
    import torch.distributed as dist

    from pianogenie.train import train
    ckpt = train(tiny_cfg(Path(out), 4), synthetic_performances(), progress=False)
    if rank == 0:
        torch.save(ckpt["model"], result)
    dist.barrier()  # rank 1 tearing gloo down while rank 0 still wrote aborted it (SIGABRT), now and then
    dist.destroy_process_group()


def test_two_process_ddp_matches_one_process(tmp_path):
    import torch.multiprocessing as mp

    from pianogenie.train import train
    one = train(tiny_cfg(tmp_path / "one", 4), synthetic_performances(), progress=False)["model"]
    result = tmp_path / "ddp.pt"
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path / "two"), str(result)), nprocs=2)
    two = torch.load(result)
    for k, v in one.items():
        torch.testing.assert_close(two[k], v, atol=1e-5, rtol=1e-4, msg=k)


# ---- evaluation and the model card -----------------------------------------------------------


def test_contour_measures_on_hand_made_cases():
    from pianogenie.evaluate import contour_agreement, contour_buttons, melody_dt
    assert contour_buttons([60, 67, 74]) == [0, 4, 7]  # 3.5 rounds to the even 4
    assert contour_buttons([60, 62, 74]) == [0, 1, 7]
    assert contour_buttons([60, 60]) == [4, 4]
    # button moves: up, down, (same: not counted), up; pitch: up, up, down, up
    assert contour_agreement([0, 3, 1, 1, 5], [60, 62, 64, 63, 70]) == (2, 3)
    assert melody_dt([(60, 1), (62, 0.5), (64, 1)], 120) == [32, 16, 8]


def test_measure_counts_contour_violations_and_button_use():
    from pianogenie.evaluate import measure
    torch.manual_seed(0)
    model = PianoGenie(TINY)
    keys = torch.randint(0, 88, (4, 32))
    dts = torch.randint(0, 33, (4, 32))
    m = measure(model, keys, dts)
    b = model.buttons(keys, dts)
    viol = int(((torch.diff(keys, dim=1) * torch.diff(b, dim=1)) < 0).sum())
    assert m["contour_violations"] == pytest.approx(viol / (4 * 31))
    assert sum(m["button_counts"]) == 128 and 1 <= m["button_usage_perplexity"] <= 8
    assert m["perplexity"] == pytest.approx(np.exp(m["cross_entropy"]))


# ---- the VQ-VAE option -------------------------------------------------------------------------

TINY_VQ = PianoGenieConfig(rnn_dim=16, rnn_layers=2, bottleneck="vq", code_dim=4)


def test_vector_quantizer_picks_the_nearest_code_on_the_sphere_and_passes_the_gradient_straight_through():
    vq = VectorQuantizer(3, 2)
    vq.codebook.data = torch.tensor([[-3.0, 0.0], [1.0, 0.0], [0.0, 5.0]])  # unit: west, east, north
    e = torch.tensor([[-0.1, 0.02], [9.0, 4.0], [0.2, 3.0]], requires_grad=True)
    assert vq.to_buttons(e).tolist() == [0, 1, 2]  # the direction counts, not the length
    q = vq(e)
    torch.testing.assert_close(q, torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
    q.sum().backward()
    assert e.grad.abs().sum() > 0  # straight through (and through the normalization)
    unit = torch.nn.functional.normalize(e.detach(), dim=-1)
    codebook, commitment = vq.losses(e.detach())
    torch.testing.assert_close(codebook, ((q.detach() - unit) ** 2).mean())
    torch.testing.assert_close(commitment, codebook)  # same value, gradients to different sides
    torch.testing.assert_close(vq.table(), torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))


def test_an_unused_code_is_moved_onto_one_of_the_batchs_outputs():
    torch.manual_seed(0)
    vq = VectorQuantizer(4, 2)
    vq.codebook.data = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -0.1], [-0.1, -1.0]])
    e = torch.tensor([[2.0, 0.1], [0.1, 3.0], [1.0, 0.2], [0.2, 1.0]])  # all near the first two
    assert vq.restart_unused(e) == 2
    unit = torch.nn.functional.normalize(e, dim=-1)
    for code in vq.codebook[2:]:
        assert any(torch.allclose(code, x) for x in unit)


def test_vq_loss_is_ce_plus_codebook_and_commitment_and_reaches_every_part():
    torch.manual_seed(0)
    model = PianoGenie(TINY_VQ).train()
    keys = torch.randint(0, 88, (2, 16))
    _, loss, terms = model(keys, torch.randint(0, 33, (2, 16)), targets=keys)
    assert set(terms) == {"ce", "codebook", "commitment"}
    torch.testing.assert_close(loss, terms["ce"] + terms["codebook"] + 0.25 * terms["commitment"])
    loss.backward()
    assert model.encoder.input.weight.grad.abs().sum() > 0
    assert model.quantizer.codebook.grad.abs().sum() > 0


def test_codes_numbered_by_pitch_change_labels_not_what_is_played():
    torch.manual_seed(0)
    model = PianoGenie(TINY_VQ).eval()
    keys, dts = torch.randint(0, 88, (4, 32)), torch.randint(0, 33, (4, 32))
    before_buttons = model.buttons(keys, dts)
    before, _, _ = model(keys, dts)
    order = sort_codes_by_pitch(model, keys, dts)
    after, _, _ = model(keys, dts)
    torch.testing.assert_close(after, before)  # the same codes reach the decoder
    assert sorted(order) == list(range(8))
    b = model.buttons(keys, dts)
    assert torch.equal(torch.tensor(order)[b], before_buttons)
    means = [keys[b == i].float().mean() for i in range(8) if (b == i).any()]
    assert means == sorted(means)  # button 0 plays lowest on these notes


def test_vq_export_round_trip_and_sample_from_the_artefact(tmp_path):
    from daemon import runtime
    from pianogenie import evaluate, export
    torch.manual_seed(0)
    model = PianoGenie(TINY_VQ).eval()
    files = export.export_model(model, tmp_path)
    assert [f.name for f in files] == [export.VQ_DECODER_FILE, export.VQ_ENCODER_FILE]
    step = runtime.load_torchscript(tmp_path / export.VQ_DECODER_FILE)
    h = torch.zeros(2, 3, 16)
    logits, _, _ = step(torch.tensor([0, 5, 7]), torch.full((3,), 88), torch.tensor([3, 3, 3]), h, h.clone())
    want, _, _ = model.decoder.step(model.button_table()[[0, 5, 7]], torch.full((3,), 88), torch.tensor([3, 3, 3]),
                                    h, h.clone())
    torch.testing.assert_close(logits, want)
    shipped, _ = evaluate.load_shipped(tmp_path, vq=True)
    keys, dts = torch.randint(0, 88, (1, 20)), torch.randint(0, 33, (1, 20))
    assert torch.equal(shipped.buttons(keys, dts), model.buttons(keys, dts))
    assert sample(shipped.decoder, [0, 7], [3, 3], temperature=0, table=shipped.button_table()) == \
        sample(model.decoder, [0, 7], [3, 3], temperature=0, table=model.button_table())


def test_ship_writes_weights_metrics_curve_and_card(tmp_path):
    from pianogenie import export
    from pianogenie.train import train
    perf = synthetic_performances()
    train(tiny_cfg(tmp_path / "model", 3), perf, progress=False)
    base = tiny_cfg(tmp_path / "baseline", 3)
    base.model = PianoGenieConfig(num_buttons=0, rnn_dim=16)
    train(base, perf, progress=False)
    result = export.ship(tmp_path / "model", tmp_path / "baseline", tmp_path / "out", perf=perf,
                          player_seeds=1)
    card = (tmp_path / "out" / "pianogenie.md").read_text()
    assert export.LICENCE_LINE in card.splitlines()
    assert "baseline" in result and result["model"]["step"] == 3
    run = tmp_path / "model"  # the card names the run as it was made: its folder and its width
    assert f"`genie train pianogenie --out {run} --rnn-dim 16`" in card
    assert f"`genie export pianogenie --checkpoint {run}/best.pt --card`" in card
    assert "encoder dense 16 -> BiLSTM 2x16 -> 1" in card and f"pianogenie --out {run}` resumes" in card
    for name in (export.DECODER_FILE, export.ENCODER_FILE, "pianogenie_metrics.json"):
        assert (tmp_path / "out" / name).is_file()
    (tmp_path / "baseline" / "best.pt").unlink()  # as in checkpoints/: the baseline's last checkpoint only
    result = export.ship(tmp_path / "model", tmp_path / "baseline", tmp_path / "out", perf=perf, player_seeds=1)
    assert result["baseline"]["step"] == 3
    vq = tiny_cfg(tmp_path / "vq", 3)
    vq.model = TINY_VQ
    train(vq, perf, progress=False)
    result = export.ship_vq(tmp_path / "vq", tmp_path / "out", perf=perf, player_seeds=1)
    assert result["vq"]["step"] == 3 and result["vq"]["bottleneck"] == "vq"
    assert result["model"]["bottleneck"] == "iqae"
    assert sorted(result["runs"]["code_order"]) == list(range(8))
    train(tiny_cfg(tmp_path / "model", 6), perf, progress=False)  # another IQAE ships: the VQ card follows
    export.ship(tmp_path / "model", tmp_path / "baseline", tmp_path / "out", perf=perf, which="ckpt.pt",
                player_seeds=1)
    beside = json.loads((tmp_path / "out" / export.metrics_file(True)).read_text())
    assert beside["model"]["step"] == 6 and beside["vq"]["step"] == 3
    card = (tmp_path / "out" / "pianogenie_vq.md").read_text()
    assert f"| IQAE + contour (default) | {beside['model']['perplexity']:.3f} |" in card
    card = (tmp_path / "out" / "pianogenie_vq.md").read_text()
    assert export.LICENCE_LINE in card.splitlines() and "| VQ-VAE (k = 8) |" in card
    for name in (export.VQ_DECODER_FILE, export.VQ_ENCODER_FILE, "pianogenie_vq_metrics.json",
                 "pianogenie_vq_decoder.onnx"):
        assert (tmp_path / "out" / name).is_file()


# ---- preparation from MIDI files and the train command ---------------------------------------


def fake_asap(root: Path, pieces: int = 6, notes: int = 160) -> Path:
    """A tiny dataset in ASAP's layout: metadata.csv and one performance MIDI file per piece."""
    import csv

    import pretty_midi
    folder = root / data.DATASET
    rows = []
    rng = np.random.default_rng(0)
    for i in range(pieces):
        rel = f"Composer{i}/Set/piece{i}/Player{i}.mid"
        (folder / rel).parent.mkdir(parents=True)
        pm = pretty_midi.PrettyMIDI()
        inst = pretty_midi.Instrument(0)
        for j in range(notes):
            p = int(rng.integers(15, 115))  # some off the piano: dropped
            inst.notes.append(pretty_midi.Note(velocity=80, pitch=p, start=0.1 * j, end=0.1 * j + 0.3))
        pm.instruments.append(inst)
        pm.write(str(folder / rel))
        rows.append({"composer": f"Composer{i}", "title": f"Title{i}", "midi_performance": rel,
                     "maestro_midi_performance": "{maestro}/x.midi"})
    rows.append({"composer": "Other", "title": "NotMaestro", "midi_performance": "missing.mid",
                 "maestro_midi_performance": ""})
    with (folder / "metadata.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return folder


def test_prepare_reads_midi_once_and_records_the_split(tmp_path):
    folder = fake_asap(tmp_path)
    perf = data.prepare(folder, tmp_path / "cache")
    assert len(perf) == 6 and perf.keys.min() >= 0 and perf.keys.max() <= 87
    assert perf.splits == [data.split_of(f"Composer{i}", f"Title{i}") for i in range(6)]
    meta = json.loads(next((tmp_path / "cache").glob("*.json")).read_text())
    assert meta["split_rule"] == data.SPLIT_RULE and meta["splits"] == perf.splits
    assert sum(c["performances"] for c in meta["counts"].values()) == 6
    (folder / "Composer0").rename(folder / "gone")  # the second call reads the cache only
    again = data.prepare(folder, tmp_path / "cache")
    np.testing.assert_array_equal(again.keys, perf.keys)
    times, pitches = data.read_onsets(folder / "gone/Set/piece0/Player0.mid")
    a, b = perf.offsets[0], perf.offsets[1]
    keep = (pitches >= 21) & (pitches <= 108)
    np.testing.assert_array_equal(perf.keys[a:b], pitches[keep] - 21)


def test_train_command_runs_and_resumes(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from pianogenie.cli import train_cmd
    from pianogenie.train import load_checkpoint
    fake_asap(tmp_path, pieces=12)
    monkeypatch.setattr(data, "split_of", lambda c, t: ["train", "validation", "test"][int(c[-1:] or 0) % 3])
    args = ["--out", str(tmp_path / "run"), "--data", str(tmp_path), "--cache", str(tmp_path / "cache"),
            "--batch-size", "2", "--ckpt-every", "1", "--threads", "1"]
    r = CliRunner().invoke(train_cmd, [*args, "--steps", "1"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(train_cmd, [*args, "--steps", "2"])
    assert r.exit_code == 0, r.output
    ckpt = load_checkpoint(tmp_path / "run" / "ckpt.pt")
    assert ckpt["step"] == 2 and ckpt["config"]["batch_size"] == 2 and ckpt["config"]["decay_from"] == 0
    r = CliRunner().invoke(train_cmd, [*args, "--steps", "4", "--decay-from", "2"])  # end it with a tail
    assert r.exit_code == 0, r.output
    ckpt = load_checkpoint(tmp_path / "run" / "ckpt.pt")
    assert ckpt["step"] == 4 and ckpt["config"]["decay_from"] == 2
    lrs = [h["lr"] for h in ckpt["history"] if "lr" in h]
    assert lrs[0] == 3e-4 and lrs[-1] < 3e-4 and lrs == sorted(lrs, reverse=True), lrs  # constant, then falling
    r = CliRunner().invoke(train_cmd, [*args, "--steps", "5"])  # a resume without it keeps the tail
    assert r.exit_code == 0 and load_checkpoint(tmp_path / "run" / "ckpt.pt")["config"]["decay_from"] == 2
    r = CliRunner().invoke(train_cmd, [*args, "--steps", "5", "--decay-from", "5"])
    assert r.exit_code == 2 and "--decay-from" in r.output
    wide = ["--out", str(tmp_path / "wide"), *args[2:], "--rnn-dim", "24"]
    r = CliRunner().invoke(train_cmd, [*wide, "--steps", "1"])  # a wider model, its width kept on resume
    assert r.exit_code == 0 and load_checkpoint(tmp_path / "wide" / "ckpt.pt")["model_args"]["rnn_dim"] == 24
    r = CliRunner().invoke(train_cmd, [*args, "--steps", "6", "--rnn-dim", "24"])
    assert r.exit_code == 0 and load_checkpoint(tmp_path / "run" / "ckpt.pt")["model_args"]["rnn_dim"] == 128


def test_gold_tunes_are_written_as_a_person_plays_them():
    from pianogenie.gold import TUNES

    assert len(TUNES) == 8
    for name, pitches, buttons in TUNES:
        assert len(pitches) == len(buttons) and all(0 <= b <= 7 for b in buttons), name
        by_pitch = {}
        for p, b in zip(pitches, buttons):
            assert by_pitch.setdefault(p, b) == b, name  # a repeated note, the same button
        ordered = [by_pitch[p] for p in sorted(by_pitch)]
        assert ordered == sorted(ordered) and len(set(ordered)) == len(ordered), name  # higher: higher
        assert max(buttons) - min(buttons) >= 4, name  # a person spreads a tune over the buttons
        assert min(buttons) == (7 - (max(buttons) - min(buttons))) // 2, name  # centred on the 8 buttons
        for (p, b), (q, c) in zip(zip(pitches, buttons), zip(pitches[1:], buttons[1:])):
            if 1 <= abs(q - p) <= 2:  # a step: the neighbouring button
                assert abs(c - b) == 1, (name, p, q)
            elif abs(q - p) >= 3:  # a leap: further away
                assert abs(c - b) >= 2, (name, p, q)


def test_gold_measure_is_zero_for_the_persons_buttons_and_counts_a_shift():
    import torch

    from pianogenie import data
    from pianogenie.gold import TRANSPOSITIONS, TUNES, gold_measure

    class Person:
        """Presses the hand-written buttons (of the untransposed tune) plus ``shift``."""

        def __init__(self, shift: int) -> None:
            self.shift = shift

        def eval(self):
            return self

        def buttons(self, keys, dts):
            assert (dts == 8).all() and keys.size(0) == len(TRANSPOSITIONS)
            row = keys[len(TRANSPOSITIONS) // 2].tolist()  # the untransposed tune, as keys
            for _, pitches, gold in TUNES:
                if [p - data.LOWEST_PITCH for p in pitches] == row:
                    return (torch.tensor(gold) + self.shift).clamp(0, 7).expand_as(keys)
            raise AssertionError("not a gold tune")

    exact = gold_measure(Person(0))
    assert exact["gold_l2"] == exact["gold_l2_shape"] == 0 and abs(exact["register_slope"]) < 1e-12
    assert exact["encoder_mean_button"] == exact["person_mean_button"]
    assert exact["gold_l2_taught"] == 0 and "replay" not in exact  # the person's tunes are centred already
    shifted = gold_measure(Person(1))
    assert 0 < shifted["gold_l2"] <= 1 and shifted["gold_l1"] == shifted["gold_l2"]
    assert shifted["gold_l2_shape"] < 0.1 * shifted["gold_l2"]  # a shift is not a change of shape (but at 7)
    assert shifted["gold_l2_taught"] < 0.1 * shifted["gold_l2"]  # and genie buttons takes it back (but at 7)
    assert shifted["notes"] == sum(len(p) for _, p, _ in TUNES) * len(TRANSPOSITIONS)


def test_centre_span_moves_a_tune_whole_to_the_middle_of_the_buttons():
    from pianogenie.gold import TUNES
    from pianogenie.placement import centre_span

    low = torch.tensor([[0, 1, 2, 1, 0], [3, 7, 5, 7, 3], [0, 7, 3, 2, 1], [4, 4, 4, 4, 4]])
    moved = centre_span(low)
    assert moved.tolist() == [[2, 3, 4, 3, 2], [1, 5, 3, 5, 1], [0, 7, 3, 2, 1], [3, 3, 3, 3, 3]]
    assert ((moved - low) == (moved - low)[:, :1]).all()  # each row moved whole: its shape kept
    assert torch.equal(centre_span(moved), moved)  # centred stays centred
    for _, _, gold in TUNES:  # the person's buttons obey the same rule
        assert centre_span(torch.tensor(gold)).tolist() == gold
    assert centre_span(torch.zeros(2, 0, dtype=torch.long)).shape == (2, 0)


def test_replay_plays_each_set_of_buttons_through_the_decoder():
    from pianogenie.gold import TRANSPOSITIONS, TUNES, gold_measure, replay

    torch.manual_seed(0)
    model = PianoGenie(TINY)
    r = replay(model)
    assert r["steps"] == sum(len(p) - 1 for _, p, _ in TUNES) * len(TRANSPOSITIONS)
    assert all(0 <= r[who] <= 1 for who in ("encoder", "taught", "person"))
    g = gold_measure(model)
    assert g["replay"] == r and g["gold_l2_taught"] <= g["gold_l2"] + 4  # a real model's Gold gets both
    assert "replay" not in gold_measure(PianoGenie(TINY_VQ))  # a VQ-VAE's codes are not ordered: not taught moved


def test_range_report_accounts_for_the_range_penalty():
    import torch

    from pianogenie.evaluate import range_report
    from pianogenie.model import range_penalty

    torch.manual_seed(0)
    model = PianoGenie(TINY)
    with torch.no_grad():  # push the encoder's output far out for the lowest keys
        model.encoder.output.weight.mul_(40.0)
    keys = torch.randint(0, 88, (4, 32))
    dts = torch.randint(0, 32, (4, 32))
    r = range_report(model, keys, dts)
    with torch.no_grad():
        e = model.encoder(keys, dts)
    assert r["range_penalty"] == pytest.approx(float(range_penalty(e)), rel=1e-5)
    assert r["outside"] == pytest.approx(float((e.abs() > 1).float().mean()))
    assert r["far_low"] + r["far_high"] == int((e.abs() > 3).sum())
    assert 0 <= r["far_share_of_penalty"] <= 1


# ---- without the time input (the paper's rows without +ΔT) ------------------------------------


def test_a_model_without_the_time_input_ignores_delta_times(tmp_path):
    from dataclasses import replace

    from pianogenie import export

    torch.manual_seed(0)
    timed, untimed = PianoGenie(TINY).eval(), PianoGenie(replace(TINY, time_input=False)).eval()
    assert sum(p.numel() for p in untimed.parameters()) < sum(p.numel() for p in timed.parameters())
    keys = torch.randint(0, 88, (2, 20))
    dt_a, dt_b = torch.randint(0, 33, (2, 20)), torch.randint(0, 33, (2, 20))
    for model, same in ((untimed, True), (timed, False)):
        with torch.no_grad():
            a, b = model(keys, dt_a)[0], model(keys, dt_b)[0]
            ea, eb = model.encoder(keys, dt_a), model.encoder(keys, dt_b)
        assert torch.equal(a, b) == same and torch.equal(ea, eb) == same
    dec, _ = export.export_model(untimed, tmp_path)  # the artefact rebuilds as the model it is
    rebuilt = export._decoder_from(torch.jit.load(str(dec)))
    assert rebuilt.decoder.time_input is False
    h = torch.zeros(2, 1, 16)
    with torch.no_grad():
        want = untimed.decoder.step(torch.tensor([[5 / 7 * 2 - 1]]), torch.tensor([3]), torch.tensor([4]), h, h)[0]
        got = rebuilt(torch.tensor([5]), torch.tensor([3]), torch.tensor([9]), h, h)[0]
    torch.testing.assert_close(got, want)  # the button's level 5/7*2-1, any delta-time


def test_eval_adds_the_rows_without_the_time_input(tmp_path):
    from dataclasses import replace

    from pianogenie import evaluate
    from pianogenie.train import train

    perf = synthetic_performances()
    train(tiny_cfg(tmp_path / "model", 3), perf, progress=False)
    iq = tiny_cfg(tmp_path / "runs" / "model-notime", 3)
    iq.model = replace(TINY, time_input=False)
    train(iq, perf, progress=False)
    base = tiny_cfg(tmp_path / "runs" / "baseline-notime", 3)
    base.model = PianoGenieConfig(num_buttons=0, rnn_dim=16, time_input=False)
    train(base, perf, progress=False)
    runs = evaluate.without_time_runs(tmp_path / "runs")
    assert set(runs) == {"iqae", "baseline"}
    r = evaluate.run(tmp_path / "model" / "ckpt.pt", None, perf=perf, player_seeds=1, without_time=runs)
    assert set(r["without_time"]) == {"iqae", "baseline"} and "gold" in r["without_time"]["iqae"]
    report = evaluate.format_report(r)
    assert "without the time input" in report and "no buttons, no time" in report
    with pytest.raises(ValueError, match="with the time input"):
        evaluate.run(tmp_path / "model" / "ckpt.pt", None, perf=perf, player_seeds=1,
                     without_time={"iqae": tmp_path / "model" / "ckpt.pt"})


def test_cards_are_written_again_with_the_shipped_models_gold(tmp_path):
    import json
    import shutil

    from pianogenie import evaluate, export
    from pianogenie.gold import gold_measure

    for f in export.WEIGHTS_DIR.iterdir():
        if f.suffix in (".json", ".pt", ".md"):
            shutil.copy(f, tmp_path / f.name)
    kept = json.loads((tmp_path / "pianogenie_metrics.json").read_text())
    kept["model"]["gold"]["gold_l2"] = 99.0  # as if measured with other tunes
    (tmp_path / "pianogenie_metrics.json").write_text(json.dumps(kept))
    written = export.refresh_cards(tmp_path)
    assert {p.name for p in written} == {"pianogenie_metrics.json", "pianogenie.md", "pianogenie_vq_metrics.json",
                                         "pianogenie_vq.md"}
    gold = gold_measure(evaluate.load(evaluate.SHIPPED, tmp_path)[0])["gold_l2"]
    after = json.loads((tmp_path / "pianogenie_metrics.json").read_text())
    assert after["model"]["gold"]["gold_l2"] == gold and after["model"]["perplexity"] == kept["model"]["perplexity"]
    assert f"**{gold:.2f}**" in (tmp_path / "pianogenie.md").read_text()
