"""The Music Transformer's commands for the ``genie`` CLI: ``train musiclm``, ``eval musiclm``,
``export musiclm`` and ``bench musiclm``.

The daemon finds them through entry points, so it never imports this package; torch is imported
inside the command functions, so listing commands stays cheap.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

RUNS = Path("runs") / "musiclm"


from modelkit.cli import format_option, write_onnx
from modelkit.cli import setup_logging as _logging


@click.command("musiclm")
@click.option("--dataset", type=click.Choice(["jsb", "maestro"]), default="maestro", show_default=True,
              help="JSB Chorales (the paper's experiment) or MAESTRO performances (the live model).")
@click.option("--position", type=click.Choice(["relative", "absolute"]), default="relative", show_default=True,
              help="Relative attention (the paper) or sinusoidal absolute positions (the baseline).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Run folder [default: runs/musiclm/<dataset>-<position>]. An existing ckpt.pt there is resumed "
                   "with its own settings (only --steps, --max-minutes and --threads change).")
@click.option("--init-from", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="Start a new run from this checkpoint's weights and model (its dataset and position; "
                   "--max-len may grow the context, --dropout may change), at step 0 with its own schedule.")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Where training (and the cosine schedule) ends [default: the preset's].")
@click.option("--max-minutes", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Stop after this much wall time (0: no limit); a checkpoint is written first.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None)
@click.option("--max-len", type=click.IntRange(min=8), default=None, help="Training length L (the context).")
@click.option("--layers", type=click.IntRange(min=1), default=None)
@click.option("--d-model", type=click.IntRange(min=8), default=None)
@click.option("--dropout", type=click.FloatRange(0, 1), default=None)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--ckpt-every", type=click.IntRange(min=1), default=200, show_default=True,
              help="Checkpoint (and validate) every this many steps.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="torch threads per process.")
@click.option("--data", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Datasets root [default: $GENIE_DATASETS or ../shared/datasets].")
def train_cmd(dataset, position, out, init_from, steps, max_minutes, batch_size, lr, max_len, layers, d_model,
              dropout, seed, ckpt_every, threads, data):
    """Train a Music Transformer (Huang et al. 2018); resumes exactly from the run folder."""
    _logging()
    from modelkit.checkpoints import CheckpointError, checkpoint_path, load_checkpoint
    from musiclm.train import config_from_checkpoint, preset, train

    parent = None
    if init_from:
        if layers is not None or d_model is not None:
            raise click.UsageError("--init-from takes the model's shape from the checkpoint: drop --layers/--d-model")
        try:
            parent = config_from_checkpoint(load_checkpoint(init_from))
        except (CheckpointError, KeyError, ValueError) as exc:
            raise click.BadParameter(f"not a musiclm training checkpoint ({exc})", param_hint="--init-from")
        if max_len is not None and max_len < parent.model.max_len:
            raise click.BadParameter(f"{max_len} is shorter than the checkpoint's {parent.model.max_len}",
                                     param_hint="--max-len")
        dataset, position = parent.dataset, parent.model.position
    out = out or RUNS / f"{dataset}-{position}"
    if checkpoint_path(out).is_file():  # the run's own settings win
        cfg = config_from_checkpoint(load_checkpoint(checkpoint_path(out)))
        cfg.out_dir, cfg.max_minutes, cfg.threads = str(out), max_minutes, threads
        if steps:
            cfg.steps = steps
    else:
        cfg = preset(dataset, position, out_dir=str(out), seed=seed, ckpt_every=ckpt_every, eval_every=ckpt_every,
                     threads=threads, max_minutes=max_minutes, data_dir=str(data or ""))
        for name, value in (("steps", steps), ("batch_size", batch_size), ("lr", lr)):
            if value is not None:
                setattr(cfg, name, value)
        if parent is not None:
            cfg.model, cfg.init_from = parent.model, str(init_from)
        for name, value in (("max_len", max_len), ("n_layer", layers), ("d_model", d_model), ("dropout", dropout)):
            if value is not None:
                setattr(cfg.model, name, value)
        if d_model is not None:
            cfg.model.d_ff = 4 * d_model
    ckpt = train(cfg)
    click.echo(f"musiclm {dataset}-{position}: step {ckpt['step']}, best validation NLL {ckpt['best_val']:.4f}, "
               f"{ckpt['wall_time_s'] / 60:.1f} min; {checkpoint_path(out)}")


@click.command("musiclm")
@click.option("--jsb-relative", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Checkpoint [default: the shipped one, checkpoints/musiclm/jsb-relative/best.pt].")
@click.option("--jsb-absolute", type=click.Path(path_type=Path, dir_okay=False), default=None)
@click.option("--maestro", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="MAESTRO checkpoint [default: the shipped one].")
@click.option("--split", type=click.Choice(["validation", "test", "both"]), default="both", show_default=True)
@click.option("--maestro-windows", type=click.IntRange(min=0), default=256, show_default=True,
              help="MAESTRO windows per split (evenly spaced; 0 = all, slow on a CPU).")
@click.option("--png", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also draw the validation curves of the checkpoints' histories.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.option("--data", type=click.Path(path_type=Path, file_okay=False), default=None)
def eval_cmd(jsb_relative, jsb_absolute, maestro, split, maestro_windows, png, as_json, data):
    """NLL per token (nats) on JSB (relative and absolute) and MAESTRO, beside the paper's numbers.

    With no arguments it evaluates the shipped checkpoints (checkpoints/musiclm/*/best.pt)."""
    _logging()
    from musiclm import evaluate

    result = evaluate.run(jsb_relative, jsb_absolute, maestro, split=split, maestro_windows=maestro_windows,
                          data_dir=data, png=png)
    click.echo(json.dumps(result, indent=1) if as_json else evaluate.format_report(result))


@click.command("musiclm")
@click.option("--checkpoint", type=click.Path(path_type=Path, dir_okay=False),
              default=RUNS / "maestro-relative" / "best.pt", show_default=True)
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Folder for the artefacts [default: the shipped musiclm/weights].")
@click.option("--card", is_flag=True,
              help="Also copy every run of runs/musiclm into checkpoints/musiclm (slim resume checkpoints, "
                   "histories, curves), evaluate the shipped files and write the metrics, the curves and "
                   "the model card musiclm.md.")
@format_option
def export_cmd(checkpoint, out, card, fmt):
    """Export a checkpoint as a TorchScript step (token, position, kv_cache) -> (logits, kv_cache),
    and as ONNX beside it (the torch-free runtime)."""
    _logging()
    from musiclm import export

    if fmt == "onnx":
        path = (out or export.WEIGHTS_DIR) / export.MODEL_FILE
    else:
        path = export.export_checkpoint(checkpoint, out)
        click.echo(f"wrote {path}")
    if fmt != "torchscript" and not (card and path.name == export.MODEL_FILE):  # the card writes it
        write_onnx(export.export_onnx, path)
    if card:
        for p in export.copy_runs(RUNS):
            click.echo(f"copied {p}")
        for p in export.write_card(out, source=checkpoint):
            click.echo(f"wrote {p}")


@click.command("musiclm")
@click.option("--weights", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Exported step [default: the shipped musiclm/weights/musiclm_maestro.pt].")
@click.option("--positions", default="64,256,1024", show_default=True, help="Context positions to time at.")
@click.option("--tokens", type=click.IntRange(min=1), default=200, show_default=True,
              help="Timed tokens per position (cached).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def bench_cmd(weights, positions, tokens, as_json):
    """Tokens per second on one thread at context positions 64, 256, 1024, cached (the KV-cache step)
    and uncached (re-reading the whole window per token). Targets: >= 500 tokens/s cached, flat
    within 1.5x from 64 to 1024. The time from the trigger to the first answered note through
    JACK: genie bench answer -p musiclm."""
    from musiclm import bench

    result = bench.run(weights, [int(p) for p in positions.split(",")], tokens)
    click.echo(json.dumps(result, indent=1) if as_json else bench.format_report(result))


@click.group()
def main() -> None:
    """The Music Transformer's commands, standalone (``genie`` mounts them as train/eval/export/bench musiclm)."""


main.add_command(train_cmd, "train")
main.add_command(eval_cmd, "eval")
main.add_command(export_cmd, "export")
main.add_command(bench_cmd, "bench")

if __name__ == "__main__":
    main()
