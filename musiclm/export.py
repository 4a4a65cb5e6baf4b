"""Export the Music Transformer for the daemon, and write its model card.

One TorchScript artefact per exported checkpoint, ``musiclm_<dataset>.pt`` (through
``daemon.runtime.save_model``: scripted, never traced); the package ships ``musiclm_maestro.pt``,
the live model (the JSB models stay checkpoints, in ``checkpoints/musiclm/``):

- ``forward(token, position, kv_cache) -> (logits, kv_cache)``: one token for each of B rows
  (token: [B] longs; position: the token's index in the stream, i.e. how many tokens the cache
  has heard; kv_cache: [layers, 2, B, heads, max_len - 1, head_dim]; logits: [B, vocab]).
- ``empty_cache(b)``: the cache before the first token. The cache is a ring of the last
  ``max_len - 1`` tokens (the training length), written in place by TorchScript (ONNX returns a
  new one): a token costs the same at every position, and a caller that branches (an answer
  sampled from what was heard) copies the cache first.
- attributes ``max_len``, ``vocab_size``, ``position``, ``cache`` (``"ring"``; a file without it
  predates the ring and is refused) and ``vocab_json`` (the frozen vocabulary).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn

from daemon import runtime
from modelkit.checkpoints import load_checkpoint, slim_checkpoint
from modelkit.timing import load_words
from musiclm import tokenizer as tk
from musiclm.evaluate import RUN_NAMES, parent_of
from musiclm.model import MusicTransformer, MusicTransformerConfig
from musiclm.processor import CACHE_LAYOUT, empty_cache
from musiclm.train import config_from_checkpoint, model_from_checkpoint, preset

log = logging.getLogger("genie.musiclm.export")

PACKAGE = Path(__file__).resolve().parent
WEIGHTS_DIR = PACKAGE / "weights"
SHIPPED_CHECKPOINTS = PACKAGE.parent / "checkpoints" / "musiclm"
CARD = "musiclm.md"
MODEL_FILE = "musiclm_maestro.pt"  # the live model


class MusicTransformerStep(nn.Module):
    """The trained model as a step function with an explicit key/value cache."""

    def __init__(self, model: MusicTransformer, vocab: dict) -> None:
        super().__init__()
        self.model = model
        self.max_len: int = model.max_len
        self.vocab_size: int = model.cfg.vocab_size
        self.position: str = model.cfg.position
        self.cache: str = CACHE_LAYOUT  # musiclm.processor.empty_cache checks it
        self.vocab_json: str = json.dumps(vocab, sort_keys=True)

    @torch.jit.export
    def empty_cache(self, batch: int) -> torch.Tensor:
        return self.model.empty_cache(batch)

    def forward(self, token: torch.Tensor, position: int, kv_cache: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.step(token, position, kv_cache)


class OnnxStep(nn.Module):
    """``MusicTransformerStep.forward`` for ONNX: the position is a tensor (TorchScript takes an
    int), so the absolute model's sinusoid is gathered rather than sliced; the rest is ``step``."""

    def __init__(self, model: MusicTransformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, token: torch.Tensor, position: torch.Tensor, kv_cache: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.model
        x = m.tok(token.unsqueeze(1)) * m.embed_scale  # (B, 1, C)
        if m.absolute:
            x = x + m.pos.index_select(0, position.reshape(1)).unsqueeze(0)
        return m.step_embedded(x, position.reshape(()), kv_cache, False)  # a graph returns a new cache


def model_from_artefact(scripted: torch.jit.ScriptModule) -> MusicTransformer:
    """The eager model rebuilt from an exported ``musiclm_*.pt`` (its sizes read off its weights)."""
    sd = {k[len("model."):]: v for k, v in scripted.state_dict().items() if k != "model.pos"}
    inner = scripted.model
    cfg = MusicTransformerConfig(vocab_size=int(scripted.vocab_size), max_len=int(scripted.max_len),
                                 n_layer=int(inner.n_layer), n_head=int(inner.n_head),
                                 d_model=sd["tok.weight"].shape[1], d_ff=sd["blocks.0.mlp.fc.weight"].shape[0],
                                 position=str(scripted.position))
    model = MusicTransformer(cfg)
    model.load_state_dict(sd)  # strict
    return model.eval()


PARITY_PAST_WINDOW = 344  # tokens the parity run goes on past the context window (600 in all at L = 256)


def parity_tokens(max_len: int) -> int:
    return max_len + PARITY_PAST_WINDOW


def parity_run(model: runtime.Model) -> list[np.ndarray]:
    """A performance drawn from the model's own distribution (fixed seed), fed through the cached
    step ``PARITY_PAST_WINDOW`` tokens past the context window (the cache slides): every step's
    token probabilities. The absolute model, trained only up to L, stops at L."""
    from modelkit.onnx_export import probabilities

    step = model.function()
    max_len = int(model.attr("max_len"))
    tokens = max_len if str(model.attr("position")) == "absolute" else parity_tokens(max_len)
    rng = np.random.default_rng(0)
    cache, tok, out = empty_cache(model), 1, []  # 1: BOS in both vocabularies
    for pos in range(tokens):
        logits, cache = step(np.array([tok]), pos, cache)
        out.append(probabilities(logits))
        tok = int(rng.choice(out[-1].shape[-1], p=out[-1][0]))
    return out


def export_onnx(path: str | Path | None = None) -> list[tuple[Path, float]]:
    """Write ``NAME.onnx`` beside the exported ``NAME.pt`` (default: the shipped MAESTRO model):
    [(file, largest difference from TorchScript)]."""
    from modelkit.onnx_export import OnnxFunction, export_checked

    path = Path(path) if path else WEIGHTS_DIR / MODEL_FILE
    scripted = runtime.load_torchscript(path)
    model = model_from_artefact(scripted)
    cache = model.empty_cache(1)
    with torch.no_grad():
        for pos in range(3):
            _, cache = model.step(torch.tensor([1]), pos, cache)
    fn = OnnxFunction("forward", OnnxStep(model).eval(), (torch.tensor([1]), torch.tensor(3), cache),
                      ("token", "position", "kv_cache"), ("logits", "new_cache"))
    attrs = {"max_len": model.max_len, "vocab_size": model.cfg.vocab_size, "position": model.cfg.position,
             "cache": CACHE_LAYOUT, "vocab_json": str(scripted.vocab_json), "model.n_layer": model.n_layer,
             "model.n_head": model.n_head, "model.head_dim": model.head_dim}
    files, diff = export_checked(path, [fn], attrs, parity_run)
    return [(f, diff) for f in files]


def vocab_of(dataset: str) -> dict:
    return tk.JSB_VOCAB if dataset == "jsb" else tk.PERFORMANCE_VOCAB


def export_model(model: MusicTransformer, path: str | Path, vocab: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    runtime.save_model(MusicTransformerStep(model.eval(), vocab), path)
    return path


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write ``musiclm_<dataset>.pt`` from a checkpoint (best.pt or ckpt.pt) into ``out_dir``."""
    ckpt = load_checkpoint(checkpoint)
    cfg = config_from_checkpoint(ckpt)
    out = Path(out_dir) if out_dir else WEIGHTS_DIR
    return export_model(model_from_checkpoint(ckpt), out / f"musiclm_{cfg.dataset}.pt", vocab_of(cfg.dataset))


# ---- shipping: checkpoints, metrics, curves, card --------------------------------------------


def copy_runs(runs_dir: str | Path = Path("runs") / "musiclm", dest: str | Path = SHIPPED_CHECKPOINTS,
              best_for: tuple[str, ...] = ("jsb-relative", "jsb-absolute")) -> list[Path]:
    """Copy each run's last checkpoint (slimmed: ``modelkit.checkpoints.slim_checkpoint``), history.json
    and loss.png into ``checkpoints/musiclm/<run>/``, and best.pt (weights only) for the runs in ``best_for``
    (those not shipped as an artefact in musiclm/weights) when it is not the last checkpoint."""
    from modelkit.checkpoints import save_atomic

    written = []
    for name in RUN_NAMES:
        src, dst = Path(runs_dir) / name, Path(dest) / name
        if not (src / "ckpt.pt").is_file():
            continue
        dst.mkdir(parents=True, exist_ok=True)
        save_atomic(slim_checkpoint(load_checkpoint(src / "ckpt.pt")), dst / "ckpt.pt")
        written.append(dst / "ckpt.pt")
        files = ["history.json", "loss.png"]
        if name in best_for and (src / "best.pt").is_file():
            if load_checkpoint(src / "best.pt")["step"] != load_checkpoint(src / "ckpt.pt")["step"]:
                files.append("best.pt")
            elif (dst / "best.pt").is_file():  # the last step is the best: ckpt.pt holds its weights, and
                (dst / "best.pt").unlink()     # an older best.pt would be read before it
                written.append(dst / "best.pt")
        for f in files:
            if (src / f).is_file():
                shutil.copy2(src / f, dst / f)
                written.append(dst / f)
    return written


def _fmt(x: float | None, nd: int = 3) -> str:
    return "—" if x is None else f"{x:.{nd}f}"


def write_card(out_dir: str | Path | None = None, runs: str | Path = SHIPPED_CHECKPOINTS,
               source: str | Path | None = None) -> list[Path]:
    """Evaluate the shipped checkpoints and write metrics JSON, the curves PNG and the card;
    ``source``: the checkpoint the live model was exported from (the card's export command)."""
    from musiclm import evaluate

    out = Path(out_dir) if out_dir else WEIGHTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    png = out / "musiclm_curves.png"
    result = evaluate.run(None, None, None, split="both", png=png, runs=runs)
    result["exported_from"] = str(source) if source else None
    if (out / MODEL_FILE).is_file():
        from musiclm import bench

        result["onnx"] = {f.name: diff for f, diff in export_onnx(out / MODEL_FILE)}  # beside it, checked
        result["bench"] = bench.run(out / MODEL_FILE)
    metrics = out / "musiclm_metrics.json"
    metrics.write_text(json.dumps(result, indent=1) + "\n")
    card = out / CARD
    card.write_text(render_card(result, runs))
    return [metrics, png, card]


def _baseline(runs: str | Path, dataset: str) -> list[str]:
    """The card's paragraph on relative against absolute attention, at equal steps: the runs share
    settings, schedule and batches (same seed), so their curves compare step by step."""
    rel_name, abs_name = f"{dataset}-relative", f"{dataset}-absolute"
    label = {"jsb": "JSB Chorales", "maestro": "MAESTRO"}[dataset]
    cmp = same_step(runs, rel_name, abs_name)
    if cmp is None:
        return [f"The {label} absolute baseline has not been trained: \"relative better than absolute\" is open"
                " there.", ""]
    rel, ab = cmp[rel_name], cmp[abs_name]
    at = [f"{s:,}: {r:.3f} vs {a:.3f}" for s, r, a in cmp["curve"][-4:]]
    text = (f"**{label}, relative against absolute** (the baseline run has the relative run's settings,"
            f" schedule and batches; validation NLL on the same fixed windows, the training-time estimate):"
            f" at step {cmp['step']:,}, the last both reached, relative {rel:.3f} against absolute {ab:.3f}"
            f" ({'relative better' if rel < ab else 'absolute better'} by {abs(ab - rel):.3f} nats per"
            f" token; at steps {'; '.join(at)}).")
    if cmp["last"][rel_name] > cmp["step"]:
        text += (f" The baseline stopped there; the relative run went on to step {cmp['last'][rel_name]:,}"
                 + (" (so the table's two JSB rows are not at equal training)." if dataset == "jsb" else "."))
    if dataset == "jsb" and ab - rel > 0.06:
        text += (" The gap is larger than the paper's (0.06), most likely because neither run has converged"
                 " and the absolute model learns more slowly; the gap at convergence is not measured here.")
    return [text, ""]


def _run_info(runs: Path, name: str) -> dict | None:
    path = Path(runs) / name / "ckpt.pt"
    if not path.is_file():
        return None
    ckpt = load_checkpoint(path)
    vals = [h for h in ckpt["history"] if "val_loss" in h]
    best_step = min(vals, key=lambda h: h["val_loss"])["step"] if vals else None
    c = ckpt["config"]
    rows = [h for h in ckpt["history"] if "ms_per_step" in h and h["step"] % c["eval_every"] != c["log_every"]]
    ms = sorted(h["ms_per_step"] for h in rows)  # logging intervals without a validation in them
    return {"step": ckpt["step"], "best_step": best_step, "best_val": ckpt["best_val"],
            "wall_min": ckpt["wall_time_s"] / 60, "ms_per_step": ms[len(ms) // 2] if ms else None,
            "params": MusicTransformer(config_from_checkpoint(ckpt).model).num_params(),
            "config": ckpt["config"], "meta": ckpt["meta"], "parent": parent_of(ckpt["config"])}


def same_step(runs: str | Path, a: str, b: str) -> dict | None:
    """Validation NLL (the training-time estimate, the same fixed windows for both) of runs ``a``
    and ``b`` at the last step both validated at, and whether they shared the schedule there."""
    hist = {}
    for name in (a, b):
        path = Path(runs) / name / "history.json"
        if not path.is_file():
            return None
        hist[name] = {h["step"]: h["val_loss"] for h in json.loads(path.read_text()) if "val_loss" in h}
    common = sorted(set(hist[a]) & set(hist[b]))
    if not common:
        return None
    step = common[-1]
    return {"step": step, a: hist[a][step], b: hist[b][step],
            "curve": [(s, hist[a][s], hist[b][s]) for s in common], "last": {n: max(hist[n]) for n in (a, b)}}


def onnx_sequence(max_len: int) -> str:
    return (f"a performance of {parity_tokens(max_len)} tokens drawn from the model itself (fixed seed), fed"
            f" through the cached step past the {max_len}-token window, so the cache slides")


def _maestro_protocol(entry: dict) -> list[str]:
    """The card's note on how MAESTRO is read, with the earlier protocol's figures for the same model."""
    old = [entry.get(s, {}).get("nll_no_overlap") for s in ("validation", "test")]
    text = ("MAESTRO is read as JSB is: windows of L+1 tokens stepping by L/2, each token scored once with at"
            " least L/2 tokens of context (the live model always hears up to L-1).")
    if None not in old:
        text += (" Until December 2026 this card read MAESTRO in non-overlapping windows, where a window's first"
                 " tokens have next to no context (the first alone cost about 7 nats): the same model gives"
                 f" {old[0]:.3f} validation and {old[1]:.3f} test that way.")
    return [text, ""]


def _lineage(info: dict[str, dict | None]) -> list[str]:
    """A sentence per run that started from another run's weights (``--init-from``)."""
    out = []
    for name, i in info.items():
        pname = (i or {}).get("parent")
        if not pname:
            continue
        p = info.get(pname)
        c = i["config"]
        out.append(f"`{name}` starts from `{pname}`'s weights"
                   + (f" at step {p['step']:,}" if p else "")
                   + f" (`--init-from`), its context grown from {p['config']['model']['max_len'] if p else '?'} to"
                   f" {c['model']['max_len']} tokens (the new far distances start as the farthest learned): peak"
                   f" learning rate {c['lr']:g} after {c['warmup_steps']} warm-up steps, cosine to"
                   f" {c['lr'] * c['min_lr_ratio']:g} at step {c['steps']:,}, batches of {c['batch_size']} sequences,"
                   f" {c['threads']} thread(s); its steps and wall time are its own"
                   + (f" (with its parent's: {i['step'] + p['step']:,} steps, {i['wall_min'] + p['wall_min']:.0f} min)."
                      if p else "."))
    if out:
        out += ["The training-time estimates of the MAESTRO runs that started before December 2026"
                " (`maestro-relative`, `maestro-absolute`) read non-overlapping windows; later runs read windows"
                " by L/2 (see Results): compare a run with its own curve, and models with each other in the"
                " Results table."]
    return [" ".join(out), ""] if out else []


def _init_commands(info: dict[str, dict | None]) -> list[str]:
    """The command that made each run started from another (its config holds every setting)."""
    out = []
    for name, i in info.items():
        if (i or {}).get("parent"):
            c = i["config"]
            out.append(f"genie train musiclm --init-from checkpoints/musiclm/{i['parent']}/ckpt.pt --max-len"
                       f" {c['model']['max_len']} --batch-size {c['batch_size']} --lr {c['lr']:g} --steps {c['steps']}"
                       f" --threads {c['threads']} --out runs/musiclm/{name}"
                       + (f"  # stopped by hand at step {i['step']:,}" if i["step"] < c["steps"] else ""))
    return out


def render_card(result: dict, runs: str | Path) -> str:
    """The model card (Markdown) from the evaluation and the checkpoints alone."""
    info = {n: _run_info(Path(runs), n) for n in RUN_NAMES}
    r = result.get("models", {})

    def nll(name: str, split: str) -> float | None:
        return (r.get(name) or {}).get(split, {}).get("nll")

    rel_v, abs_v, mae_v = nll("jsb-relative", "validation"), nll("jsb-absolute", "validation"), nll("maestro-relative", "validation")
    live_len = (r.get("maestro-relative") or {}).get("max_len", preset("maestro").model.max_len)
    jsb_cmp = same_step(runs, "jsb-relative", "jsb-absolute")

    def met(ok: bool | None) -> str:
        return "—" if ok is None else ("yes" if ok else "**no**")

    lines = [
        "# Music Transformer (musiclm): model card",
        "",
        "A decoder-only transformer with relative position attention (Huang et al. 2018, \"Music Transformer\","
        " arXiv 1809.04281), trained here on a 2-core CPU. `musiclm_maestro.pt` is the live model for the"
        " continuation processor. The JSB Chorales experiment of the paper (relative attention against the"
        " absolute-position baseline) is evaluated from its checkpoints in `checkpoints/musiclm/`.",
        "",
        "## Results (NLL per token, nats; lower is better)",
        "",
        "| model | ours: validation | ours: test | paper (validation) | target | met |",
        "|---|---|---|---|---|---|",
        f"| JSB, relative attention | {_fmt(rel_v)} | {_fmt(nll('jsb-relative', 'test'))}"
        f" | 0.357 | ≤ 0.36 | {met(None if rel_v is None else rel_v <= 0.36)} |",
        f"| JSB, absolute (baseline) | {_fmt(abs_v)} | {_fmt(nll('jsb-absolute', 'test'))}"
        f" | 0.417 | measurably worse than relative, at equal steps |"
        f" {met(None if jsb_cmp is None else jsb_cmp['jsb-absolute'] - jsb_cmp['jsb-relative'] > 0.02)} |",
        f"| MAESTRO (ASAP subset), relative, L = {live_len} | {_fmt(mae_v)}"
        f" | {_fmt(nll('maestro-relative', 'test'))} | 1.835 (Piano-e-Competition, large model) | ≤ 2.0 |"
        f" {met(None if mae_v is None else mae_v <= 2.0)} |",
        "",
        *_maestro_protocol(r.get("maestro-relative") or {}),
        *_baseline(runs, "jsb"),
        *_baseline(runs, "maestro"),
        "Curves: `musiclm_curves.png` (training and validation NLL against step for every run); per-run loss"
        " curves in `checkpoints/musiclm/<run>/loss.png`. Numbers from `genie eval musiclm --json`"
        " (`musiclm_metrics.json`).",
        "",
    ]
    from modelkit.onnx_export import card_section

    lines += [card_section(result.get("onnx") or {}, onnx_sequence(live_len))]
    bench = result.get("bench")
    if bench and bench.get("at"):
        lines += ["## Speed (`genie bench musiclm`, one thread)", "",
                  "| context position | cached tokens/s, TorchScript | cached tokens/s, ONNX Runtime |"
                  " uncached tokens/s (whole window re-run) |", "|---|---|---|---|"]
        for p, v in bench["at"].items():
            if "cached_tokens_per_s" in v:
                onnx = f"{v['onnx_cached_tokens_per_s']:.0f}" if "onnx_cached_tokens_per_s" in v else "-"
                lines.append(f"| {p} | {v['cached_tokens_per_s']:.0f} | {onnx} | {v['uncached_tokens_per_s']:.0f} |")
        lines += ["", f"Targets: ≥ 500 tokens/s cached ({met(bench.get('meets_500_tokens_per_s'))}), flat within"
                  f" 1.5× from 64 to 1024 (max/min {bench.get('cached_flatness', float('nan')):.2f}:"
                  f" {met(bench.get('meets_flat_1_5x'))}). Measured {load_words(bench.get('load'))}.", ""]
    lines += [
        "## Training runs",
        "",
        "| run | parameters | L | layers × d (heads, ff) | dropout | batch | steps (best at) | wall time |"
        " ms/step | best validation NLL (training-time estimate) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in RUN_NAMES:
        i = info[name]
        if i is None:
            lines.append(f"| {name} | not trained | | | | | | | | |")
            continue
        m, c = i["config"]["model"], i["config"]
        lines.append(f"| {name} | {i['params']:,} | {m['max_len']} | {m['n_layer']} × {m['d_model']} ({m['n_head']}, "
                     f"{m['d_ff']}) | {m['dropout']} | {c['batch_size']} | {i['step']:,} ({i['best_step']}) | "
                     f"{i['wall_min']:.1f} min | {_fmt(i['ms_per_step'], 0)} | {_fmt(i['best_val'])} |")
    lines += [
        "",
        "Runs from scratch: Adam (AdamW with weight decay 0.05 on JSB), peak learning rate 1e-3, 200 warm-up steps,"
        " cosine decay to 1e-4 at the run's step budget, gradient clipping 1.0, one CPU thread at the"
        " lowest priority on a 2-core machine shared with other jobs, stopped by a time limit. ms/step is the"
        " median over logging intervals. The runs are resumable (see `checkpoints/musiclm/README.md`):"
        " none has converged, and the numbers are the best reached in this time, not the model's limit.",
        "",
        *_lineage(info),
        "## Data and protocol",
        "",
        "**JSB Chorales**: `jsb-chorales-czhuang/Jsb16thSeparated.npz` (Coconet's 16th-note SATB version;"
        " the BL2012 train/valid/test split of the file: 229 / 76 / 77 chorales). A chorale of T frames is"
        " BOS then 4T tokens in raster order S1 A1 T1 B1 S2 …; vocabulary 131: PAD 0, BOS 1 (the start"
        " token, input only), REST 2 (a silent voice), pitch p → 3 + p. A held note repeats its pitch every"
        " 16th (the data does not tell held from repeated notes). NLL is in nats per voice token (BOS is"
        " never a target), summed over every token of the split and divided by their count. A chorale"
        " longer than L+1 tokens is read in windows of L+1 stepping by L/2, each token scored once with at"
        " least L/2 tokens of context (the paper trained on whole chorales up to 1024 tokens; our L is"
        " shorter, see the table). Training: random crops of L+1 tokens starting at a frame boundary,"
        " transposed by -3..+3 semitones; dropout.",
        "",
        "**MAESTRO** (the live model): the 519 MAESTRO performances of the ASAP dataset"
        " (`asap-maestro-subset`), split by piece with its SOURCE.md rule (the same split as Piano Genie):"
        " h = int(sha1(composer + \"|\" + title), 16) mod 10; 0 test, 1 validation, otherwise train"
        " (404 / 59 / 56 performances, 132 / 18 / 20 pieces). Performance encoding of the paper (Oore et"
        " al. 2018), frozen vocabulary of 391: PAD, BOS, EOS, 128 NOTE_ON, 128 NOTE_OFF, 100 TIME_SHIFT"
        " (10 ms … 1 s), 32 VELOCITY bins; the sustain pedal folded into note durations. Training: random"
        " crops of L+1 tokens from a random note, transposition -3..+3 semitones and time stretch"
        " 0.95–1.05 (the paper's augmentation). Evaluation: each performance encoded whole, unaugmented,"
        " read in windows of L+1 tokens stepping by L/2, each token scored once with at least L/2 tokens of"
        " context (as JSB); `genie eval musiclm` reads a fixed, evenly spaced subset of windows per split (the count is in"
        " `musiclm_metrics.json`). Our data is 35 h of training performances, not the full MAESTRO, and"
        " our context is L tokens (a few seconds of piano), so the paper's 1.835 is not a like-for-like"
        " comparison.",
        "",
        "## The artefacts",
        "",
        "`musiclm_maestro.pt` (TorchScript, `daemon.runtime.load_torchscript`): `forward(token, position,"
        " kv_cache) -> (logits, kv_cache)` and `empty_cache(batch)`; the cache is a ring of the last L-1"
        " tokens (a sliding window written in place: no copy of the past per token), and relative"
        " attention reads the relative embeddings of distances 0..L-1"
        " directly for the new query (no recomputation of the past). The model's attention is"
        " band-limited: at every layer a token sees itself and the L-1 tokens before it, which is what it"
        " was trained on (crops of L) and what the cache reproduces exactly past the window (tested to"
        " 1e-4 against the uncached band-masked forward). Attributes: `max_len`, `vocab_size`,"
        " `position`, `cache` (`ring`), `vocab_json`. Throughput: `genie bench musiclm --json`.",
        "",
        "## How it was made",
        "",
        "```sh",
        "genie train musiclm --dataset jsb --position relative --steps 2500 --max-minutes 28 --threads 1",
        "genie train musiclm --dataset jsb --position absolute --steps 2500 --max-minutes 28 --threads 1",
        "genie train musiclm --dataset jsb --position relative --steps 16000 --threads 1   # resumed; stopped at step 6,800",
        "genie train musiclm --dataset jsb --position relative --steps 14500 --threads 1   # resumed; stopped at step 11,200",
        "genie train musiclm --dataset jsb --position relative --steps 17000 --max-minutes 50 --threads 1  # resumed to the end of its schedule",
        "genie train musiclm --dataset jsb --position absolute --steps 16000 --threads 1   # resumed beside it; stopped by hand at step 4,600",
        "genie train musiclm --dataset maestro --position relative --steps 4500 --max-minutes 76 --threads 1",
        "genie train musiclm --dataset maestro --position relative --steps 12000 --max-minutes 140 --threads 1  # resumed; stopped by hand at step 9,200",
        "genie train musiclm --dataset maestro --position absolute --steps 4500 --max-minutes 50 --threads 1  # stopped by hand at step 2,000",
        "genie train musiclm --dataset maestro --position relative --steps 16500 --max-minutes 125 --threads 1  # resumed; to the end of its schedule",
        *_init_commands(info),
        "genie export musiclm" + (f" --checkpoint {result['exported_from']}" if result.get("exported_from") else "")
        + " --card",
        "```",
        "",
        "(`musiclm/train_schedule.sh` runs the three trainings in sequence.)",
        "",
        "## Licence",
        "",
        "Licence: CC BY-NC-SA 4.0 (the weights, trained on MAESTRO via ASAP); the code is MIT.",
        "",
        "- `musiclm_maestro.pt` and the `maestro-relative` checkpoint: **CC BY-NC-SA 4.0** (non-commercial,"
        " share-alike), the licence of the data they were trained on: ASAP dataset (Foscarin et al., ISMIR"
        " 2020), CC BY-NC-SA 4.0; performances from the MAESTRO dataset (Hawthorne et al., ICLR 2019,"
        " Google LLC), CC BY-NC-SA 4.0.",
        "- The `jsb-*` checkpoints: Bach's chorales are public domain; the upstream"
        " repository (czhuang/JSB-Chorales-dataset) has no licence file, and the `.npz` was also distributed"
        " in the Apache-2.0 Magenta repository. Cite Boulanger-Lewandowski et al. 2012 and Huang et al.,"
        " \"Counterpoint by Convolution\" (ISMIR 2017).",
        "",
    ]
    return "\n".join(lines)
