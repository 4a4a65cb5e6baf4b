"""Evaluate the Drum VAE on the GMD test split, beside honest baselines.

Every mode decodes from z = mu (the encoder's mean for the transformed input) with threshold 0.5
(noise 0.5 in ``decode``), unless said otherwise. Definitions (also in the model card):

- **step accuracy**: the fraction of 16th steps where all 9 hit bits equal the performance's;
  *free-running*: each step sees the decoder's own previous output; *teacher-forced*: each step
  sees the true previous step.
- **hit F1** per class (and micro over all classes), free-running, over all test windows.
- **velocity MAE**: |predicted - true| velocity in MIDI units (0-127), on true-positive hits.
- **timing MAE**: |predicted - true| offset in ms at the file's tempo (half a 16th = 1), on
  true-positive hits.
- **KL**: KL(q(z | T(x)) || N(0, I)) in bits per window.
- **Wasserstein-1** (humanize): between the generated and the real distributions of velocity
  (MIDI units) and offset (ms) per class, over each mode's hits; also per class *and* 16th position
  in the beat (0-3), averaged, where swing shows.

*As played*: the live processor gives the decoded velocities and offsets a drummer's spread
(``drumvae.spread``, tables fitted on the training split); the MAEs and distances of what it plays
are reported beside the decoder's own.

Baselines: all-silent; the training set's most common 2-bar hit pattern of the window's style,
with each class's mean training velocity and no offset; for humanize (the true hits given) the
quantized input at each class's mean velocity, and a random humanizer drawing each hit's
(velocity, offset) from the training hits of its class.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from drumvae import data, spread
from drumvae.model import HUMANIZE, RECONSTRUCT, TAP, TAP_FIXED, TRANSFORM_NAMES, DrumVAE, forced_hits, kl_bits

log = logging.getLogger("genie.drumvae.evaluate")
TARGETS = {"step_acc_free_reconstruction": 0.95}


# ---- metric definitions (pure, tested on hand-made patterns) -------------------------------


def step_accuracy(pred_hits: torch.Tensor | np.ndarray, true_hits: torch.Tensor | np.ndarray) -> float:
    """Fraction of steps where all 9 hit bits match. [..., S, 9] -> scalar."""
    p, t = np.asarray(pred_hits, bool), np.asarray(true_hits, bool)
    return float((p == t).all(-1).mean())


def f1_per_class(pred_hits: np.ndarray, true_hits: np.ndarray) -> tuple[list[float], float]:
    """Hit F1 per class (0 where a class has no true and no predicted hit: undefined -> nan) and micro F1."""
    p, t = np.asarray(pred_hits, bool).reshape(-1, pred_hits.shape[-1]), np.asarray(true_hits, bool).reshape(
        -1, true_hits.shape[-1])
    tp, fp, fn = (p & t).sum(0), (p & ~t).sum(0), (~p & t).sum(0)
    denom = 2 * tp + fp + fn
    per = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), np.nan)
    micro = 2 * tp.sum() / max(2 * tp.sum() + fp.sum() + fn.sum(), 1)
    return [float(v) for v in per], float(micro)


def step_ms(bpm: np.ndarray) -> np.ndarray:
    """Length of a 16th note in ms at each window's tempo."""
    return 60_000.0 / np.asarray(bpm, np.float64) / 4.0


def tp_errors(pred: tuple[np.ndarray, np.ndarray, np.ndarray], true: tuple[np.ndarray, np.ndarray, np.ndarray],
              bpm: np.ndarray) -> tuple[float, float]:
    """(velocity MAE in MIDI units, timing MAE in ms) on true-positive hits. Arrays [N, S, 9]."""
    tp = np.asarray(pred[0], bool) & np.asarray(true[0], bool)
    if not tp.any():
        return float("nan"), float("nan")
    vel = np.abs(pred[1] - true[1])[tp] * 127.0
    ms = (np.abs(pred[2] - true[2]) / 2.0 * step_ms(bpm)[:, None, None])[tp]
    return float(vel.mean()), float(ms.mean())


