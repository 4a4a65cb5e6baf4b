"""Music Transformer data and training on tiny synthetic datasets built here (seconds each):
batches are pure functions of (seed, step), evaluation scores each token once, training resumes
exactly, and train/eval/export run through the CLI."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from musiclm import data
from musiclm import tokenizer as tk
from musiclm.train import preset, train
from pianogenie.data import split_of


def chorale(rng, frames):
    base = np.array([72, 67, 62, 50], dtype=np.float64)
    walk = np.cumsum(rng.integers(-2, 3, (frames // 4, 4)), 0)
    x = np.repeat(base + walk, 4, axis=0)[:frames]
    x[rng.random(x.shape) < 0.02] = np.nan
    return x


def make_jsb(root, seed=0):
    rng = np.random.default_rng(seed)
    d = root / data.JSB_DATASET
    d.mkdir(parents=True)
    split = {}
    for name, n in (("train", 6), ("valid", 3), ("test", 3)):
        arr = np.empty(n, dtype=object)
        for i in range(n):
            arr[i] = chorale(rng, int(rng.integers(12, 40))).astype(np.float16)
        split[name] = arr
    np.savez(d / data.JSB_FILE, **split)


def titles_for_each_split():
    want, found, i = {"train": 2, "validation": 1, "test": 1}, [], 0
    while any(want.values()):
        t = f"Piece{i}"
        s = split_of("Tester", t)
        if want[s]:
            want[s] -= 1
            found.append(t)
        i += 1
    return found


def make_asap(root, seed=0):
    rng = np.random.default_rng(seed)
    d = root / data.MAESTRO_DATASET
    rows = ["composer,title,folder,midi_performance,maestro_midi_performance"]
    for title in titles_for_each_split():
        (d / "Tester" / title).mkdir(parents=True)
        n = 80
        start = np.cumsum(rng.exponential(0.12, n))
        notes = tk.Notes(start, start + rng.exponential(0.3, n), rng.integers(40, 90, n), rng.integers(30, 110, n))
        tk.write_midi(notes, d / "Tester" / title / "P01.mid")
        rows.append(f"Tester,{title},Tester/{title},Tester/{title}/P01.mid,{{maestro}}/x.midi")
    (d / "metadata.csv").write_text("\n".join(rows) + "\n")


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    make_jsb(root)
    make_asap(root)
    return root


def tiny_cfg(dataset, position, out, root, **kw):
    cfg = preset(dataset, position, out_dir=str(out), data_dir=str(root), cache_dir=str(out / "cache"),
                 batch_size=4, steps=6, warmup_steps=2, ckpt_every=3, eval_every=3, log_every=1, **kw)
    cfg.model.max_len, cfg.model.n_layer, cfg.model.d_model, cfg.model.d_ff, cfg.model.n_head = 16, 1, 16, 32, 2
    return cfg


def test_jsb_batches_are_pure_and_frame_aligned(datasets):
    ch = data.load_jsb(datasets / data.JSB_DATASET)
    s = data.JsbSampler(ch["train"], 8, 16, seed=3)
    np.testing.assert_array_equal(s.batch(5), s.batch(5))
    assert not np.array_equal(s.batch(5), s.batch(6))
    for row in s.batch(7):  # a crop starts with BOS, or with a bass, so position 1 mod 4 is a soprano
        assert row[0] == tk.BOS or row[0] in range(tk.JSB_REST, tk.JSB_VOCAB_SIZE)


def test_jsb_windows_score_every_token_once():
    rng = np.random.default_rng(0)
    chorales = [chorale(rng, n) for n in (3, 16, 17, 50)]
    x, y = data.jsb_windows(chorales, 16)
    assert (y != tk.PAD).sum() == sum(4 * len(c) for c in chorales)
    # the scored targets, in order, are each chorale's voice tokens
    scored = y[y != tk.PAD]
    np.testing.assert_array_equal(scored, np.concatenate([tk.jsb_encode(c)[1:] for c in chorales]))


def test_maestro_crops_are_pure_augmented_and_never_orphan_a_note_off(datasets):
    perf = data.prepare_maestro(datasets / data.MAESTRO_DATASET, datasets / "cache")
    assert set(perf.splits) == {"train", "validation", "test"}
    s = data.MaestroSampler(perf.subset("train"), 6, 64, seed=1)
    b = s.batch(2)
    np.testing.assert_array_equal(b, s.batch(2))
    for row in b:
        on = set()
        for t in row[row != tk.PAD]:
            if tk.NOTE_ON <= t < tk.NOTE_OFF:
                on.add(t - tk.NOTE_ON)
            elif tk.NOTE_OFF <= t < tk.TIME_SHIFT:
                assert t - tk.NOTE_OFF in on
                on.discard(t - tk.NOTE_OFF)


@pytest.mark.parametrize("stride", [8, 16])
def test_scored_windows_score_every_token_once_with_the_context_promised(stride):
    seqs = [np.arange(3, 3 + n) for n in (2, 16, 17, 40)]  # token = 3 + its index: context is readable
    x, y = data.scored_windows(seqs, 16, stride)
    np.testing.assert_array_equal(y[y != tk.PAD], np.concatenate([s[1:] for s in seqs]))
    for xi, yi in zip(x, y):
        for j in np.flatnonzero(yi != tk.PAD):  # target j is predicted from x[0..j]: all its past, or >= L - stride
            assert xi[j] == yi[j] - 1 and (xi[0] == 3 or j + 1 >= 16 - stride)


def test_maestro_windows_read_whole_performances_by_half_windows(datasets):
    perf = data.prepare_maestro(datasets / data.MAESTRO_DATASET, datasets / "cache").subset("validation")
    seqs = [tk.encode(perf.notes(i)) for i in range(len(perf))]
    for stride, default in ((8, True), (16, False)):
        got = data.maestro_windows(perf, 16) if default else data.maestro_windows(perf, 16, stride=stride)
        want = data.scored_windows(seqs, 16, stride)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    x, _ = data.maestro_windows(perf, 16, limit=3)
    assert len(x) == 3


@pytest.mark.parametrize("dataset", ["jsb", "maestro"])
def test_training_resumes_exactly(datasets, tmp_path, dataset):
    torch.manual_seed(0)
    once = train(tiny_cfg(dataset, "relative", tmp_path / "once", datasets), progress=False)
    first = tiny_cfg(dataset, "relative", tmp_path / "twice", datasets)
    first.steps = 3
    train(first, progress=False)
    again = tiny_cfg(dataset, "relative", tmp_path / "twice", datasets)
    twice = train(again, progress=False)
    assert once["step"] == twice["step"] == 6
    for k in once["model"]:
        torch.testing.assert_close(once["model"][k], twice["model"][k])
    assert (tmp_path / "twice" / "loss.png").is_file() and (tmp_path / "twice" / "best.pt").is_file()


def test_cli_train_eval_export_bench(datasets, tmp_path):
    from musiclm.cli import bench_cmd, eval_cmd, export_cmd, train_cmd

    r = CliRunner()
    small = ["--steps", "4", "--ckpt-every", "2", "--max-len", "16", "--layers", "1", "--d-model", "16",
             "--batch-size", "4", "--data", str(datasets)]
    for ds, pos in (("jsb", "relative"), ("jsb", "absolute"), ("maestro", "relative")):
        res = r.invoke(train_cmd, ["--dataset", ds, "--position", pos, "--out", str(tmp_path / f"{ds}-{pos}"), *small],
                       env={"XDG_CACHE_HOME": str(tmp_path / "xdg")})
        assert res.exit_code == 0, res.output
    res = r.invoke(export_cmd, ["--checkpoint", str(tmp_path / "maestro-relative" / "best.pt"), "--out", str(tmp_path / "w")])
    assert res.exit_code == 0, res.output
    res = r.invoke(eval_cmd, ["--jsb-relative", str(tmp_path / "jsb-relative" / "best.pt"),
                              "--jsb-absolute", str(tmp_path / "jsb-absolute" / "ckpt.pt"),
                              "--maestro", str(tmp_path / "w" / "musiclm_maestro.pt"),
                              "--maestro-windows", "8", "--data", str(datasets), "--json"],
                   env={"XDG_CACHE_HOME": str(tmp_path / "xdg")})
    assert res.exit_code == 0, res.output
    out = json.loads(res.output[res.output.index("{"):])
    for name in ("jsb-relative", "jsb-absolute", "maestro-relative"):
        assert 0 < out["models"][name]["validation"]["nll"] < 8, out
    res = r.invoke(bench_cmd, ["--weights", str(tmp_path / "w" / "musiclm_maestro.pt"), "--positions", "4,20",
                               "--tokens", "5", "--json"])
    assert res.exit_code == 0, res.output
    b = json.loads(res.output[res.output.index("{"):])
    assert b["at"]["20"]["context"] == 16 and b["cached_min_tokens_per_s"] > 0
    assert b["load"]["cpus"] >= 1  # the card says how busy the machine was
    res = r.invoke(bench_cmd, ["--weights", str(tmp_path / "w" / "musiclm_maestro.pt"), "--positions", "4",
                               "--tokens", "5"])
    assert res.exit_code == 0 and "busy with other work" in res.output, res.output


def test_a_new_run_starts_from_a_shorter_one_with_a_longer_context(datasets, tmp_path):
    from modelkit.checkpoints import load_checkpoint
    from musiclm.cli import train_cmd

    r, env = CliRunner(), {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    small = ["--ckpt-every", "2", "--batch-size", "4", "--data", str(datasets)]
    short, long = tmp_path / "maestro-relative", tmp_path / "maestro-relative-512"
    res = r.invoke(train_cmd, ["--out", str(short), "--steps", "4", "--max-len", "16", "--layers", "1",
                               "--d-model", "16", *small], env=env)
    assert res.exit_code == 0, res.output
    parent = str(short / "ckpt.pt")
    res = r.invoke(train_cmd, ["--init-from", parent, "--max-len", "32", "--steps", "2", "--lr", "3e-4",
                               "--out", str(long), *small], env=env)
    assert res.exit_code == 0, res.output
    ckpt = load_checkpoint(long / "ckpt.pt")
    assert ckpt["step"] == 2 and ckpt["model_args"]["max_len"] == 32 and ckpt["model_args"]["d_model"] == 16
    assert ckpt["config"]["init_from"] == parent and ckpt["config"]["lr"] == 3e-4
    before = load_checkpoint(parent)["model"]  # two Adam steps of at most lr from the parent's weights
    torch.testing.assert_close(ckpt["model"]["tok.weight"], before["tok.weight"], atol=1e-3, rtol=0)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    for bad in (["--init-from", parent, "--max-len", "8"], ["--init-from", parent, "--layers", "2"],
                ["--init-from", str(tmp_path / "bad.pt")]):
        res = r.invoke(train_cmd, [*bad, "--out", str(tmp_path / "never"), *small], env=env)
        assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert not (tmp_path / "never").exists()
    # the card says where the run came from, how to make it again, and how MAESTRO was read
    from musiclm.export import render_card

    entry = {"max_len": 32, **{s: {"nll": 2.1, "nll_no_overlap": 2.4} for s in ("validation", "test")}}
    card = render_card({"models": {"maestro-relative": entry}, "exported_from": str(long / "best.pt")}, tmp_path)
    assert "`maestro-relative-512` starts from `maestro-relative`'s weights at step 4" in card
    assert "context grown from 16 to 32 tokens" in card and "peak learning rate 0.0003" in card
    assert "--init-from checkpoints/musiclm/maestro-relative/ckpt.pt --max-len 32 --batch-size 4" in card
    assert f"genie export musiclm --checkpoint {long / 'best.pt'} --card" in card
    assert "relative, L = 32 | 2.100" in card and "2.400 validation and 2.400 test that way" in card
    from musiclm.evaluate import plot_curves, started_from

    assert started_from(tmp_path, "maestro-relative-512") == ("maestro-relative", 4)  # its curve goes on from there
    assert started_from(tmp_path, "maestro-relative") == (None, 0)
    assert plot_curves(tmp_path, tmp_path / "curves.png") and (tmp_path / "curves.png").stat().st_size > 0


def test_slim_checkpoint_resumes_through_modelkit(datasets, tmp_path):
    from modelkit.checkpoints import load_checkpoint, save_atomic, slim_checkpoint

    cfg = tiny_cfg("jsb", "relative", tmp_path / "run", datasets)
    cfg.steps = 3
    ckpt = train(cfg, progress=False)
    slim = slim_checkpoint(ckpt)
    save_atomic(slim, tmp_path / "run" / "ckpt.pt")
    st = next(iter(load_checkpoint(tmp_path / "run" / "ckpt.pt")["optimizer"]["state"].values()))
    assert st["exp_avg"].dtype == torch.bfloat16
    cfg.steps = 6
    assert train(cfg, progress=False)["step"] == 6


def test_copied_runs_keep_best_pt_only_where_the_last_step_is_not_the_best(datasets, tmp_path):
    from modelkit.checkpoints import load_checkpoint, save_atomic
    from musiclm.export import copy_runs

    cfg = tiny_cfg("jsb", "relative", tmp_path / "train", datasets)
    cfg.steps = 2
    ckpt = train(cfg, progress=False)
    run, kept = tmp_path / "runs" / "jsb-relative", tmp_path / "kept" / "jsb-relative"
    run.mkdir(parents=True)
    kept.mkdir(parents=True)
    save_atomic({**ckpt, "step": 4}, run / "ckpt.pt")
    for best_step in (2, 4):
        save_atomic({**ckpt, "step": best_step}, run / "best.pt")
        save_atomic({**ckpt, "step": 1}, kept / "best.pt")  # left by an earlier copy
        copy_runs(tmp_path / "runs", tmp_path / "kept")
        assert load_checkpoint(kept / "ckpt.pt")["step"] == 4
        if best_step == 4:  # ckpt.pt holds the best weights, and no older best.pt is read before it
            assert not (kept / "best.pt").exists()
        else:
            assert load_checkpoint(kept / "best.pt")["step"] == 2


def test_the_card_compares_relative_and_absolute_at_the_last_step_both_reached(tmp_path):
    import json

    from musiclm.export import _baseline, same_step

    for name, start in (("maestro-relative", 3.0), ("maestro-absolute", 3.1)):
        (tmp_path / name).mkdir()
        last = 4000 if name == "maestro-relative" else 2000  # the baseline stopped earlier
        rows = [{"step": s, "val_loss": start - s / 10_000} for s in range(200, last + 1, 200)]
        (tmp_path / name / "history.json").write_text(json.dumps(rows + [{"step": 10, "loss": 5.0}]))
    cmp = same_step(tmp_path, "maestro-relative", "maestro-absolute")
    assert cmp["step"] == 2000
    assert cmp["maestro-relative"] == pytest.approx(2.8) and cmp["maestro-absolute"] == pytest.approx(2.9)
    text = _baseline(tmp_path, "maestro")[0]
    assert "at step 2,000" in text and "relative better by 0.100" in text
    assert "went on to step 4,000" in text
    assert "open" in _baseline(tmp_path / "none", "maestro")[0]
