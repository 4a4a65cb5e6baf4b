"""Drum VAE commands for the ``genie`` CLI: ``train drumvae``, ``eval drumvae``, ``export drumvae``,
``bench drumvae``.

The daemon finds them through entry points, so it never imports this package; torch is imported
inside the command functions, so listing commands stays cheap.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

DEFAULT_RUN = Path("runs") / "drumvae" / "model"


from modelkit.cli import format_option, write_onnx
from modelkit.cli import setup_logging as _logging


@click.command("drumvae")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=DEFAULT_RUN, show_default=True,
              help="Run folder for checkpoints, history and loss.png; an existing ckpt.pt there is resumed.")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Stop at this step [default: 18000].")
@click.option("--max-minutes", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Stop after this much wall time (0: no limit); a checkpoint is written first.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="torch threads per process.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="[default: 128]")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None, help="[default: 1e-3]")
@click.option("--seed", type=int, default=None, help="[default: 0]")
@click.option("--ckpt-every", type=click.IntRange(min=1), default=None,
              help="Checkpoint and validate every this many steps [default: 400].")
@click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="JSON file with TrainConfig keys (model.*, loop.*, ...); unknown keys are an error.")
@click.option("--init-from", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="A new run starts from this checkpoint's weights and model (fine-tuning with the run's own "
                   "recipe and schedule).")
@click.option("--data", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Datasets root holding groove-midi-v1.0.0 [default: $GENIE_DATASETS or ../shared/datasets].")
@click.option("--cache", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Cache for the prepared windows [default: $XDG_CACHE_HOME/genie/drumvae].")
def train_cmd(out, steps, max_minutes, threads, batch_size, lr, seed, ckpt_every, config_file, init_from, data, cache):
    """Train the Drum VAE on the Groove MIDI Dataset; resumes exactly from the run folder."""
    _logging()
    from modelkit.checkpoints import checkpoint_path, load_checkpoint
    from modelkit.configs import resume_config
    from drumvae.train import TrainConfig, stage_model, train

    log = logging.getLogger("genie.drumvae")
    requested = {k: v for k, v in {"batch_size": batch_size, "data_dir": str(data) if data else None,
                                   "cache_dir": str(cache) if cache else None}.items() if v is not None}
    loop_requested = {k: v for k, v in {"lr": lr, "seed": seed, "ckpt_every": ckpt_every}.items() if v is not None}
    if checkpoint_path(out).is_file():  # the run's own settings win; only where, how long and threads change
        saved = load_checkpoint(checkpoint_path(out))["config"]
        cfg, ignored = resume_config(TrainConfig, saved, {}, requested)
        ignored += [f"loop.{k}" for k, v in loop_requested.items() if saved["loop"].get(k) != v]
        if config_file:
            ignored.append(f"--config {config_file}")
        if init_from:
            ignored.append(f"--init-from {init_from}")
        if ignored:
            log.warning("resuming %s: ignoring %s (the run's own settings are kept)", out, ", ".join(ignored))
    else:
        given = json.loads(config_file.read_text()) if config_file else {}
        cfg = TrainConfig.from_dict(given) if config_file else TrainConfig()
        for k, v in requested.items():
            setattr(cfg, k, v)
        for k, v in loop_requested.items():
            setattr(cfg.loop, k, v)
        if ckpt_every:
            cfg.loop.eval_every = ckpt_every
        if init_from:
            from modelkit.configs import from_dict
            from drumvae.model import DrumVAEConfig

            try:
                start = from_dict(DrumVAEConfig, load_checkpoint(init_from)["model_args"], "model_args")
            except (OSError, KeyError, ValueError, RuntimeError) as exc:
                raise click.ClickException(f"--init-from {init_from}: not a Drum VAE checkpoint ({exc})") from None
            cfg.model = stage_model(start, cfg.model, given.get("model", {}))
            cfg.init_from = str(init_from)
    cfg.loop.out_dir, cfg.loop.max_minutes, cfg.loop.threads = str(out), max_minutes, threads
    if steps:
        cfg.loop.steps = steps
    ckpt = train(cfg)
    click.echo(f"drumvae: step {ckpt['step']}, best validation loss {ckpt['best_val']:.4f}, "
               f"{ckpt['wall_time_s'] / 60:.1f} min; {checkpoint_path(out)}")


@click.command("drumvae")
@click.option("--model", "model_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Checkpoint to evaluate [default: the shipped drumvae/weights/drumvae.pt].")
@click.option("--split", type=click.Choice(["test", "validation"]), default="test", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Evaluate at most this many windows.")
@click.option("--plots", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Write PNG plots (per-class F1, offset/velocity distributions) into this folder.")
@click.option("--data", type=click.Path(path_type=Path, file_okay=False), default=None)
@click.option("--cache", type=click.Path(path_type=Path, file_okay=False), default=None)
def eval_cmd(model_path, split, as_json, limit, plots, data, cache):
    """Step accuracy, per-class F1, velocity and timing error and KL on the GMD test split, with baselines."""
    _logging()
    from drumvae import evaluate

    result = evaluate.run(model_path, split=split, limit=limit, data_dir=data, cache_dir=cache, plots=plots)
    click.echo(evaluate.to_json(result) if as_json else evaluate.format_report(result))


@click.command("drumvae")
@click.option("--checkpoint", type=click.Path(path_type=Path, dir_okay=False),
              default=DEFAULT_RUN / "best.pt", show_default=True)
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Folder for the artefacts [default: the shipped drumvae/weights].")
@click.option("--card", is_flag=True, help="Also evaluate on the test split and write the metrics, loss "
                                          "curve and model card; --checkpoint's folder is the run.")
@click.option("--note", default="", help="A sentence for the card on why this checkpoint was chosen.")
@format_option
def export_cmd(checkpoint, out, card, note, fmt):
    """Export a checkpoint as a TorchScript artefact (encode/decode step functions) for the processor,
    and as ONNX beside it (the torch-free runtime)."""
    _logging()
    from drumvae import export

    if card:
        export.ship(checkpoint.parent, out, which=checkpoint.name, note=note)
        click.echo(f"wrote the weights, metrics, loss curve and card in {out or export.WEIGHTS_DIR}")
    elif fmt != "onnx":
        for p in export.export_checkpoint(checkpoint, out):
            click.echo(f"wrote {p}")
    if fmt != "torchscript" and not card:  # shipping writes the ONNX files itself
        write_onnx(export.export_onnx, out)


@click.command("drumvae")
@click.option("--weights", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Exported artefact [default: the shipped drumvae/weights/drumvae.pt].")
@click.option("--runs", type=click.IntRange(min=10), default=300, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the timings as JSON.")
def bench_cmd(weights, runs, as_json):
    """Time one 2-bar decode (32 steps, batch 1) of the exported model on one thread: median and
    p99 (target <= 20 ms). The output notes against their due times through JACK, beside the floor:
    ``genie bench clock -p drumvae``."""
    from drumvae import export

    result = export.bench_decode(weights, runs)
    if as_json:
        click.echo(json.dumps(result, indent=1))
        return
    for fmt, r in result["runtimes"].items():
        ok = "met" if r["p99"] <= result["target_ms"] else "NOT met"
        click.echo(f"drumvae decode on {fmt} (2 bars, 1 thread, {r['n']} runs): median {r['p50']:.2f} ms, "
                   f"p99 {r['p99']:.2f} ms, max {r['max']:.2f} ms; target <= {result['target_ms']:.0f} ms: {ok}")


@click.group()
def main() -> None:
    """Drum VAE commands, standalone (``genie`` mounts them as train/eval/export/bench drumvae)."""


main.add_command(train_cmd, "train")
main.add_command(eval_cmd, "eval")
main.add_command(export_cmd, "export")
main.add_command(bench_cmd, "bench")

if __name__ == "__main__":
    main()
