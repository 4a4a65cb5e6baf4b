"""Where the datasets and the prepared caches live, for every model package."""

from __future__ import annotations

import hashlib
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


# The split of the ASAP/MAESTRO subset by piece (its SOURCE.md), one rule for every model trained
# on it (Piano Genie, the Music Transformer), so no piece is in two splits across models.
MAESTRO_SPLIT_RULE = ('by piece: h = int(sha1(composer + "|" + title), 16) mod 10; '
                      "0 test, 1 validation, else train (the dataset's SOURCE.md)")


def maestro_split(composer: str, title: str) -> str:
    """"train", "validation" or "test" for a piece."""
    h = int(hashlib.sha1(f"{composer}|{title}".encode()).hexdigest(), 16) % 10
    return "test" if h == 0 else "validation" if h == 1 else "train"
