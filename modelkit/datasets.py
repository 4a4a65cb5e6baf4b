"""Where the datasets and the prepared caches live, for every model package."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def datasets_root() -> Path:
    """``$GENIE_DATASETS``, else ``shared/datasets`` beside the repository (``../shared/datasets``)."""
    env = os.environ.get("GENIE_DATASETS")
    if env:
        return Path(env).expanduser()
    return REPO.parent / "shared" / "datasets"


def cache_dir(package: str) -> Path:
    """``$XDG_CACHE_HOME/genie/<package>`` (``~/.cache`` by default): prepared arrays."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "genie" / package