def wasserstein1(a: np.ndarray, b: np.ndarray, n: int = 512) -> float:
    """1-D Wasserstein-1 distance between two samples (mean |quantile difference|)."""
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    q = (np.arange(n) + 0.5) / n
    return float(np.abs(np.quantile(a, q) - np.quantile(b, q)).mean())


def distribution_distances(pred: tuple[np.ndarray, np.ndarray, np.ndarray], true: tuple[np.ndarray, ...],
                           bpm: np.ndarray) -> dict:
    """W1 per class of velocity (MIDI units) and offset (ms), over each side's own hits; and the
    mean over (class, 16th position in the beat) cells."""
    ms = step_ms(bpm)[:, None, None] * np.ones_like(true[2]) / 2.0
    pos = (np.arange(true[0].shape[1]) % 4)[None, :, None] * np.ones(true[0].shape, int)
    out = {"velocity": [], "offset_ms": [], "velocity_by_position": float("nan"), "offset_ms_by_position": float("nan")}
    vpos, opos = [], []
    for c in range(true[0].shape[-1]):
        ph, th = np.asarray(pred[0][..., c], bool), np.asarray(true[0][..., c], bool)
        out["velocity"].append(wasserstein1(pred[1][..., c][ph] * 127, true[1][..., c][th] * 127))
        out["offset_ms"].append(wasserstein1(pred[2][..., c][ph] * ms[..., c][ph], true[2][..., c][th] * ms[..., c][th]))
        for k in range(4):
            pk, tk = ph & (pos[..., c] == k), th & (pos[..., c] == k)
            if pk.sum() >= 20 and tk.sum() >= 20:
                vpos.append(wasserstein1(pred[1][..., c][pk] * 127, true[1][..., c][tk] * 127))
                opos.append(wasserstein1(pred[2][..., c][pk] * ms[..., c][pk], true[2][..., c][tk] * ms[..., c][tk]))
    if vpos:
        out["velocity_by_position"] = float(np.mean(vpos))
        out["offset_ms_by_position"] = float(np.mean(opos))
    out["velocity_mean"] = float(np.nanmean(out["velocity"]))
    out["offset_ms_mean"] = float(np.nanmean(out["offset_ms"]))
    return out


def metrics(pred: tuple[np.ndarray, np.ndarray, np.ndarray], true: tuple[np.ndarray, np.ndarray, np.ndarray],
            bpm: np.ndarray) -> dict:
    per, micro = f1_per_class(pred[0], true[0])
    vel, ms = tp_errors(pred, true, bpm)
    return {"step_acc_free": step_accuracy(pred[0], true[0]), "f1_per_class": per, "f1_micro": micro,
            "velocity_mae_midi": vel, "timing_mae_ms": ms}


# ---- baselines -----------------------------------------------------------------------------


def class_means(train: data.Windows) -> np.ndarray:
    """Mean velocity (0-1) of each class's training hits. [9]"""
    h = train.hits.astype(bool)
    return np.array([train.velocities[..., c][h[..., c]].mean() if h[..., c].any() else 0.5
                     for c in range(h.shape[-1])], np.float32)


def most_common_patterns(train: data.Windows, num_styles: int) -> np.ndarray:
    """Per style, the most common 2-bar hit pattern of the training windows (all styles' mode where
    a style has none). [styles, S, 9] uint8"""
    def mode(h: np.ndarray) -> np.ndarray:
        flat = h.reshape(len(h), -1)
        uniq, counts = np.unique(flat, axis=0, return_counts=True)
        return uniq[np.argmax(counts)].reshape(h.shape[1:])

    overall = mode(train.hits)
    return np.stack([mode(train.hits[train.style == s]) if (train.style == s).any() else overall
                     for s in range(num_styles)])


