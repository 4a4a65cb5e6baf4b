"""The ``genie`` command line. Commands load lazily, so ``--help``, ``ports`` and ``doctor``
never import torch or a processor."""

from __future__ import annotations

import importlib
import logging
import sys

import click

from daemon.config import ConfigError, load_config

# name -> (module, attribute); each command lives in daemon/commands/<module>.py
COMMANDS = {
    "run": ("daemon.commands.run", "run"),
    "ports": ("daemon.commands.ports", "ports"),
    "play": ("daemon.commands.play", "play"),
    "panic": ("daemon.commands.panic", "panic"),
    "recover": ("daemon.commands.recover", "recover"),
    "doctor": ("daemon.commands.doctor", "doctor"),
    "train": ("daemon.commands.train", "train"),
    "bench": ("daemon.commands.bench", "bench"),
}


class UserError(Exception):
    """Anything the user can fix; printed as one line, exit code 2."""


def _user_errors() -> tuple[type[BaseException], ...]:
    from daemon.io.midi import PortError
    from daemon.processor import ProcessorError

    return (UserError, ConfigError, PortError, ProcessorError)


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)


class State:
    """Built once by the group and handed to every command."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._config = None

    @property
    def config(self):
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", envvar="GENIE_CONFIG", type=click.Path(dir_okay=False),
              help="TOML config (default: $XDG_CONFIG_HOME/genie/config.toml, /etc/genie/config.toml).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]), help="Logging verbosity.")
@click.version_option(package_name="genie")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, log_level: str) -> None:
    """Genie: play neural MIDI instruments from 8 buttons or a keyboard, live, on virtual ports."""
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.obj = State(config_path)


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except _user_errors() as exc:
        click.echo(f"genie: error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
