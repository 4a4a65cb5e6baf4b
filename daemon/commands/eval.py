"""``genie eval <model>``: a model package's paper metrics (its plug-in in ``genie.eval``)."""

from __future__ import annotations

import click

from daemon.cli import PluginGroup


@click.group("eval", cls=PluginGroup)
def eval_() -> None:
    """Evaluate a model on its test split (each takes --json)."""