def baselines(train: data.Windows, test: data.Windows, seed: int = 0) -> dict:
    true = (test.hits, test.velocities, test.offsets)
    means = class_means(train)
    zeros = np.zeros_like(test.velocities)
    silent = (np.zeros_like(test.hits), zeros, zeros)
    pats = most_common_patterns(train, len(test.styles))[test.style]
    common = (pats, pats * means, np.zeros_like(test.offsets))
    quantized = (test.hits, test.hits * means, np.zeros_like(test.offsets))
    # random humanizer: each true hit gets a (velocity, offset) pair drawn from its class's training hits
    rng = np.random.default_rng(seed)
    rv, ro = np.zeros_like(test.velocities), np.zeros_like(test.offsets)
    for c in range(test.hits.shape[-1]):
        src = train.hits[..., c].astype(bool)
        dst = test.hits[..., c].astype(bool)
        if src.any() and dst.any():
            pick = rng.integers(0, int(src.sum()), int(dst.sum()))
            rv[..., c][dst] = train.velocities[..., c][src][pick]
            ro[..., c][dst] = train.offsets[..., c][src][pick]
    random_h = (test.hits, rv, ro)
    out = {"all_silent": metrics(silent, true, test.bpm), "most_common_pattern": metrics(common, true, test.bpm),
           "humanize_quantized_mean_velocity": metrics(quantized, true, test.bpm),
           "humanize_random": metrics(random_h, true, test.bpm)}
    out["humanize_quantized_mean_velocity"]["distances"] = distribution_distances(quantized, true, test.bpm)
    out["humanize_random"]["distances"] = distribution_distances(random_h, true, test.bpm)
    return out


# ---- the model -----------------------------------------------------------------------------


@torch.no_grad()
def run_mode(model: DrumVAE, test: data.Windows, which: int, chunk: int = 512, hits_given: bool = False
             ) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], float, float]:
    """Decode every test window in one mode from z = mu: (free-running (hits, vel, off), teacher-forced
    step accuracy, mean KL bits). ``hits_given``: the decoder plays the true hits (humanize)."""
    x_all = torch.from_numpy(test.features())
    n = model.cfg.num_classes
    hits, vels, offs, tf_correct, kl = [], [], [], 0.0, 0.0
    for i in range(0, len(x_all), chunk):
        x = x_all[i:i + chunk]
        w = torch.full((len(x),), which, dtype=torch.long)
        style = torch.from_numpy(test.style[i:i + chunk].astype(np.int64))
        fill = torch.from_numpy(test.fill[i:i + chunk].astype(np.int64))
        mu, logvar = model.encode(x, w)
        kl += float(kl_bits(mu, logvar).sum())
        tf_logits, _, _ = model.decoder(mu, style, fill, x)
        tf_correct += step_accuracy(tf_logits > 0, x[..., :n]) * len(x)
        noise = forced_hits(x[..., :n]) if hits_given else torch.full((len(x), x.shape[1], n), 0.5)
        lg, v, o = model.decoder.sample(mu, style, fill, noise, 1.0)
        hits.append((noise < torch.sigmoid(lg)).numpy().astype(np.uint8))
        vels.append(v.numpy())
        offs.append(o.numpy())
    return (np.concatenate(hits), np.concatenate(vels), np.concatenate(offs)), tf_correct / len(x_all), kl / len(x_all)


def load_model(model_path: str | Path | None) -> tuple[DrumVAE, dict]:
    """A checkpoint (``ckpt.pt``/``best.pt``) or an exported folder/artefact; default: the shipped one."""
    from drumvae import export

    if model_path is None or Path(model_path).is_dir():
        model, meta = export.load_exported(model_path)
        d = Path(model_path or export.WEIGHTS_DIR)
        return model, {"source": str(d / export.MODEL_FILE), "step": meta.get("step"), "styles": meta["styles"],
                       "spread": str(d / spread.SPREAD_FILE) if (d / spread.SPREAD_FILE).is_file() else None}
    if Path(model_path).name == export.MODEL_FILE:
        return load_model(Path(model_path).parent)
    from modelkit.checkpoints import load_checkpoint
    from drumvae.train import model_from_checkpoint

    ckpt = load_checkpoint(model_path)
    return model_from_checkpoint(ckpt), {"source": str(model_path), "step": ckpt["step"],
                                         "styles": ckpt["meta"]["styles"], "spread": None}


MODES = ((RECONSTRUCT, "reconstruction", False), (HUMANIZE, "humanize", True), (HUMANIZE, "humanize, hits decoded", False),
         (TAP, "tap2drum", False), (TAP_FIXED, "tap2drum-fixed-velocity", False))


