"""Piano Genie's commands for the ``genie`` CLI: ``train pianogenie``, ``eval pianogenie``,
``buttons FILE.mid`` (and ``export pianogenie``).

The daemon finds them through the ``genie.commands`` entry-point group, so it never imports this
package; each also runs alone (``python -m pianogenie train ...``). torch is imported inside the
command functions, so listing commands stays cheap.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from modelkit.cli import format_option, write_onnx
from modelkit.cli import setup_logging as _logging

DEFAULT_RUN = Path("runs") / "pianogenie"
# the baseline's last checkpoint, kept in the repository beside the model's (checkpoints/README)
SHIPPED_BASELINE = Path(__file__).resolve().parents[1] / "checkpoints" / "pianogenie" / "baseline" / "ckpt.pt"


@click.command("pianogenie")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Run folder for checkpoints, history and loss.png [default: runs/pianogenie/model, "
                   "runs/pianogenie/baseline with --baseline, runs/pianogenie/vq with --vq]. An existing "
                   "ckpt.pt there is resumed.")
@click.option("--baseline", is_flag=True, help="Train the paper's baseline: the decoder with no buttons.")
@click.option("--vq", is_flag=True, help="Train the VQ-VAE option (8 learned codes) in place of the IQAE.")
@click.option("--no-time", is_flag=True,
              help="Without the time input (the paper's rows without +ΔT); run folder <name>-notime.")
@click.option("--rnn-dim", type=click.IntRange(min=1), default=128, show_default=True,
              help="Width of every layer of a new run's encoder and decoder (the paper: 128).")
@click.option("--steps", type=click.IntRange(min=1), default=200_000, show_default=True,
              help="Stop at this step.")
@click.option("--max-minutes", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Stop after this much wall time (0: no limit); a checkpoint is written first.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=3e-4, show_default=True)
@click.option("--decay-from", type=click.IntRange(min=0), default=0, show_default=True,
              help="From this step on, the learning rate falls along a cosine to a tenth at --steps "
                   "(0: constant, as the paper). Also given when resuming, to end a run with a tail.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--ckpt-every", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True,
              help="torch threads per process.")
@click.option("--data", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Datasets root holding asap-maestro-subset [default: $GENIE_DATASETS or ../shared/datasets].")
@click.option("--cache", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Cache for the prepared notes [default: $XDG_CACHE_HOME/genie/pianogenie].")
def train_cmd(out, baseline, vq, no_time, rnn_dim, steps, max_minutes, batch_size, lr, decay_from, seed,
              ckpt_every, threads, data, cache):
    """Train Piano Genie on MAESTRO (ASAP subset); resumes exactly from the run folder."""
    _logging()
    from pianogenie.model import PianoGenieConfig
    from pianogenie.train import TrainConfig, checkpoint_path, load_checkpoint, train

    if baseline and vq:
        raise click.UsageError("--baseline has no buttons, so no bottleneck: give one of --baseline, --vq")
    if decay_from and decay_from >= steps:
        raise click.BadParameter(f"{decay_from} is not before --steps {steps}", param_hint="--decay-from")
    out = out or DEFAULT_RUN / (("baseline" if baseline else "vq" if vq else "model") + ("-notime" if no_time else ""))
    if checkpoint_path(out).is_file():  # the run's own settings win; only where and how long change
        cfg = TrainConfig.from_dict(load_checkpoint(checkpoint_path(out))["config"])
        ctx = click.get_current_context()
        given = {"batch_size": batch_size, "lr": lr, "seed": seed, "ckpt_every": ckpt_every,
                 "baseline": baseline, "vq": vq, "no_time": no_time, "rnn_dim": rnn_dim}
        saved = {"batch_size": cfg.batch_size, "lr": cfg.lr, "seed": cfg.seed, "ckpt_every": cfg.ckpt_every,
                 "baseline": cfg.model.num_buttons == 0, "vq": cfg.model.vq, "no_time": not cfg.model.time_input,
                 "rnn_dim": cfg.model.rnn_dim}
        ignored = [k for k, v in given.items()
                   if ctx.get_parameter_source(k) == click.core.ParameterSource.COMMANDLINE and saved[k] != v]
        if ignored:
            logging.getLogger("genie.pianogenie").warning(
                "resuming %s: its own %s stay; ignoring --%s", out, ", ".join(ignored),
                ", --".join(k.replace("_", "-") for k in ignored))
        cfg.out_dir, cfg.steps, cfg.max_minutes, cfg.threads = str(out), steps, max_minutes, threads
        if ctx.get_parameter_source("decay_from") == click.core.ParameterSource.COMMANDLINE:
            cfg.decay_from = decay_from  # the schedule's tail from here on; the steps before are unchanged
    else:
        cfg = TrainConfig(out_dir=str(out), model=PianoGenieConfig(num_buttons=0 if baseline else 8,
                                                                   bottleneck="vq" if vq else "iqae",
                                                                   time_input=not no_time, rnn_dim=rnn_dim),
                          steps=steps, batch_size=batch_size, lr=lr, decay_from=decay_from, seed=seed,
                          ckpt_every=ckpt_every,
                          eval_every=ckpt_every, threads=threads, max_minutes=max_minutes,
                          data_dir=str(data or ""), cache_dir=str(cache or ""))
    ckpt = train(cfg)
    click.echo(f"pianogenie: step {ckpt['step']}, best validation CE {ckpt['best_val']:.4f}, "
               f"{ckpt['wall_time_s'] / 60:.1f} min; {checkpoint_path(out)}")


@click.command("pianogenie")
@click.option("--model", "model_path", default="shipped", show_default=True,
              help="Piano Genie checkpoint, or 'shipped': the weights the processor plays.")
@click.option("--baseline", "baseline_path", type=click.Path(path_type=Path, dir_okay=False),
              default=SHIPPED_BASELINE, show_default=True,
              help="No-button baseline checkpoint ('' to skip; skipped when missing).")
@click.option("--vq", "vq_path", default="shipped-vq", show_default=True,
              help="VQ-VAE option: a checkpoint, or 'shipped-vq' (skipped when not shipped); '' to skip.")
@click.option("--without-time", "without_time", type=click.Path(path_type=Path, file_okay=False),
              default=SHIPPED_BASELINE.parents[1], show_default=True,
              help="Folder of the runs without the time input (model-notime, vq-notime, baseline-notime: "
                   "best.pt, else ckpt.pt), each a row when present; '' to skip.")
@click.option("--split", type=click.Choice(["test", "validation"]), default="test", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the player's measure.")
@click.option("--data", type=click.Path(path_type=Path, file_okay=False), default=None)
@click.option("--cache", type=click.Path(path_type=Path, file_okay=False), default=None)
def eval_cmd(model_path, baseline_path, vq_path, without_time, split, as_json, seed, data, cache):
    """Perplexity, contour violations, button usage, accuracy and Gold on the test split: the model,
    the VQ-VAE option and the baseline."""
    _logging()
    from pianogenie import evaluate
    from pianogenie.export import VQ_DECODER_FILE, WEIGHTS_DIR

    if vq_path == evaluate.SHIPPED_VQ and not (WEIGHTS_DIR / VQ_DECODER_FILE).is_file():
        vq_path = ""
    for path in (model_path, vq_path):
        if path and path not in (evaluate.SHIPPED, evaluate.SHIPPED_VQ) and not Path(path).is_file():
            raise click.BadParameter(f"{path}: no such checkpoint")
    result = evaluate.run(model_path, baseline_path if str(baseline_path) else None, split=split,
                          seed=seed, data_dir=data, cache_dir=cache, vq_path=vq_path or None,
                          without_time=evaluate.without_time_runs(without_time) if str(without_time) else None)
    click.echo(json.dumps(result, indent=1) if as_json else evaluate.format_report(result))


@click.command("buttons")
@click.argument("midi_file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--weights", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Exported encoder [default: the shipped pianogenie/weights/encoder.pt].")
@click.option("--midi", "midi_out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also write the buttons as MIDI, as the default map's white keys C4-C5 (button 0 "
                   "= C4): played back into genie run, they press the same buttons.")
@click.option("--png", "png_out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also draw the buttons under the piano roll (needs matplotlib).")
@click.option("--as-encoded", is_flag=True,
              help="Keep the buttons where the encoder puts them (by the piece's register too), instead "
                   "of centring the piece's span on the 8 buttons as a person would.")
def buttons_cmd(midi_file, weights, midi_out, png_out, as_encoded):
    """Print the 8-button sequence that plays MIDI_FILE (a way to learn a piece on 8 buttons)."""
    from pianogenie import export

    try:
        result = export.buttons_for_file(midi_file, weights, centre=not as_encoded)
    except (OSError, EOFError, KeyError, IndexError) as exc:
        raise click.ClickException(f"{midi_file}: not a readable MIDI file ({str(exc).strip() or type(exc).__name__})") from None
    except ValueError as exc:  # a bad model file (runtime.ModelFileError) or a bad MIDI file
        raise click.ClickException(str(exc).splitlines()[0] if str(exc) else f"{midi_file}: not readable") from None
    for line in export.format_buttons(result):
        click.echo(line)
    if result["moved"]:
        click.echo(f"the piece's span is centred on the 8 buttons: {abs(result['moved'])} button(s) "
                   f"{'higher' if result['moved'] > 0 else 'lower'} than the encoder puts it (--as-encoded "
                   "keeps the encoder's)", err=True)
    if midi_out:
        export.write_buttons_midi(result, midi_out)
        click.echo(f"wrote {midi_out}", err=True)
    if png_out:
        if not export.plot_buttons(result, png_out):
            raise click.ClickException("--png needs matplotlib (pip install matplotlib)")
        click.echo(f"wrote {png_out}", err=True)


@click.command("pianogenie")
@click.option("--checkpoint", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="[default: runs/pianogenie/model/best.pt, runs/pianogenie/vq/best.pt with --vq]")
@click.option("--vq", is_flag=True, help="The VQ-VAE option: written beside the IQAE as pianogenie_vq_*.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Folder for the artefacts [default: the shipped pianogenie/weights].")
@click.option("--card", is_flag=True,
              help="Also evaluate beside the baseline (runs/pianogenie/baseline) and write the "
                   "metrics, the loss curve and the model card; --checkpoint's folder is the run.")
@click.option("--cards-only", is_flag=True,
              help="Measure the shipped artefacts' Gold again (after a change to pianogenie/gold.py) and write "
                   "both cards again from the kept metrics; no checkpoint needed.")
@format_option
def export_cmd(checkpoint, vq, out, card, cards_only, fmt):
    """Export a checkpoint's decoder step and encoder as TorchScript for the processor, and the
    decoder as ONNX beside it (the torch-free runtime)."""
    _logging()
    from pianogenie import export
    from pianogenie.model import PianoGenieConfig

    if cards_only:
        for p in export.refresh_cards(out):
            click.echo(f"wrote {p}")
        return
    checkpoint = checkpoint or DEFAULT_RUN / ("vq" if vq else "model") / "best.pt"
    if (card or fmt != "onnx") and not checkpoint.is_file():  # --format onnx converts the shipped .pt
        raise click.BadParameter(f"{checkpoint}: no such checkpoint", param_hint="--checkpoint")
    if card or fmt != "onnx":
        from pianogenie.train import load_checkpoint

        if PianoGenieConfig(**load_checkpoint(checkpoint)["model_args"]).vq != vq:
            raise click.BadParameter(f"{checkpoint}: {'not ' if vq else ''}a VQ-VAE checkpoint"
                                     f"{'' if vq else ' (give --vq)'}", param_hint="--checkpoint")
    if card and vq:
        export.ship_vq(checkpoint.parent, out, which=checkpoint.name)
        click.echo(f"wrote the VQ-VAE option's weights, metrics and card in {out or export.WEIGHTS_DIR}")
    elif card:
        export.ship(checkpoint.parent, DEFAULT_RUN / "baseline", out, which=checkpoint.name)
        click.echo(f"wrote the weights, metrics, loss curve and card in {out or export.WEIGHTS_DIR}")
    elif fmt != "onnx":
        for p in export.export_checkpoint(checkpoint, out):
            click.echo(f"wrote {p}")
    if fmt != "torchscript" and not card:  # shipping writes the ONNX files itself
        decoder = export.artefact_files(vq)[0]
        write_onnx(lambda where: export.export_onnx(where, decoder), out)
