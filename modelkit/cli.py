"""Conveniences the model packages' commands share."""

from __future__ import annotations

import logging
import sys


def setup_logging() -> None:
    """INFO lines with time and logger on stderr, unless the ``genie`` CLI set logging up."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")


FORMATS = ("both", "torchscript", "onnx")


def format_option(fn):
    """``--format``: what ``genie export MODEL`` writes. ``both`` (the default) keeps the ONNX
    files from going stale beside new TorchScript ones; ``onnx`` converts the TorchScript
    artefacts already in the folder, with no checkpoint."""
    import click

    return click.option("--format", "fmt", type=click.Choice(FORMATS), default="both", show_default=True,
                        help="TorchScript (the default runtime), ONNX (the torch-free runtime, "
                             "converted from the TorchScript artefact and checked against it), or both.")(fn)


def write_onnx(export_onnx, where) -> None:
    """Run a package's ``export_onnx(where)`` and say what it wrote, in one line per file; a failed
    conversion (no ``onnxscript``, or a parity check beyond tolerance) is one line and exit 1."""
    import click

    try:
        written = export_onnx(where)
    except ImportError as exc:
        raise click.ClickException(f"the ONNX export needs the train extra (onnx, onnxscript): {exc}") from None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    for path, diff in written:
        click.echo(f"wrote {path} (agrees with TorchScript to {diff:.1e})")
