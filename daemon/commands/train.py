"""``genie train``: train a model on a dataset and write the weights a processor loads.

Every model package adds its own ``genie train NAME`` through the entry-point group
``genie.train`` (``markov``, ``pianogenie``, ``drumvae``, ``musiclm``); the daemon imports none.
"""

from __future__ import annotations

import click

from daemon.cli import PluginGroup


@click.group(cls=PluginGroup)
def train() -> None:
    """Train a model and write its weights (and metrics) for a processor to load."""
