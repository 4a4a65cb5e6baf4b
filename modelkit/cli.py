"""Conveniences the model packages' commands share."""

from __future__ import annotations

import logging
import sys


def setup_logging() -> None:
    """INFO lines with time and logger on stderr, unless the ``genie`` CLI set logging up."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
