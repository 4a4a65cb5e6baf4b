"""The paper's measures of Piano Genie, for the model and the no-button baseline.

On a split (test by default): every non-overlapping 128-note window of every performance, no
augmentation. For the model, the buttons are the encoder's (quantized), as in the paper:

- perplexity: exp of the mean cross-entropy of the decoder over all notes;
- top-1 accuracy: how often the decoder's likeliest key is the played key;
- contour violations: consecutive pairs where delta-pitch * delta-button < 0, over all pairs;
- button-usage perplexity: exp of the entropy of how often each of the 8 buttons is used (8 is
  uniform use; low values mean buttons the musician never needs).

The baseline gets perplexity and accuracy only (it has no buttons). And a player's measure:
melodies written for this file (in no split), pressed with buttons that follow their contour
(the melody's pitch range spread over the 8 buttons) and their rhythm, decoded at the live
temperature: how often the played pitch moves the way the buttons move (up, down; pairs where the
button repeats are not counted), averaged over several seeds.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pianogenie import data
from pianogenie.gold import gold_measure
from pianogenie.model import PianoGenie, PianoGenieConfig, sample

# (name, [(MIDI pitch, beats)], beats per minute). Written here; none is a training piece.
MELODIES = [
    ("ode to joy", [(64, 1), (64, 1), (65, 1), (67, 1), (67, 1), (65, 1), (64, 1), (62, 1),
                    (60, 1), (60, 1), (62, 1), (64, 1), (64, 1.5), (62, .5), (62, 2),
                    (64, 1), (64, 1), (65, 1), (67, 1), (67, 1), (65, 1), (64, 1), (62, 1),
                    (60, 1), (60, 1), (62, 1), (64, 1), (62, 1.5), (60, .5), (60, 2)], 120),
    ("twinkle", [(60, 1), (60, 1), (67, 1), (67, 1), (69, 1), (69, 1), (67, 2),
                 (65, 1), (65, 1), (64, 1), (64, 1), (62, 1), (62, 1), (60, 2),
                 (67, 1), (67, 1), (65, 1), (65, 1), (64, 1), (64, 1), (62, 2)], 110),
    ("scale up and down", [(p, .5) for p in (60, 62, 64, 65, 67, 69, 71, 72, 74, 76, 77, 79)]
     + [(p, .5) for p in (77, 76, 74, 72, 71, 69, 67, 65, 64, 62, 60)], 100),
    ("arpeggios", [(p, .5) for p in (48, 52, 55, 60, 64, 67, 72, 67, 64, 60, 55, 52,
                                     53, 57, 60, 65, 69, 72, 77, 72, 69, 65, 60, 57,
                                     55, 59, 62, 67, 71, 74, 79, 74, 71, 67, 62, 59, 48)], 90),
    ("frere jacques", [(60, 1), (62, 1), (64, 1), (60, 1)] * 2 + [(64, 1), (65, 1), (67, 2)] * 2
     + [(67, .5), (69, .5), (67, .5), (65, .5), (64, 1), (60, 1)] * 2
     + [(60, 1), (55, 1), (60, 2)] * 2, 120),
    ("leaps", [(60, 1), (72, 1), (67, 1), (76, 1), (64, 1), (79, 1), (60, .5), (84, .5),
               (55, 1), (67, 1), (59, 1), (74, 2)], 80),
]


def contour_buttons(pitches: list[int], num_buttons: int = 8) -> list[int]:
    """The melody's pitch range spread over the buttons: lowest note 0, highest 7."""
    lo, hi = min(pitches), max(pitches)
    if hi == lo:
        return [num_buttons // 2] * len(pitches)
    return [round((p - lo) / (hi - lo) * (num_buttons - 1)) for p in pitches]


def melody_dt(notes: list[tuple[int, float]], bpm: float) -> list[int]:
    beats = [b for _, b in notes]
    dt_s = [math.inf] + [b * 60.0 / bpm for b in beats[:-1]]
    return data.quantize_dt(np.array(dt_s)).tolist()


def contour_agreement(buttons: list[int], played: list[int]) -> tuple[int, int]:
    """(pairs where the played pitch moves the way the button moves, pairs where the button moves)."""
    agree = total = 0
    for i in range(1, len(buttons)):
        db, dp = buttons[i] - buttons[i - 1], played[i] - played[i - 1]
        if db:
            total += 1
            agree += (db > 0 and dp > 0) or (db < 0 and dp < 0)
    return agree, total


def player_measure(model: PianoGenie, temperature: float = 0.25, seeds: int = 10, seed: int = 0) -> dict:
    per = {}
    agree_all = total_all = 0
    gen = torch.Generator().manual_seed(seed)
    for name, notes, bpm in MELODIES:
        buttons = contour_buttons([p for p, _ in notes], model.cfg.num_buttons)
        dt = melody_dt(notes, bpm)
        agree = total = 0
        for _ in range(seeds):
            played = sample(model.decoder, buttons, dt, model.cfg.num_buttons, temperature, gen,
                            table=model.button_table())
            a, t = contour_agreement(buttons, played)
            agree, total = agree + a, total + t
        per[name] = agree / max(total, 1)
        agree_all, total_all = agree_all + agree, total_all + total
    return {"contour_agreement": agree_all / max(total_all, 1), "per_melody": per,
            "temperature": temperature, "seeds": seeds}


@torch.no_grad()
def measure(model: PianoGenie, keys: torch.Tensor, dts: torch.Tensor, batch_size: int = 64) -> dict:
    """Perplexity and accuracy (and, with buttons, contour violations and button usage)."""
    model.eval()
    nll = correct = notes = 0.0
    violations = pairs = 0
    counts = torch.zeros(max(model.cfg.num_buttons, 1), dtype=torch.long)
    for i in range(0, len(keys), batch_size):
        k, d = keys[i:i + batch_size], dts[i:i + batch_size]
        logits, _, _ = model(k, d)
        nll += float(F.cross_entropy(logits.reshape(-1, logits.size(-1)), k.reshape(-1), reduction="sum"))
        correct += float((logits.argmax(-1) == k).sum())
        notes += k.numel()
        if not model.cfg.baseline:
            b = model.buttons(k, d)
            violations += int(((torch.diff(k, dim=1) * torch.diff(b, dim=1)) < 0).sum())
            pairs += k.size(0) * (k.size(1) - 1)
            counts += torch.bincount(b.reshape(-1), minlength=model.cfg.num_buttons)
    out = {"perplexity": math.exp(nll / notes), "cross_entropy": nll / notes,
           "accuracy": correct / notes, "notes": int(notes), "windows": len(keys)}
    if not model.cfg.baseline:
        p = counts.double() / counts.sum()
        entropy = float(-(p[p > 0] * p[p > 0].log()).sum())
        out.update(contour_violations=violations / pairs, button_usage_perplexity=math.exp(entropy),
                   button_counts=counts.tolist())
    return out


@torch.no_grad()
def range_report(model: PianoGenie, keys: torch.Tensor, dts: torch.Tensor, batch_size: int = 64) -> dict:
    """Where the encoder's real output e leaves the quantizer's [-1, 1] (the range penalty's
    terms): how often, how much of the penalty the far-out notes carry, and which pitches."""
    from pianogenie.model import range_penalty

    model.eval()
    es = torch.cat([model.encoder(keys[i:i + batch_size], dts[i:i + batch_size])
                    for i in range(0, len(keys), batch_size)])
    excess = torch.clamp(es.abs() - 1.0, min=0.0) ** 2
    far = es.abs() > 3.0
    pitches = keys + data.LOWEST_PITCH
    return {"range_penalty": float(range_penalty(es)), "outside": float((es.abs() > 1).float().mean()),
            "far_outside": float(far.float().mean()),
            "far_share_of_penalty": float(excess[far].sum() / excess.sum()) if excess.sum() > 0 else 0.0,
            "far_low": int((es < -3).sum()), "far_high": int((es > 3).sum()),
            "far_low_median_pitch": float(pitches[es < -3].float().median()) if (es < -3).any() else None,
            "far_high_median_pitch": float(pitches[es > 3].float().median()) if (es > 3).any() else None,
            "median_pitch": float(pitches.float().median())}


SHIPPED = "shipped"
SHIPPED_VQ = "shipped-vq"  # the VQ-VAE option's artefacts


def load(path: str | Path, weights_dir: str | Path | None = None) -> tuple[PianoGenie, dict]:
    """A checkpoint, or ``"shipped"`` / ``"shipped-vq"``: the eager model rebuilt from the shipped
    artefacts (in ``weights_dir``, the package's by default)."""
    if str(path) in (SHIPPED, SHIPPED_VQ):
        return load_shipped(weights_dir, vq=str(path) == SHIPPED_VQ)
    from pianogenie.train import load_checkpoint, model_from_checkpoint

    ckpt = load_checkpoint(path)
    return model_from_checkpoint(ckpt), ckpt


def load_shipped(weights_dir: str | Path | None = None, vq: bool = False) -> tuple[PianoGenie, dict]:
    """The model the processor plays, rebuilt from ``pianogenie/weights`` (decoder step and encoder
    artefacts, strictly), with what its metrics file says of it (step, wall time). ``vq``: the
    VQ-VAE option's artefacts."""
    import json

    from daemon import runtime
    from pianogenie.export import WEIGHTS_DIR, artefact_files, metrics_file

    d = Path(weights_dir) if weights_dir else WEIGHTS_DIR
    dec_file, enc_file = artefact_files(vq)
    dec, enc = runtime.load_torchscript(d / dec_file), runtime.load_torchscript(d / enc_file)
    dec_state = dict(dec.state_dict())
    table = dec_state.pop("table", None)  # the VQ decoder's copy of the codebook (the encoder has it too)
    cfg = PianoGenieConfig(num_keys=int(dec.num_keys), num_buttons=int(dec.num_buttons),
                           num_dt=int(dec.num_dt), rnn_dim=int(dec.hidden), rnn_layers=int(dec.num_layers),
                           bottleneck="vq" if vq else "iqae",
                           code_dim=int(table.shape[1]) if table is not None else 64)
    state = {(k if k.startswith("decoder.") else f"decoder.{k}"): v for k, v in dec_state.items()}
    state.update(enc.state_dict())
    model = PianoGenie(cfg)
    model.load_state_dict(state)  # strict: every weight comes from the artefacts
    if table is not None and not torch.allclose(table, model.quantizer.codes(), atol=1e-6):
        raise ValueError(f"{d}: the VQ decoder's and encoder's codebooks differ (exported apart?)")
    meta = {}
    metrics = d / metrics_file(vq)
    if metrics.is_file():
        meta = json.loads(metrics.read_text()).get("vq" if vq else "model", {})
    return model.eval(), {"step": meta.get("step", 0), "wall_time_s": meta.get("wall_time_s")}


def run(model_path: str | Path, baseline_path: str | Path | None, split: str = "test", seed: int = 0,
        data_dir: str | Path | None = None, cache_dir: str | Path | None = None,
        perf: data.Performances | None = None, threads: int = 2, player_seeds: int = 10,
        weights_dir: str | Path | None = None, vq_path: str | Path | None = None,
        without_time: dict[str, Path] | None = None) -> dict:
    """Every measure of the model at ``model_path`` (a checkpoint, or "shipped"), beside the baseline
    and, with ``vq_path``, the VQ-VAE option (a checkpoint, or "shipped-vq"); ``without_time``: the
    checkpoints of runs without the time input, by row name (iqae, vq, baseline)."""
    torch.set_num_threads(threads)
    if perf is None:
        perf = data.prepare(Path(data_dir) / data.DATASET if data_dir else None, cache_dir)
    keys, dts = data.eval_windows(perf.subset(split))
    keys_t, dts_t = torch.from_numpy(keys), torch.from_numpy(dts)
    result = {"split": split, "split_rule": perf.meta.get("split_rule", "")}
    result["model"] = model_row(model_path, weights_dir, perf, keys_t, dts_t, seed, player_seeds)
    if vq_path is not None:
        result["vq"] = model_row(vq_path, weights_dir, perf, keys_t, dts_t, seed, player_seeds)
    if baseline_path is not None and Path(baseline_path).is_file():
        base, bckpt = load(baseline_path)
        result["baseline"] = {"checkpoint": str(baseline_path), "step": bckpt["step"],
                              "wall_time_s": bckpt.get("wall_time_s"), **measure(base, keys_t, dts_t)}
        result["perplexity_ratio"] = result["model"]["perplexity"] / result["baseline"]["perplexity"]
    for name, path in (without_time or {}).items():
        model, ckpt = load(path)
        if model.cfg.time_input:
            raise ValueError(f"{path}: a model with the time input, given as one without")
        if name == "baseline":
            row = {"checkpoint": str(path), "step": ckpt["step"], "wall_time_s": ckpt.get("wall_time_s"),
                   **measure(model, keys_t, dts_t)}
        else:
            row = model_row(path, weights_dir, perf, keys_t, dts_t, seed, player_seeds)
        result.setdefault("without_time", {})[name] = row
    return result


def without_time_runs(root: str | Path) -> dict[str, Path]:
    """The kept runs without the time input under ``root`` (``<name>-notime/``: best.pt, else ckpt.pt)."""
    from modelkit.checkpoints import best_or_last

    found = {name: best_or_last(Path(root) / folder)
             for name, folder in (("iqae", "model-notime"), ("vq", "vq-notime"), ("baseline", "baseline-notime"))}
    return {name: path for name, path in found.items() if path is not None}


def model_row(path: str | Path, weights_dir: str | Path | None, perf: data.Performances, keys: torch.Tensor,
              dts: torch.Tensor, seed: int, player_seeds: int) -> dict:
    """The measures of one model with buttons (IQAE or VQ-VAE), loaded from ``path``."""
    model, ckpt = load(path, weights_dir)
    if model.cfg.vq and str(path) != SHIPPED_VQ:  # a checkpoint's codes, numbered as shipping does
        number_codes(model, perf)
    row = {"checkpoint": str(path), "step": ckpt["step"], "wall_time_s": ckpt.get("wall_time_s"),
           **measure(model, keys, dts), "player": player_measure(model, seeds=player_seeds, seed=seed),
           "gold": gold_measure(model), "bottleneck": model.cfg.bottleneck}
    if not model.cfg.vq:  # the range penalty is the IQAE's
        row["range"] = range_report(model, keys, dts)
    return row


def number_codes(model: PianoGenie, perf: data.Performances) -> list[int]:
    """Number a VQ-VAE's codes by the mean pitch they play on the training split (button 0 lowest)."""
    from pianogenie.model import sort_codes_by_pitch

    keys, dts = data.eval_windows(perf.subset("train"))
    return sort_codes_by_pitch(model, torch.from_numpy(keys), torch.from_numpy(dts))


def _row_lines(m: dict, name: str) -> list[str]:
    lines = [f"  {name:<8} (step {m['step']}): perplexity {m['perplexity']:.3f}, accuracy {m['accuracy']:.3f}, "
             f"contour violations {m['contour_violations']:.2%}, button-usage perplexity "
             f"{m['button_usage_perplexity']:.2f} of 8"]
    p = m["player"]
    lines.append(f"    player: contour-following buttons on {len(p['per_melody'])} written melodies at "
                 f"temperature {p['temperature']}: pitch moves with the button {p['contour_agreement']:.1%} "
                 f"of the time (" + ", ".join(f"{k} {v:.0%}" for k, v in p["per_melody"].items()) + ")")
    if "gold" in m:
        g = m["gold"]
        lines.append(f"    gold: the encoder's buttons against a person's for {len(g['per_tune'])} tunes, "
                     f"transposed -6..+5: mean squared difference {g['gold_l2']:.2f} (paper 1.70, 1.61 with "
                     f"the time input; target <= 2), mean button {g['encoder_mean_button']:.2f} against the "
                     f"person's {g['person_mean_button']:.2f}" + (f"; in shape alone (each tune's offset taken "
                                                                  f"away) {g['gold_l2_shape']:.2f}, "
                                                                  f"{g['register_slope']:.2f} buttons higher per "
                                                                  f"semitone a tune is moved up"
                                                                  if "gold_l2_shape" in g else ""))
        if "gold_l2_taught" in g and m.get("bottleneck") != "vq":
            lines.append(f"    gold as genie buttons teaches (each tune's span centred on the buttons): "
                         f"{g['gold_l2_taught']:.2f}")
        if "replay" in g:
            r = g["replay"]
            lines.append(f"    replay: the decoder plays the tune's step between two notes {r['encoder']:.0%} of "
                         f"the time from the encoder's buttons, {r['taught']:.0%} from the taught ones, "
                         f"{r['person']:.0%} from the person's")
    return lines


def format_report(r: dict) -> str:
    m = r["model"]
    lines = [f"Piano Genie on the {r['split']} split: {m['windows']} windows of 128 notes, {m['notes']} notes"]
    lines += _row_lines(m, "VQ-VAE" if m.get("bottleneck") == "vq" else "IQAE")
    if "vq" in r:
        lines += _row_lines(r["vq"], "VQ-VAE")
    if "baseline" in r:
        b = r["baseline"]
        lines.append(f"  baseline (step {b['step']}): perplexity {b['perplexity']:.3f}, accuracy "
                     f"{b['accuracy']:.3f} (no buttons)")
        lines.append(f"  IQAE / baseline perplexity: {r['perplexity_ratio']:.3f}")
    if r.get("without_time"):
        lines.append("  without the time input (the paper's rows without +ΔT):")
        for name, m in r["without_time"].items():
            if name == "baseline":
                lines.append(f"  baseline (step {m['step']}): perplexity {m['perplexity']:.3f}, accuracy "
                             f"{m['accuracy']:.3f} (no buttons, no time)")
            else:
                lines += _row_lines(m, {"iqae": "IQAE", "vq": "VQ-VAE"}[name])
    return "\n".join(lines)
