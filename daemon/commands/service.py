"""``genie service install``: Genie as a systemd service (user or system unit), with its config
skeleton and the udev rule for game controllers; prints the commands that enable it."""

from __future__ import annotations

from pathlib import Path

import click

from daemon.cli import UserError


@click.group()
def service() -> None:
    """Run Genie as a systemd service that starts itself at boot."""


@service.command()
@click.option("--user", "kind", flag_value="user", default=True,
              help="A user service (JACK or PipeWire in your session) [default].")
@click.option("--system", "kind", flag_value="system",
              help="A hardened system service of its own user (ALSA sequencer; appliance boxes).")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("/"),
              show_default=True, help="Write under this folder instead of / (to look before installing).")
@click.option("--force", is_flag=True, help="Replace a unit or rule that differs (never the config).")
def install(kind: str, root: Path, force: bool) -> None:
    """Write the unit, a config skeleton (where none exists) and the udev rule."""
    from daemon import service as svc

    plan = svc.plan(kind, svc.genie_executable(), Path.home())
    try:
        written, left = svc.install(plan, root, force=force)
    except PermissionError as exc:
        raise UserError(f"{exc.filename}: permission denied (a system service: run it with sudo)") from None
    except (FileExistsError, OSError) as exc:
        raise UserError(str(exc)) from None
    for path in written:
        click.echo(f"wrote {path}")
    for path in left:
        click.echo(f"kept  {path} (already there)")
    for warning in plan.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo("\nThen:")
    for command in plan.commands:
        click.echo(f"  {command}")
