"""Evaluation of the Drum VAE on the GMD test split (filled in below)."""

from __future__ import annotations

import torch


def step_accuracy(pred_hits: torch.Tensor, true_hits: torch.Tensor) -> torch.Tensor:
    """Fraction of steps where all 9 hit bits match. [..., S, 9] bool/float -> scalar."""
    return (pred_hits.bool() == true_hits.bool()).all(-1).float().mean()
