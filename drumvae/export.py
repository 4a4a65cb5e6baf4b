"""Export the Drum VAE for the daemon, time its decode, and ship weights, metrics and model card.

One TorchScript artefact, ``drumvae.pt`` (through ``daemon.runtime.save_model``: scripted, never
traced), with the trained layers and three step functions; sampling randomness is an input:

- ``encode(pattern, transform, eps) -> z``: pattern [B, 32, 27] = [hits, velocities, offsets];
  transform [B] long (0 reconstruction, 1 humanize, 2 tap2drum, 3 tap2drum fixed velocity; the
  input transform is applied inside, so pass the plain pattern, or taps on any lane); eps [B, z]:
  z = mu + sigma * eps (eps = 0: z = mu).
- ``decode(z, style, fill, noise, temperature) -> (hit logits, velocity, offset)``, each
  [B, S, 9], free-running over S = noise.shape[1] steps: hit = noise < sigmoid(logit / T);
  noise 0.5 everywhere is the threshold-0.5 decode; noise < 0 forces a hit and noise >= 1 forbids
  one (humanize: -1 on the input's hits, 2 elsewhere, plays exactly those hits with the model's
  velocity and timing). ``forward`` is ``decode``.
- ``apply_transform(pattern, transform)``: what the encoder saw.

Beside it, ``drumvae.onnx`` (``forward`` = ``decode``) and ``drumvae.encode.onnx``, the same
functions for the torch-free runtime (:func:`export_onnx`), checked against the TorchScript.

``drumvae.json`` beside it holds the model arguments, the style names, the class names, the GM
output pitches and the transform names. The eager model is rebuilt from the two files for
evaluation (the artefact's state dict has the eager model's keys).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from daemon import runtime
from drumvae import data
from drumvae.model import TRANSFORM_NAMES, Decoder, DrumVAE, DrumVAEConfig, Encoder, transform
from modelkit.configs import from_dict

log = logging.getLogger("genie.drumvae.export")
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MODEL_FILE = "drumvae.pt"
META_FILE = "drumvae.json"
DECODE_TARGET_MS = 20.0


class DrumVAEStep(nn.Module):
    """The trained encoder and decoder as step functions (the same layers, no state kept)."""

    def __init__(self, model: DrumVAE) -> None:
        super().__init__()
        self.encoder: Encoder = model.encoder
        self.decoder: Decoder = model.decoder
        self.z_dim: int = model.cfg.z_dim
        self.steps: int = model.cfg.steps
        self.num_classes: int = model.cfg.num_classes

    @torch.jit.export
    def apply_transform(self, pattern: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
        return transform(pattern, which)

    @torch.jit.export
    def encode(self, pattern: torch.Tensor, which: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        mu, logvar = self.encoder(transform(pattern, which), which)
        return mu + torch.exp(0.5 * logvar) * eps

    @torch.jit.export
    def decode(self, z: torch.Tensor, style: torch.Tensor, fill: torch.Tensor, noise: torch.Tensor,
               temperature: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.decoder.sample(z, style, fill, noise, temperature)

    def forward(self, z: torch.Tensor, style: torch.Tensor, fill: torch.Tensor, noise: torch.Tensor,
                temperature: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.decode(z, style, fill, noise, temperature)


def export_model(model: DrumVAE, styles: list[str], out_dir: str | Path, extra: dict | None = None) -> list[Path]:
    """Write ``drumvae.pt`` and ``drumvae.json`` for an eager model into ``out_dir``."""
    from dataclasses import asdict

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    for p in model.parameters():  # an artefact for inference: no autograd bookkeeping when it runs
        p.requires_grad_(False)
    runtime.save_model(DrumVAEStep(model).eval(), out / MODEL_FILE)
    meta = {"model_args": asdict(model.cfg), "styles": list(styles), "classes": list(data.CLASS_NAMES),
            "gm_output_pitches": list(data.GM_OUTPUT_PITCHES), "transforms": list(TRANSFORM_NAMES),
            "steps_per_bar": data.STEPS_PER_BAR, **(extra or {})}
    (out / META_FILE).write_text(json.dumps(meta, indent=1))
    return [out / MODEL_FILE, out / META_FILE]


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path | None = None,
                      windows: data.Windows | None = None) -> list[Path]:
    from modelkit.checkpoints import load_checkpoint
    from drumvae.train import model_from_checkpoint

    ckpt = load_checkpoint(checkpoint)
    extra = {"step": ckpt["step"], "wall_time_s": ckpt.get("wall_time_s"), "checkpoint": Path(checkpoint).name}
    out = Path(out_dir or WEIGHTS_DIR)
    model = model_from_checkpoint(ckpt)
    paths = export_model(model, ckpt["meta"]["styles"], out, extra)
    try:
        w = windows if windows is not None else data.prepare()
    except FileNotFoundError as exc:
        log.warning("no groove bank or spread table written (the processor then draws new grooves from the "
                    "prior and plays velocities and timing as decoded): %s", exc)
        return paths
    from drumvae import evaluate, grooves, spread

    paths.append(grooves.write_bank(out, w))  # the live processor's groove bank: training beats' z, by style
    paths.append(spread.write(out / spread.SPREAD_FILE, evaluate.fit_spreads(model, w.subset("train")),
                              "per input transform: the decoded mean and the scale to the real spread, per "
                              "[class][16th position in the beat], fitted on the training split (drumvae.spread)"))
    return paths


def load_exported(weights_dir: str | Path | None = None) -> tuple[DrumVAE, dict]:
    """The eager model rebuilt from a shipped artefact and its JSON (strict load)."""
    d = Path(weights_dir) if weights_dir else WEIGHTS_DIR
    meta = json.loads((d / META_FILE).read_text())
    scripted = runtime.load_torchscript(d / MODEL_FILE)
    model = DrumVAE(from_dict(DrumVAEConfig, meta["model_args"], "model_args"))
    model.load_state_dict({k: v.clone() for k, v in scripted.state_dict().items()})
    return model.eval(), meta


def bench_decode(weights: str | Path | None = None, runs: int = 300) -> dict:
    """Time ``decode`` of one 2-bar pattern (batch 1, 32 steps) on one thread, after a warm-up, on
    each runtime installed (TorchScript and ONNX), through ``daemon.runtime`` as the processor calls it."""
    from modelkit.timing import percentiles

    torch.set_num_threads(1)
    out: dict = {"target_ms": DECODE_TARGET_MS, "threads": 1, "batch": 1, "runtimes": {}}
    for fmt, path in runtime.formats_of(weights or WEIGHTS_DIR / MODEL_FILE).items():
        m = runtime.load_model(path)
        decode = m.function()
        rng = np.random.default_rng(0)
        z = rng.standard_normal((1, int(m.attr("z_dim")))).astype(np.float32)
        style, fill = np.zeros(1, np.int64), np.zeros(1, np.int64)
        noise = rng.random((1, int(m.attr("steps")), int(m.attr("num_classes")))).astype(np.float32)
        runtime.warm_up(lambda: decode(z, style, fill, noise, 1.0), 20)
        ns = []
        for _ in range(runs):
            t0 = time.perf_counter_ns()
            decode(z, style, fill, noise, 1.0)
            ns.append(time.perf_counter_ns() - t0)
        out["runtimes"][fmt] = {"weights": str(path), **percentiles(ns)}
        out["steps"] = int(m.attr("steps"))
    out["torch"] = torch.__version__
    return out


def parity_run(model: runtime.Model, grooves: int = 40) -> list[np.ndarray]:
    """``grooves`` patterns (hits, velocities, offsets from a fixed seed), each encoded under every
    transform and decoded free-running (random noise, a style, beat and fill, temperatures
    0.5-1.5) and in humanize's forced-hit mode: the codes, hit probabilities, velocities, offsets."""
    encode, decode = model.function("encode"), model.function("forward")
    steps, n, z_dim = int(model.attr("steps")), int(model.attr("num_classes")), int(model.attr("z_dim"))
    rng = np.random.default_rng(0)
    out = []
    for i in range(grooves):
        hits = (rng.random((1, steps, n)) < 0.25).astype(np.float32)
        pattern = np.concatenate([hits, hits * rng.random((1, steps, n)), hits * rng.uniform(-1, 1, (1, steps, n))],
                                 -1).astype(np.float32)
        for which in range(len(TRANSFORM_NAMES)):
            z = encode(pattern, np.array([which]), rng.standard_normal((1, z_dim)).astype(np.float32))[0]
            out.append(z)
        temperature = np.float32(0.5 + i / grooves)
        noise = rng.random((1, steps, n)).astype(np.float32)
        if i % 4 == 3:  # humanize plays exactly the heard hits
            noise = np.where(hits > 0, -1.0, 2.0).astype(np.float32)
        logits, vel, off = decode(z, np.array([(i // 2) % 2]), np.array([i % 2]), noise, temperature)
        out += [1.0 / (1.0 + np.exp(-logits.astype(np.float64) / temperature)), vel, off]
    return out


def export_onnx(weights_dir: str | Path | None = None) -> list[tuple[Path, float]]:
    """Write ``drumvae.onnx`` (decode) and ``drumvae.encode.onnx`` beside ``drumvae.pt`` in
    ``weights_dir``: [(file, largest difference from TorchScript)]."""
    from modelkit.onnx_export import Method, OnnxFunction, export_checked

    d = Path(weights_dir) if weights_dir else WEIGHTS_DIR
    model, _ = load_exported(d)
    step = DrumVAEStep(model).eval()
    s, n, z = step.steps, step.num_classes, step.z_dim
    one = torch.zeros(1, dtype=torch.long)
    decode = OnnxFunction("forward", step, (torch.zeros(1, z), one, one, torch.full((1, s, n), 0.5), torch.tensor(1.0)),
                          ("z", "style", "fill", "noise", "temperature"), ("hit_logits", "velocity", "offset"))
    encode = OnnxFunction("encode", Method(step, "encode"), (torch.zeros(1, s, 3 * n), one, torch.zeros(1, z)),
                          ("pattern", "which", "eps"), ("z",))
    attrs = {"z_dim": z, "steps": s, "num_classes": n}
    files, diff = export_checked(d / MODEL_FILE, [decode, encode], attrs, parity_run)
    return [(f, diff) for f in files]


if __name__ == "__main__":
    from drumvae.cli import export_cmd

    export_cmd()


# ---- shipping: weights, metrics, loss curve and model card -----------------------------------

LICENCE = ("CC BY 4.0 (the weights, trained on the Groove MIDI Dataset, CC BY 4.0); the code is MIT. "
           "Attribution: \"Groove MIDI Dataset, Gillick, Roberts, Engel, Eck & Bamman (Google Magenta), "
           "CC BY 4.0, https://magenta.tensorflow.org/datasets/groove\"")


def ship(run_dir: str | Path, out_dir: str | Path | None = None, which: str = "best.pt",
         windows: data.Windows | None = None, limit: int | None = None, note: str = "") -> dict:
    """Export ``run_dir/which``, evaluate the artefact on the test split, time its decode, and write
    the metrics, the loss curve, the plots and the model card into ``out_dir`` (default: shipped)."""
    from modelkit.checkpoints import load_checkpoint
    from modelkit.plots import plot_history
    from drumvae import evaluate
    from drumvae.model import num_params
    from drumvae.train import model_from_checkpoint

    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir else WEIGHTS_DIR
    ckpt = load_checkpoint(run_dir / which)
    export_checkpoint(run_dir / which, out, windows)  # the artefact and the groove bank made with it
    result = evaluate.run(out, windows=windows, limit=limit, plots=out)
    plot_example(load_exported(out)[0], windows if windows is not None else data.prepare(), out / "drumvae_example.png")
    latest = load_checkpoint(run_dir / "ckpt.pt")
    hist = latest["history"]
    plot_history(hist, out / "drumvae_loss.png", f"Drum VAE: {latest['step']:,} steps",
                 series=("loss", "hits_bce"), ylabel="loss per window (nats)")
    train_rows = [h for h in hist if "ms_per_step" in h]
    result["run"] = {
        "checkpoint": which, "note": note, "shipped_step": ckpt["step"], "shipped_wall_time_s": ckpt.get("wall_time_s"),
        "latest_step": latest["step"], "latest_wall_time_s": latest["wall_time_s"],
        "ms_per_step_median": float(np.median([h["ms_per_step"] for h in train_rows])) if train_rows else None,
        "params": num_params(model_from_checkpoint(ckpt)), "config": latest["config"],
        "model_args": latest["model_args"], "meta": latest["meta"], "torch": latest.get("torch", ""),
        "val": [{k: v for k, v in h.items()} for h in hist if "val_loss" in h],
        "best_val": ckpt.get("val", {})}
    result["run"]["stages"] = earlier_stages(latest["config"])
    result["onnx"] = {str(f.name): diff for f, diff in export_onnx(out)}  # beside it, checked
    result["decode_bench"] = bench_decode(out / MODEL_FILE)
    (out / "drumvae_metrics.json").write_text(evaluate.to_json(result))
    (out / "drumvae.md").write_text(model_card(result))
    return result


def _bench_line(bench: dict) -> str:
    runs = bench.get("runtimes") or {"torchscript": bench}  # cards written before the ONNX runtime
    return "; ".join(f"{fmt} median {b['p50']:.2f} ms, p99 {b['p99']:.2f} ms ({b['n']} runs)"
                     for fmt, b in runs.items())


def plot_example(model: DrumVAE, w: data.Windows, path: Path) -> bool:
    """One test window as the model hears and plays it: real; reconstruction; humanize; tap2drum."""
    from drumvae.model import HUMANIZE, RECONSTRUCT, TAP, forced_hits
    from drumvae.render import render_png

    test = w.subset("test")
    busy = np.argsort(test.hits.sum((1, 2)), kind="stable")
    i = int(busy[len(busy) * 3 // 4])
    x = torch.from_numpy(test.features()[i:i + 1])
    style, fill = torch.from_numpy(test.style[i:i + 1].astype(np.int64)), torch.from_numpy(test.fill[i:i + 1].astype(np.int64))
    name = f"{test.meta['files'][int(test.file_id[i])].split('/')[-1]}, {test.bpm[i]:.0f} BPM"
    panels = [(f"real: {name}", test.hits[i], test.velocities[i], test.offsets[i])]
    for which, label in ((RECONSTRUCT, "reconstruction"), (HUMANIZE, "humanize (its quantized hits, played as given)"),
                         (TAP, "tap2drum (from the taps below)")):
        noise = forced_hits(x[..., :9]) if which == HUMANIZE else torch.full((1, x.shape[1], 9), 0.5)
        lg, v, o = model.reconstruct(x, torch.tensor([which]), style, fill, noise=noise)
        panels.append((f"model, {label}", (noise[0] < torch.sigmoid(lg[0])).numpy(), v[0].numpy(), o[0].numpy()))
    taps = transform(x, torch.tensor([TAP]))[0].numpy()
    panels.append(("taps (input of tap2drum)", taps[:, :9], taps[:, 9:18], taps[:, 18:]))
    return render_png(panels, path)


def _why(which: str) -> str:
    return {"best.pt": "the checkpoint with the lowest validation loss",
            "ckpt.pt": "the run's last checkpoint"}.get(which, "a checkpoint of the run")


def _f(v: float | None, fmt: str = ".3f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, fmt)


ONNX_SEQUENCE = ("40 grooves (hits, velocities, offsets from a fixed seed), each encoded under every "
                 "transform and decoded free-running and in humanize's forced-hit mode, temperatures 0.5-1.5")


def _training_aids(cfg: dict) -> str:
    """The card's lines on augmentation and scheduled sampling (absent from runs made before them)."""
    aug, ss = cfg.get("augment") or {}, cfg["model"].get("sched_sampling", 0.0)
    lines = []
    if aug.get("bar_mix_p") or aug.get("hit_drop_p"):
        lines.append(f"- Augmentation (input and target alike): {aug['bar_mix_p']:.0%} of the windows take their "
                     f"second bar from another training window of the same style; {aug['hit_drop_p']:.0%} lose "
                     f"{aug['hit_drop_rate']:.0%} of their hits. The model before, trained on the 16.9k windows "
                     "alone, had learned them (training windows reconstructed at 0.94 free-running) more than "
                     "it had learned to copy a groove (unseen ones at 0.74).\n")
    if aug.get("lane_mix_p"):
        lines.append(f"- Lane mixing: {aug['lane_mix_p']:.0%} of the windows take their cymbals (hi-hats, crash, "
                     "ride) or their toms from another training window of the same style, keeping their own kick "
                     "and snare: new combinations of real parts (with bar mixing alone, training windows "
                     "reconstructed at 0.989 free-running and unseen ones at 0.898).\n")
    if ss:
        lines.append(f"- Scheduled sampling, parallel (Duckworth et al. 2019): a first teacher-forced pass "
                     f"without gradients predicts every step, and {ss:.0%} of the steps then see the model's own "
                     "prediction of the step before instead of the true one, so the decoder learns to go on "
                     "from its own mistakes, as it must when it plays free-running.\n")
    return "".join(lines)


def earlier_stages(config: dict) -> list[dict]:
    """The runs a run started from (``init_from``, followed back while the checkpoints are here),
    first run first: checkpoint, steps, wall time and config of each."""
    from modelkit.checkpoints import load_checkpoint

    stages: list[dict] = []
    init = config.get("init_from")
    while init and Path(init).is_file() and len(stages) < 16:
        c = load_checkpoint(init)
        stages.insert(0, {"checkpoint": init, "step": c["step"], "wall_time_s": c["wall_time_s"], "config": c["config"]})
        init = c["config"].get("init_from")
    return stages


def recipe(config: dict) -> dict:
    """What a run's config sets otherwise than ``TrainConfig()`` in the model's training settings, the
    transform mix and the augmentation: the ``--config`` file that made it."""
    from drumvae.train import TrainConfig

    plain = lambda c: json.loads(json.dumps(c.to_dict()))  # noqa: E731 (tuples as lists)
    default, cfg = plain(TrainConfig()), plain(TrainConfig.from_dict(config))
    out = {k: cfg[k] for k in ("transform_p", "augment") if cfg[k] != default[k]}
    model = {k: v for k, v in cfg["model"].items() if v != default["model"][k]}
    return {**({"model": model} if model else {}), **out}


def _command(loop: dict, init: str | None, config_file: str | None) -> str:
    cmd = f"genie train drumvae --out {loop['out_dir']} --threads 1 --steps {loop['steps']}"
    if init:
        cmd += f" --init-from {init} --lr {loop['lr']:g}"
    if loop.get("seed"):
        cmd += f" --seed {loop['seed']}"
    if config_file:
        cmd += f" --config {config_file}"
    return cmd


def _made_by(run: dict, loop: dict) -> str:
    """The card's training commands: each earlier run (the chain ``--init-from`` followed), then this one;
    a run whose recipe was not the default names a ``--config`` file, printed below the commands."""
    stages, lines, files = run.get("stages") or [], [], []
    configs = [s["config"] for s in stages] + [run["config"]]
    inits = [None] + [s["checkpoint"] for s in stages]
    for i, (config, init) in enumerate(zip(configs, inits)):
        own, name = recipe(config), f"stage{i + 1}.json"
        line = _command(config["loop"], init, name if own else None)
        if i < len(stages):
            line += f"   # -> {stages[i]['checkpoint']}"
        lines.append(line)
        if own:
            files.append(f"# {name}: {json.dumps(own)}")
    return "\n".join(files + lines)


def _all_runs(run: dict) -> tuple[int, float]:
    """(steps, minutes) over this run and the runs it started from."""
    stages = run.get("stages") or []
    return (sum(s["step"] for s in stages) + run["latest_step"],
            (sum(s["wall_time_s"] for s in stages) + run["latest_wall_time_s"]) / 60)


def _init_line(run: dict) -> str:
    stages = run.get("stages") or []
    if not stages:
        return ""
    words = {2: "Two", 3: "Three", 4: "Four"}.get(len(stages) + 1, str(len(stages) + 1))
    each = "; ".join(f"`{s['checkpoint']}`: {s['step']:,} steps in "
                     f"{s['wall_time_s'] / 60:.0f} min" for s in stages)
    steps, minutes = _all_runs(run)
    return (f"- **{words} runs**: {each}; then this run, with the recipe above. Each run after the first "
            f"started from the weights of the one before (`--init-from`, a fresh Adam and schedule): "
            f"{steps:,} steps and {minutes:.0f} min in all (the commands above).\n")


def model_card(r: dict) -> str:
    from modelkit.onnx_export import card_section

    run, modes, base = r["run"], r["modes"], r["baselines"]
    cfg, args, meta = run["config"], run["model_args"], run["meta"]
    counts = meta.get("counts", {})
    split_rows = "\n".join(
        f"| {s} | {c['files']} | {c['windows']:,} | {c['beat_windows']:,} / {c['fill_windows']:,} | "
        f"{c['note_ons']:,} | {c['dropped_note_ons']:,} ({c['dropped_note_ons'] / max(c['note_ons'], 1):.1%}) | "
        f"{c['beyond_end']} |" for s, c in counts.items())

    def row(name: str, m: dict) -> str:
        return (f"| {name} | {_f(m['step_acc_free'])} | {_f(m.get('step_acc_tf'))} | {_f(m['f1_micro'])} | "
                f"{_f(m['velocity_mae_midi'], '.1f')} | {_f(m['timing_mae_ms'], '.1f')} | {_f(m.get('kl_bits'), '.1f')} |")

    table = "\n".join([row(f"model, {k}", m) for k, m in modes.items()]
                      + [row("baseline: all silent", base["all_silent"]),
                         row("baseline: most common 2-bar pattern of the style (reconstruction, tap2drum)",
                             base["most_common_pattern"]),
                         row("baseline (humanize): quantized input, class mean velocity", base["humanize_quantized_mean_velocity"]),
                         row("baseline (humanize): random humanizer", base["humanize_random"])])
    classes = r["classes"]
    f1_rows = "\n".join(f"| {k} | " + " | ".join(_f(v, ".2f") for v in m["f1_per_class"]) + " |"
                        for k, m in [*modes.items(), ("most common pattern", base["most_common_pattern"])])
    played_rows = "\n".join(f"| {k} | {_f(m['velocity_mae_midi'], '.1f')} | {_f(m['played']['velocity_mae_midi'], '.1f')} | "
                            f"{_f(m['timing_mae_ms'], '.1f')} | {_f(m['played']['timing_mae_ms'], '.1f')} |"
                            for k, m in modes.items() if "played" in m)
    dist = [("model (humanize), as played (with the spread)", modes["humanize"].get("played", {}).get("distances")),
            ("model (humanize), as decoded", modes["humanize"]["distances"]),
            ("random humanizer", base["humanize_random"]["distances"]),
            ("quantized, class mean velocity", base["humanize_quantized_mean_velocity"]["distances"])]
    dist_rows = "\n".join(f"| {n} | {_f(d['velocity_mean'], '.2f')} | {_f(d['velocity_by_position'], '.2f')} | "
                          f"{_f(d['offset_ms_mean'], '.2f')} | {_f(d['offset_ms_by_position'], '.2f')} |" for n, d in dist if d)
    acc = modes["reconstruction"]["step_acc_free"]
    target = r["targets"]["step_acc_free_reconstruction"]
    loop = cfg["loop"]
    bench = r["decode_bench"]
    return f"""# Model card: Drum VAE (`drumvae.pt`)

A GrooVAE-style drum VAE (MusicVAE, Roberts et al., ICML 2018, arXiv:1803.05428; GrooVAE, Gillick
et al., ICML 2019, arXiv:1905.06118), written in PyTorch in `drumvae/` and trained here on the
Groove MIDI Dataset. It turns 2 bars of drums, a tapped rhythm, or quantized hits into 2 bars of
drums on 9 classes with human velocity and micro-timing.

- `drumvae.pt`: TorchScript (scripted), step functions with randomness as inputs:
  `encode(pattern[B,32,27], transform[B], eps[B,{args['z_dim']}]) -> z` and
  `decode(z, style[B], fill[B], noise[B,S,9], temperature) -> (hit logits, velocity 0-1, offset -1..1)`,
  free-running (hit = noise < sigmoid(logit / T); noise 0.5 = threshold 0.5; noise < 0 forces a
  hit and noise >= 1 forbids one, so humanize plays the input's own hits); `apply_transform`.
  A pattern step is [9 hits, 9 velocities (MIDI/127), 9 offsets (half a 16th = 1, + = early)].
- `drumvae.json`: model arguments, the style names (index = `style`), the 9 classes, GM output
  pitches {list(data.GM_OUTPUT_PITCHES)} (configurable), the transform ids, the step it was taken at.
- `drumvae_grooves.json`: the groove bank of the live processor (`drumvae.grooves`): the latent
  codes (z = mu) of up to 48 training beats per style, so "new groove" draws from the aggregate
  posterior.
- `drumvae_spread.json`: per input transform, the quantile maps that give the decoded velocities
  and offsets a drummer's distribution (`drumvae.spread`, fitted on the training split; below).
- `drumvae_metrics.json`: every number below; `drumvae_loss.png`, `drumvae_f1.png`,
  `drumvae_humanize.png`, `drumvae_example.png`: plots.

Made by (from the repository root):

```sh
{_made_by(run, loop)}
genie export drumvae --checkpoint {loop['out_dir']}/{run['checkpoint']} --card{' --note "..."' if run.get('note') else ''}
genie eval drumvae            # evaluates this shipped artefact
genie bench drumvae           # decode timing
```

## Data

Groove MIDI Dataset v1.0.0 (1,150 MIDI files, 10 drummers on a Roland TD-11, recorded to a click),
4/4 files only, the official file-level split of `info.csv`. Note-ons map to 9 classes through
GrooVAE's Roland table (kick 36; snare 38 37 40; closed hi-hat 42 22 44; open hi-hat 46 26; low
tom 43 58; mid tom 47 45; high tom 50 48; crash 49 52 55 57; ride 51 53 59: every pitch in the
files). Each onset snaps to the nearest 16th (grid from tick 0); per step and class the loudest
note is kept (the others are counted below as dropped), with velocity/127 and offset = (grid time
- onset) / half a 16th. A file is round(length / bar) bars long; 2-bar windows start at every bar;
all-silent windows are left out. Each window keeps its file's primary style ({len(meta.get('styles', []))}
styles) and beat/fill label, which condition the decoder.

| split | files | windows | beat / fill windows | note-ons | dropped (same class, same step) | past the last bar |
|---|---:|---:|---:|---:|---:|---:|
{split_rows}

The split is by file, as published: sessions and drummers appear in more than one split, so the
test numbers measure new performances of familiar players, not unseen drummers.

## Model and training

- Encoder: BiLSTM {args['enc_hidden']} per direction over [T(x), one-hot(T)] -> mu, log-variance
  ({args['z_dim']}-d z). Decoder: {args['dec_layers']} x LSTM {args['dec_hidden']}, initial state
  tanh(Dense(z)); input each step [previous step, z, style embedding ({args['style_dim']}), fill bit];
  heads hit (Bernoulli logits), velocity (sigmoid), offset (tanh). **{run['params']:,} parameters**.
- Loss per window: sum over steps and classes of BCE(hit) + hit * ((velocity error)^2 + (offset
  error)^2), + beta {args['beta']} * max(KL - {args['free_bits']:g} bits, 0) (MusicVAE's free bits and beta; GrooVAE used 48 free bits).
- One model for every mode: each training window gets an input transform T drawn with
  probabilities {cfg['transform_p']} for reconstruction, humanize (hits only), tap2drum (the loudest
  hit of each step on one lane, with velocity and offset) and tap2drum with fixed velocity (timing
  only); the encoder is told which (one-hot), the target is always the full performance.
{_training_aids(cfg)}- Adam, peak lr {loop['lr']:g}, {loop['warmup_steps']} warm-up steps, cosine decay to
  {loop['lr'] * loop['min_lr_ratio']:g} at step {loop['steps']:,}, gradient clip {loop['grad_clip']},
  batch {cfg['batch_size']} windows, seed {loop['seed']}; torch {run['torch']}, CPU.
{_init_line(run)}- **Ran {run['latest_step']:,} steps in {run['latest_wall_time_s'] / 60:.0f} min of training wall
  time** (median {_f(run['ms_per_step_median'], '.0f')} ms/step) on one CPU thread at nice 19, on a
  2-core machine shared with other jobs; that is {run['latest_step'] * cfg['batch_size'] / max(counts.get('train', {}).get('windows', 1), 1):.0f}
  passes over the training windows. Shipped: `{run['checkpoint']}`, {_why(run['checkpoint'])},
  step **{run['shipped_step']:,}** ({(run['shipped_wall_time_s'] or 0) / 60:.0f} min). {run.get('note', '')}
- Resume: `checkpoints/drumvae/README.md`.

![loss](drumvae_loss.png)

One test window (the 75th percentile of busyness) as the model plays it (`python -m drumvae.render
FILE.mid --png OUT.png` draws any file the same way: shade = velocity, shift left = early):

![example](drumvae_example.png)

## Metrics (GMD {r['split']} split: {r['windows']:,} windows, {r['steps']:,} steps)

Definitions: every mode encodes the test window (after its transform) and decodes from z = mu
with threshold 0.5. **Step accuracy**: the fraction of 16th steps where all 9 hit bits match the
performance; *free-running*: each step sees the decoder's own previous output; *teacher-forced*:
the true previous step. **F1**: hit F1 over all classes (micro), free-running. **Velocity MAE**:
MIDI units, **timing MAE**: ms at the file's tempo, both on true-positive hits. **KL**: bits per
window. *Humanize* gives the decoder the input's hits (noise -1 on hits, 2 elsewhere: GrooVAE's
hits-as-controls, at inference only), so it plays exactly those hits and its errors cover every
hit; *humanize, hits decoded* lets the decoder choose the hits from z as in the other modes. MusicVAE's 2-bar drum model (quantized, no velocity or timing, a different corpus) reports,
as we recall it (not checked against the paper), 0.979 teacher-forced / 0.917 sampled.

| | step acc. (free) | step acc. (teacher-forced) | hit F1 | velocity MAE | timing MAE ms | KL bits |
|---|---:|---:|---:|---:|---:|---:|
{table}

Target: reconstruction step accuracy, free-running, >= {target}: **{acc:.3f} ({'met' if acc >= target else 'not met'})**.
A {r['silent_step_fraction']:.0%} share of test steps is silent (the all-silent baseline's accuracy).

Per-class hit F1 (free-running):

| | {' | '.join(classes)} |
|---|{'---:|' * len(classes)}
{f1_rows}

![per-class F1](drumvae_f1.png)

Humanize: Wasserstein-1 distance between generated and real distributions per class (mean over
classes), and per class *and* 16th position in the beat (mean over cells with 20+ hits, where
swing shows). The random humanizer draws from the training marginals, so it is close on the
marginal distance by construction; it has no idea of position, groove or the neighbouring notes,
which the per-note errors above (velocity and timing MAE) and the by-position distance measure.

| | velocity W1 | by position | offset W1 (ms) | by position |
|---|---:|---:|---:|---:|
{dist_rows}

**As played: a drummer's spread.** The velocity and offset heads are trained with squared error,
so they decode the mean of what a drummer might play: narrower than a drummer (the "as decoded"
row). The live processor plays every decoded value through a quantile map (`drumvae.spread`,
`drumvae_spread.json`): per input transform, drum class and 16th position in the beat, a value at
quantile q of the model's decodes of the training windows is played at quantile q of the real
training hits (21 knots, linear between). The order of the values is kept, so accents and push and
pull are the model's; only their range is a drummer's. The mapping was chosen on the validation
split (a linear variance match, as speech synthesis's global-variance compensation, came second).
Its cost is a little per-note error:

| mode | velocity MAE, as decoded | as played | timing MAE ms, as decoded | as played |
|---|---:|---:|---:|---:|
{played_rows}

![humanize distributions](drumvae_humanize.png)

Decode time (2 bars, batch 1, one thread, measured while other engineers' jobs ran on the same 2
cores; target <= {bench['target_ms']:.0f} ms): {_bench_line(bench)}.

{card_section(r.get('onnx') or {}, ONNX_SEQUENCE)}

## Limits

- Trained {_all_runs(run)[0]:,} steps on one CPU thread (GrooVAE: larger, longer); read the numbers as
  a curve in progress.
- Trained and evaluated on 2-bar windows of 4/4 only; one note per class per step (rolls faster
  than 16ths are lost, {counts.get('train', {}).get('dropped_note_ons', 0) / max(counts.get('train', {}).get('note_ons', 1), 1):.0%} of training note-ons).
- Styles with few windows (e.g. middle-eastern, highlife) are barely conditioned; the style and
  beat/fill inputs are as in the file's metadata, and fills are only ~3.5% of the windows.
- A prior sample of z is not a good groove (a VAE trained with free bits): draw z near training
  windows' encodings (the aggregate posterior) instead.

## Licence

Licence: {LICENCE}.
"""
