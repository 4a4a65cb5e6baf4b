"""``genie train markov``: count the bigram model of the markov processor.

No torch: ``genie train --help`` and ``genie train markov`` stay cheap. The daemon finds this
command through the ``genie.train`` entry point.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import click

from markov.model import MarkovConfig
from modelkit.datasets import datasets_root

log = logging.getLogger("genie.train")

NOTTINGHAM_MELODY = Path("nottingham-jukedeck") / "MIDI" / "melody"
SPLITS = ("train", "validation", "test")
PACKAGE = Path(__file__).resolve().parent


def shipped_markov_weights() -> Path:
    return PACKAGE / "weights" / "markov.json"


def _describe(data: Path) -> str:
    """The data folder as recorded in a model file: relative to the datasets root when inside it,
    so the file names no one's home directory."""
    try:
        return data.resolve().relative_to(datasets_root().resolve()).as_posix()
    except ValueError:
        return data.name


@click.command("markov")
@click.option("--data", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Folder of monophonic MIDI files [default: $GENIE_DATASETS or "
                   "../shared/datasets, then nottingham-jukedeck/MIDI/melody].")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Where to write the model JSON [default: the shipped weights/markov.json].")
@click.option("--alpha", type=click.FloatRange(min=0, max=1e6, min_open=True),
              default=MarkovConfig.alpha,
              show_default=True, help="Add-alpha smoothing: pseudo-count of every next pitch.")
def train_cmd(data: Path | None, out: Path | None, alpha: float) -> None:
    """Count the bigram model of the markov processor.

    One counting pass over the data; there are no gradient steps.

    Files are split by stem: sha1(stem) mod 10 is 0 for test, 1 for validation, else train. The
    model is counted on train; validation and test perplexity are reported, with the unigram
    baseline beside them.
    """
    from markov import model as mm

    data = data if data is not None else datasets_root() / NOTTINGHAM_MELODY
    out = out if out is not None else shipped_markov_weights()
    config = MarkovConfig(alpha=alpha)
    if not data.is_dir():
        raise click.BadParameter(f"data folder {data} does not exist (set --data or GENIE_DATASETS)",
                                 param_hint="--data")
    files = sorted(p for p in data.iterdir() if p.suffix.lower() in (".mid", ".midi"))
    if not files:
        raise click.BadParameter(f"no .mid files in {data}", param_hint="--data")

    t0 = time.perf_counter()
    sequences: dict[str, list[list[int]]] = {s: [] for s in SPLITS}
    n_files = dict.fromkeys(SPLITS, 0)
    n_notes = dict.fromkeys(SPLITS, 0)
    with click.progressbar(files, label=f"reading {len(files)} files", show_pos=True,
                           file=sys.stderr) as bar:
        for path in bar:
            try:
                pitches = mm.read_pitches(path)
            except ValueError as exc:
                raise click.ClickException(str(exc)) from None
            split = mm.split_of(path.stem)
            sequences[split].append(pitches)
            n_files[split] += 1
            n_notes[split] += len(pitches)
    for split in SPLITS:
        log.info("%s: %d files, %d notes", split, n_files[split], n_notes[split])
        if not any(len(s) >= 2 for s in sequences[split]):
            raise click.ClickException(f"the {split} split of {data} has no melody of 2 notes or "
                                       "more; it needs more files")

    model = mm.fit(sequences["train"], config)
    metrics = {}
    for split in ("validation", "test"):
        metrics[split] = {
            "transitions": model.nll(sequences[split])[1],
            "perplexity": round(model.perplexity(sequences[split]), 4),
            "unigram_perplexity": round(model.perplexity(sequences[split], unigram=True), 4),
        }
    wall_s = time.perf_counter() - t0
    model.meta = {
        "data": _describe(data),
        "split": "by file stem: sha1(stem) mod 10 == 0 test, == 1 validation, else train",
        "files": n_files,
        "notes": n_notes,
        "transitions": {"train": model.transitions, **{s: metrics[s]["transitions"]
                                                         for s in ("validation", "test")}},
        "steps": "one counting pass over the train split",
        "wall_time_s": round(wall_s, 3),
        "metrics": {s: {k: v for k, v in m.items() if k != "transitions"}
                    for s, m in metrics.items()},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)
    log.info("wrote %s (%d bytes)", out, out.stat().st_size)
    click.echo(
        f"markov: {n_files['train']} train files, {model.transitions} transitions, alpha "
        f"{config.alpha:g}, {wall_s:.1f} s; perplexity validation "
        f"{metrics['validation']['perplexity']:.2f} (unigram "
        f"{metrics['validation']['unigram_perplexity']:.2f}), test "
        f"{metrics['test']['perplexity']:.2f} (unigram {metrics['test']['unigram_perplexity']:.2f})"
        f"; wrote {out}"
    )
