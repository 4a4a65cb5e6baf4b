"""``genie ports``: list the MIDI ports Genie can see (never imports torch)."""

from __future__ import annotations

import click

from daemon.io.midi import API_NAMES, choose_api, list_ports


@click.command()
@click.option("--api", type=click.Choice(["auto", *API_NAMES]), help="MIDI API to list.")
@click.pass_obj
def ports(state, api: str | None) -> None:
    """List MIDI input and output ports (for --input and --connect)."""
    api_name = choose_api(api or state.config.midi.api)
    ins, outs = list_ports(api_name)
    click.echo(f"API: {api_name}")
    click.echo("Inputs Genie can read (--input):")
    for name in ins:
        click.echo(f"  {name}")
    click.echo("Outputs Genie can play into (--connect):")
    for name in outs:
        click.echo(f"  {name}")
