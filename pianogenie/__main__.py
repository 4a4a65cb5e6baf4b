"""``python -m pianogenie COMMAND``: the package's commands without the ``genie`` CLI (the same
ones ``genie train/eval/export/bench pianogenie`` and ``genie buttons`` run), also under torchrun:

    python -m pianogenie train --out runs/pianogenie/model
    torchrun --nproc_per_node 2 -m pianogenie train --out runs/pianogenie/model
    python -m pianogenie prepare        # read and cache the dataset once, print its counts
"""

from __future__ import annotations

import json

import click

from pianogenie.bench import bench_cmd
from pianogenie.cli import buttons_cmd, eval_cmd, export_cmd, train_cmd


@click.group()
def main() -> None:
    """Piano Genie: train, evaluate, export, benchmark, and the buttons of a piece."""


@main.command("prepare")
@click.argument("data_dir", required=False, type=click.Path(file_okay=False))
def prepare_cmd(data_dir: str | None) -> None:
    """Read the MAESTRO subset once into the cache; print the split's counts."""
    from pathlib import Path

    from pianogenie import data

    perf = data.prepare(Path(data_dir) if data_dir else None, progress=True)
    click.echo(json.dumps(perf.meta["counts"], indent=1))


for name, cmd in (("train", train_cmd), ("eval", eval_cmd), ("export", export_cmd), ("bench", bench_cmd),
                  ("buttons", buttons_cmd)):
    main.add_command(cmd, name)

if __name__ == "__main__":
    main()