def fit_spreads(model: DrumVAE, train: data.Windows) -> dict[str, spread.Spread]:
    """Per input transform, the spread table of the model's decodes of the training windows (humanize
    with the true hits given, as the processor plays it; the others free-running)."""
    real = (train.hits, train.velocities, train.offsets)
    return {TRANSFORM_NAMES[which]: spread.fit(run_mode(model, train, which, hits_given=which == HUMANIZE)[0], real)
            for which in (RECONSTRUCT, HUMANIZE, TAP, TAP_FIXED)}


def run(model_path: str | Path | None = None, split: str = "test", limit: int | None = None,
        data_dir: str | Path | None = None, cache_dir: str | Path | None = None,
        windows: data.Windows | None = None, plots: str | Path | None = None) -> dict:
    """Every metric of the model (all four modes) and the baselines, as plain data."""
    model, info = load_model(model_path)
    w = windows if windows is not None else data.prepare(
        Path(data_dir) / data.DATASET if data_dir else None, Path(cache_dir) if cache_dir else None)
    if list(w.styles) != list(info["styles"]):
        raise ValueError(f"the model's styles {info['styles']} differ from the data's {w.styles}")
    train, test = w.subset("train"), w.subset(split)
    if limit:
        test = test.take(np.linspace(0, len(test) - 1, min(limit, len(test))).round().astype(int))
    true = (test.hits, test.velocities, test.offsets)
    result: dict = {"model": info, "split": split, "windows": len(test), "steps": int(test.hits.shape[1]) * len(test),
                    "classes": list(data.CLASS_NAMES), "modes": {}, "targets": TARGETS}
    if info["spread"]:
        spreads = spread.read(info["spread"])
    else:
        log.info("measuring the spread of the model's decodes on the training split")
        spreads = fit_spreads(model, train)
    result["spread"] = info["spread"] or "fitted on the training split"
    outputs = {}
    for which, name, given in MODES:
        pred, tf, kl = run_mode(model, test, which, hits_given=given)
        m = metrics(pred, true, test.bpm)
        m["step_acc_tf"] = tf
        m["kl_bits"] = kl
        played = (pred[0], *spreads[TRANSFORM_NAMES[which]].apply(*pred))
        m["played"] = {k: v for k, v in metrics(played, true, test.bpm).items() if "mae" in k}
        if which == HUMANIZE:
            m["distances"] = distribution_distances(pred, true, test.bpm)
            m["played"]["distances"] = distribution_distances(played, true, test.bpm)
        result["modes"][name] = m
        outputs[name] = played if given else pred
    result["baselines"] = baselines(train, test)
    result["silent_step_fraction"] = float((~test.hits.astype(bool)).all(-1).mean())
    if plots:
        Path(plots).mkdir(parents=True, exist_ok=True)
        plot_f1(result, Path(plots) / "drumvae_f1.png")
        plot_distributions(outputs["humanize"], true, test.bpm, Path(plots) / "drumvae_humanize.png")
    return result


# ---- report and plots ----------------------------------------------------------------------


def to_json(r: dict) -> str:
    """Strict JSON: NaN (undefined, e.g. an F1 with no hits) becomes null."""
    def clean(v):
        if isinstance(v, float) and v != v:
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(r), indent=1, allow_nan=False)


