"""``genie panic``: make a running daemon end every note (it receives SIGUSR1)."""

from __future__ import annotations

import os
import signal

import click

from daemon.commands.run import pidfile_path


@click.command()
@click.pass_obj
def panic(state) -> None:
    """All notes off: note-offs, sustain off and all-notes-off on every channel Genie used."""
    path = pidfile_path(state.config.midi.client_name)
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, signal.SIGUSR1)
    except (OSError, ValueError):
        raise click.ClickException(f"no running Genie daemon found (pid file {path})") from None
    click.echo(f"panic sent to Genie (pid {pid})")
