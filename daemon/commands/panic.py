"""``genie panic``: make a running daemon end every note (it receives SIGUSR1)."""

from __future__ import annotations

import os
import signal

import click

from daemon.control import ControlError, daemon_pid


@click.command()
@click.pass_obj
def panic(state) -> None:
    """All notes off: note-offs, sustain off and all-notes-off on every channel Genie may use."""
    try:
        pid = daemon_pid(state.config.midi.client_name)
        os.kill(pid, signal.SIGUSR1)
    except (ControlError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"panic sent to Genie (pid {pid})")
