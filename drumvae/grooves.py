"""The groove bank: latent codes of training windows, by style, shipped beside the weights.

A VAE trained with free bits leaves its prior poorly covered, so "a new groove" draws from the
aggregate posterior instead: the z of a real training window of the chosen style (a beat, not a
fill) plus a little noise (``drumvae.processor``). ``write_bank`` encodes up to ``per_style``
windows per style, picked evenly, with the exported encoder (z = mu).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from daemon import runtime
from drumvae import data
from drumvae.processor import GROOVES_FILE, RECONSTRUCT

MODEL_FILE = "drumvae.pt"


def write_bank(weights_dir: str | Path, windows: data.Windows, per_style: int = 48) -> Path:
    """Encode training beats per style into ``weights_dir/drumvae_grooves.json``."""
    weights_dir = Path(weights_dir)
    model = runtime.load_torchscript(weights_dir / MODEL_FILE)
    train = windows.subset("train")
    bank: dict[str, list[list[float]]] = {}
    with torch.inference_mode():
        for i, style in enumerate(train.styles):
            idx = np.nonzero((train.style == i) & (train.fill == 0))[0]
            if not len(idx):
                continue
            pick = idx[np.linspace(0, len(idx) - 1, min(per_style, len(idx))).round().astype(int)]
            x = torch.from_numpy(train.take(pick).features())
            z = model.encode(x, torch.full((len(pick),), RECONSTRUCT, dtype=torch.long),
                             torch.zeros(len(pick), int(model.z_dim)))
            bank[style] = [[round(float(v), 5) for v in row] for row in z.numpy()]
    path = weights_dir / GROOVES_FILE
    path.write_text(json.dumps({"z": bank, "per_style": per_style, "split": "train, beats only"}))
    return path