def format_report(r: dict) -> str:
    cls = [c.replace("closed hi-hat", "hh").replace("open hi-hat", "ohh").replace(" tom", "T") for c in r["classes"]]
    lines = [f"Drum VAE on GMD {r['split']}: {r['windows']} windows ({r['steps']} steps); model {r['model']['source']}"
             f" (step {r['model'].get('step')})", "",
             f"{'':44} {'acc free':>8} {'acc TF':>7} {'F1':>6} {'vel MAE':>8} {'ms MAE':>7} {'KL bits':>8}"]

    def row(name: str, m: dict) -> str:
        tf = m.get("step_acc_tf")
        kl = m.get("kl_bits")
        return (f"{name:44} {m['step_acc_free']:8.3f} {'' if tf is None else f'{tf:.3f}':>7} {m['f1_micro']:6.3f} "
                f"{m['velocity_mae_midi']:8.2f} {m['timing_mae_ms']:7.2f} {'' if kl is None else f'{kl:.1f}':>8}")

    for name, m in r["modes"].items():
        lines.append(row(f"model: {name}", m))
    for name, m in r["baselines"].items():
        lines.append(row(f"baseline: {name}", m))
    lines += ["", "per-class F1 (free-running): " + " ".join(f"{c:>6}" for c in cls)]
    for name, m in [*r["modes"].items(), ("most_common_pattern", r["baselines"]["most_common_pattern"])]:
        lines.append(f"  {name:26} " + " ".join(f"{v:6.3f}" for v in m["f1_per_class"]))
    lines += ["", f"{'as played live, with a drummer' + chr(39) + 's spread (drumvae.spread)':46} {'vel MAE':>8} {'ms MAE':>7}"]
    for name, m in r["modes"].items():
        if "played" in m:
            lines.append(f"  {name:44} {m['played']['velocity_mae_midi']:8.2f} {m['played']['timing_mae_ms']:7.2f}")
    lines += ["", "humanize, Wasserstein-1 to the real distribution (mean over classes; by class x 16th position):"]
    hum = r["modes"]["humanize"]
    for name, d in [("model, as played", hum.get("played", {}).get("distances")),
                    ("model, as decoded", hum["distances"]),
                    ("random humanizer", r["baselines"]["humanize_random"]["distances"]),
                    ("quantized, mean velocity", r["baselines"]["humanize_quantized_mean_velocity"]["distances"])]:
        if d is None:
            continue
        lines.append(f"  {name:26} velocity {d['velocity_mean']:6.2f} ({d['velocity_by_position']:6.2f})  "
                     f"offset ms {d['offset_ms_mean']:6.2f} ({d['offset_ms_by_position']:6.2f})")
    acc = r["modes"]["reconstruction"]["step_acc_free"]
    target = r["targets"]["step_acc_free_reconstruction"]
    lines += ["", f"target: reconstruction step accuracy, free-running >= {target}: {acc:.3f} "
                  f"({'met' if acc >= target else 'not met'})"]
    return "\n".join(lines)


def plot_f1(r: dict, path: Path) -> bool:
    from modelkit.plots import pyplot

    plt = pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(9, 4))
    series = [(f"model: {k}", v["f1_per_class"]) for k, v in r["modes"].items()]
    series.append(("baseline: most common pattern", r["baselines"]["most_common_pattern"]["f1_per_class"]))
    width = 0.8 / len(series)
    x = np.arange(len(r["classes"]))
    for i, (name, vals) in enumerate(series):
        ax.bar(x + i * width, np.nan_to_num(vals), width, label=name)
    ax.set_xticks(x + 0.4 - width / 2, r["classes"], rotation=20)
    ax.set_ylabel("hit F1 (free-running, z = mu)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7)
    ax.set_title(f"Drum VAE, GMD {r['split']} split, per-class hit F1")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def plot_distributions(pred: tuple, true: tuple, bpm: np.ndarray, path: Path) -> bool:
    """Offset (ms) and velocity histograms per class for the 4 busiest classes: real vs humanized."""
    from modelkit.plots import pyplot

    plt = pyplot()
    if plt is None:
        return False
    ms = step_ms(bpm)[:, None, None] / 2.0
    fig, axes = plt.subplots(2, 4, figsize=(12, 5))
    for j, c in enumerate((0, 1, 2, 8)):
        th, ph = true[0][..., c].astype(bool), pred[0][..., c].astype(bool)
        for ax, (tv, pv, label, rng) in zip(axes[:, j], (
                ((true[2] * ms)[..., c][th], (pred[2] * ms)[..., c][ph], "offset ms (+ early)", (-60, 60)),
                (true[1][..., c][th] * 127, pred[1][..., c][ph] * 127, "velocity", (0, 127)))):
            for values, label in ((tv, "real"), (pv, "model (humanize)")):
                if len(values):
                    ax.hist(values, bins=40, range=rng, alpha=0.5, density=True, label=label)
            ax.set_xlabel(label)
        axes[0, j].set_title(data.CLASS_NAMES[c])
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


if __name__ == "__main__":
    import sys

    logging.basicConfig(level=logging.INFO)
    print(to_json(run(sys.argv[1] if len(sys.argv) > 1 else None)))
