"""``genie export <model>``: write a trained checkpoint as the artefact the processor loads."""

from __future__ import annotations

import click

from daemon.cli import PluginGroup


@click.group("export", cls=PluginGroup)
def export() -> None:
    """Export a trained model as a TorchScript step function (plug-ins in ``genie.export``)."""
