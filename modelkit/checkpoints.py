"""Checkpoints: written atomically, read with ``weights_only=True`` (tensors and plain data only).

A checkpoint holds the weights, the optimizer, the step, the RNG state, the model arguments and
the full training config, the history and the wall time, so a run resumes exactly and its model
card can be written from the file alone. Batches must be a pure function of (seed, step): no
NumPy RNG state is kept (it would not load with ``weights_only=True``).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from daemon.runtime import ModelFileError

CKPT = "ckpt.pt"
BEST = "best.pt"


class CheckpointError(ModelFileError):
    """A checkpoint is missing or unreadable; one line naming the file (``genie`` prints it as an
    error, exit code 2)."""


def checkpoint_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / CKPT


def best_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / BEST


def best_or_last(run_dir: str | Path) -> Path | None:
    """A run's ``best.pt``, else its ``ckpt.pt`` (a kept run may hold only the last), else None."""
    return next((p for p in (best_path(run_dir), checkpoint_path(run_dir)) if p.is_file()), None)


def save_atomic(obj: dict, path: str | Path) -> None:
    """``torch.save`` to a temporary file, then rename: a run killed mid-write keeps the old file."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, str(tmp))
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint on the CPU (tensors and plain Python data only)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: not found")
    try:
        # TorchVersion: a str subclass older checkpoints hold (``torch.__version__`` as saved)
        with torch.serialization.safe_globals([torch.torch_version.TorchVersion]):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several kinds for a corrupt or foreign file
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        why = next((ln for ln in lines if "Unsupported global" in ln), lines[0] if lines else type(exc).__name__)
        raise CheckpointError(f"checkpoint {path}: unreadable ({why[:200]})") from None


def slim_checkpoint(ckpt: dict) -> dict:
    """A resume checkpoint with the Adam moments stored in bfloat16 (half the optimizer's bytes).
    Weights, step, RNG state, config and history stay exact; Adam casts the moments back to
    float32 when it loads them, so modelkit resumes from it unchanged (the moments rounded)."""
    opt = ckpt["optimizer"]
    state = {k: {n: (v.to(torch.bfloat16) if torch.is_tensor(v) and v.is_floating_point() and v.dim() else v)
                 for n, v in st.items()} for k, st in opt["state"].items()}
    return {**ckpt, "optimizer": {**opt, "state": state}, "slim": "Adam moments stored as bfloat16"}
