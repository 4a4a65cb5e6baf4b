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


def asap_cache(data_dir: Path, cache: Path, prefix: str) -> tuple[Path, Path, Path, str]:
    """The ASAP subset's metadata file (FileNotFoundError, one line, when missing), the
    (.npz, .json) cache of a package's prepared arrays keyed by the metadata file's hash, and
    that hash."""
    metadata = Path(data_dir) / "metadata.csv"
    if not metadata.is_file():
        raise FileNotFoundError(f"{metadata} not found (set GENIE_DATASETS or --data)")
    fingerprint = hashlib.sha1(metadata.read_bytes()).hexdigest()[:12]
    stem = Path(cache) / f"{prefix}-{fingerprint}"
    return metadata, stem.with_suffix(".npz"), stem.with_suffix(".json"), fingerprint
