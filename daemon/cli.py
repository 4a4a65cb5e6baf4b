"""The ``genie`` command line. Commands load lazily, so ``--help``, ``ports`` and ``doctor``
never import torch or a processor."""

from __future__ import annotations

import importlib
import logging
import sys
from importlib.metadata import entry_points

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
    "learn": ("daemon.commands.learn", "learn"),
    "eval": ("daemon.commands.eval", "eval_"),
    "export": ("daemon.commands.export", "export"),
    "service": ("daemon.commands.service", "service"),
    "monitor": ("daemon.commands.monitor", "monitor"),
}


def under_journald() -> bool:
    """stderr goes to the journal (systemd sets $JOURNAL_STREAM to its device:inode)."""
    import os

    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return os.environ.get("JOURNAL_STREAM", "") == f"{st.st_dev}:{st.st_ino}"


class JournaldFormatter(logging.Formatter):
    """Lines with sd-daemon priority prefixes (``<3>`` error ... ``<7>`` debug)."""

    PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6,
                logging.DEBUG: 7}

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{self.PRIORITY.get(record.levelno, 6)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines() or [""])


# Modules of an extra a command may need; missing, they are one line naming the extra. A
# torch-free install (the onnx extra) plays the models but cannot train, evaluate or export them.
EXTRA_OF = {"torch": "train", "matplotlib": "train", "onnx": "train", "onnxscript": "train",
            "onnxruntime": "onnx"}


class UserError(Exception):
    """Anything the user can fix; printed as one line, exit code 2."""


def _user_errors() -> tuple[type[BaseException], ...]:
    from daemon.io.midi import PortError
    from daemon.processor import ProcessorError
    from daemon.runtime import ModelFileError

    # FileNotFoundError: a file or dataset the user named or should provide (the message names it)
    return (UserError, ConfigError, PortError, ProcessorError, ModelFileError, FileNotFoundError)


def _plugin_commands(group: str) -> dict:
    """Entry points of ``group``, by name (not loaded)."""
    return {ep.name: ep for ep in entry_points(group=group)}


def _load_plugin(ep) -> click.Command:
    try:
        return ep.load()
    except Exception as exc:  # a broken plug-in must not take the other commands down
        raise UserError(f"command {ep.name!r} from {ep.value} failed to import: {exc}") from exc


class PluginGroup(click.Group):
    """A click group whose subcommands can also come from the entry-point group ``genie.<name>``
    (e.g. ``genie.train``: a model package adds ``genie train <model>`` without the daemon
    importing it). Plug-ins are loaded only when their command runs or help lists them."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(_plugin_commands(f"genie.{self.name}")))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        cmd = super().get_command(ctx, name)
        if cmd is None and name in (eps := _plugin_commands(f"genie.{self.name}")):
            cmd = _load_plugin(eps[name])
        return cmd


class LazyGroup(click.Group):
    """The top level: built-in commands by module, plus plug-ins from ``genie.commands``."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(_plugin_commands("genie.commands")))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in COMMANDS:
            module, attr = COMMANDS[name]
            return getattr(importlib.import_module(module), attr)
        plugins = _plugin_commands("genie.commands")
        return _load_plugin(plugins[name]) if name in plugins else None


class State:
    """Built once by the group and handed to every command."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._config = None

    @property
    def config(self):
        """The configuration file's, checked and frozen."""
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    def config_with(self, overrides):
        """The configuration with a command's options written into its raw tables first
        (``overrides(raw)``), so they are checked as the file is; frozen."""
        return load_config(self.config_path, overrides)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", envvar="GENIE_CONFIG", type=click.Path(dir_okay=False),
              help="TOML config (default: $XDG_CONFIG_HOME/genie/config.toml, /etc/genie/config.toml).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]), help="Logging verbosity.")
@click.version_option(package_name="genie-midi", prog_name="genie")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, log_level: str) -> None:
    """Genie: play neural MIDI instruments from 8 buttons or a keyboard, live, on virtual ports."""
    if under_journald():  # journald stamps the time; the prefix gives each line its priority
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JournaldFormatter("%(name)s: %(message)s"))
        logging.basicConfig(level=log_level.upper(), handlers=[handler])
    else:
        logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.obj = State(config_path)


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    try:
        code = cli.main(standalone_mode=False)  # a command's Exit(n) comes back as n here
        if isinstance(code, int) and code:
            sys.exit(code)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:  # what the user typed or gave: one line, exit code 2
        exc.show()
        sys.exit(2)
    except _user_errors() as exc:
        click.echo(f"genie: error: {exc}", err=True)
        sys.exit(2)
    except ModuleNotFoundError as exc:
        if exc.name not in EXTRA_OF:  # not a missing extra: a bug, with its traceback
            raise
        click.echo(f"genie: error: this command needs {exc.name}, which is not installed "
                   f"(pip install 'genie-midi[{EXTRA_OF[exc.name]}]')", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
