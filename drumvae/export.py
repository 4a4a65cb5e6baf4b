"""Export the Drum VAE for the daemon, time its decode, and ship weights, metrics and model card.

One TorchScript artefact, ``drumvae.pt`` (through ``daemon.runtime.save_model``: scripted, never
traced), with the trained layers and three step functions; sampling randomness is an input:

- ``encode(pattern, transform, eps) -> z``: pattern [B, 32, 27] = [hits, velocities, offsets];
  transform [B] long (0 reconstruction, 1 humanize, 2 tap2drum, 3 tap2drum fixed velocity; the
  input transform is applied inside, so pass the plain pattern, or taps on any lane); eps [B, z]:
  z = mu + sigma * eps (eps = 0: z = mu).
- ``decode(z, style, fill, noise, temperature) -> (hit logits, velocity, offset)``, each
  [B, S, 9], free-running over S = noise.shape[1] steps: hit = noise < sigmoid(logit / T);
  noise 0.5 everywhere is the threshold-0.5 decode. ``forward`` is ``decode``.
- ``apply_transform(pattern, transform)``: what the encoder saw.

``drumvae.json`` beside it holds the model arguments, the style names, the class names, the GM
output pitches and the transform names. The eager model is rebuilt from the two files for
evaluation (the artefact's state dict has the eager model's keys).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from daemon import runtime
from drumvae import data
from drumvae.model import TRANSFORM_NAMES, Decoder, DrumVAE, DrumVAEConfig, Encoder, transform
from modelkit.configs import from_dict

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MODEL_FILE = "drumvae.pt"
META_FILE = "drumvae.json"
DECODE_TARGET_MS = 20.0


class DrumVAEStep(nn.Module):
    """The trained encoder and decoder as step functions (the same layers, no state kept)."""

    def __init__(self, model: DrumVAE) -> None:
        super().__init__()
        self.encoder: Encoder = model.encoder
        self.decoder: Decoder = model.decoder
        self.z_dim: int = model.cfg.z_dim
        self.steps: int = model.cfg.steps
        self.num_classes: int = model.cfg.num_classes

    @torch.jit.export
    def apply_transform(self, pattern: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
        return transform(pattern, which)

    @torch.jit.export
    def encode(self, pattern: torch.Tensor, which: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        mu, logvar = self.encoder(transform(pattern, which), which)
        return mu + torch.exp(0.5 * logvar) * eps

    @torch.jit.export
    def decode(self, z: torch.Tensor, style: torch.Tensor, fill: torch.Tensor, noise: torch.Tensor,
               temperature: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.decoder.sample(z, style, fill, noise, temperature)

    def forward(self, z: torch.Tensor, style: torch.Tensor, fill: torch.Tensor, noise: torch.Tensor,
                temperature: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.decode(z, style, fill, noise, temperature)


def export_model(model: DrumVAE, styles: list[str], out_dir: str | Path, extra: dict | None = None) -> list[Path]:
    """Write ``drumvae.pt`` and ``drumvae.json`` for an eager model into ``out_dir``."""
    from dataclasses import asdict

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    for p in model.parameters():  # an artefact for inference: no autograd bookkeeping when it runs
        p.requires_grad_(False)
    runtime.save_model(DrumVAEStep(model).eval(), out / MODEL_FILE)
    meta = {"model_args": asdict(model.cfg), "styles": list(styles), "classes": list(data.CLASS_NAMES),
            "gm_output_pitches": list(data.GM_OUTPUT_PITCHES), "transforms": list(TRANSFORM_NAMES),
            "steps_per_bar": data.STEPS_PER_BAR, **(extra or {})}
    (out / META_FILE).write_text(json.dumps(meta, indent=1))
    return [out / MODEL_FILE, out / META_FILE]


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    from modelkit.checkpoints import load_checkpoint
    from drumvae.train import model_from_checkpoint

    ckpt = load_checkpoint(checkpoint)
    extra = {"step": ckpt["step"], "wall_time_s": ckpt.get("wall_time_s"), "checkpoint": str(checkpoint)}
    return export_model(model_from_checkpoint(ckpt), ckpt["meta"]["styles"], out_dir or WEIGHTS_DIR, extra)


def load_exported(weights_dir: str | Path | None = None) -> tuple[DrumVAE, dict]:
    """The eager model rebuilt from a shipped artefact and its JSON (strict load)."""
    d = Path(weights_dir) if weights_dir else WEIGHTS_DIR
    meta = json.loads((d / META_FILE).read_text())
    scripted = runtime.load_model(d / MODEL_FILE)
    model = DrumVAE(from_dict(DrumVAEConfig, meta["model_args"], "model_args"))
    model.load_state_dict({k: v.clone() for k, v in scripted.state_dict().items()})
    return model.eval(), meta


def bench_decode(weights: str | Path | None = None, runs: int = 300) -> dict:
    """Time ``decode`` of one 2-bar pattern (batch 1, 32 steps) on one thread, after a warm-up."""
    from modelkit.timing import percentiles

    torch.set_num_threads(1)
    m = runtime.load_model(weights or WEIGHTS_DIR / MODEL_FILE)
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(1, int(m.z_dim), generator=gen)
    style, fill = torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long)
    noise = torch.rand(1, int(m.steps), int(m.num_classes), generator=gen)
    with torch.no_grad():
        runtime.warm_up(lambda: m.decode(z, style, fill, noise, 1.0), 20)
        ns = []
        for _ in range(runs):
            t0 = time.perf_counter_ns()
            m.decode(z, style, fill, noise, 1.0)
            ns.append(time.perf_counter_ns() - t0)
    return {**percentiles(ns), "target_ms": DECODE_TARGET_MS, "threads": 1, "batch": 1,
            "steps": int(m.steps), "torch": torch.__version__}


if __name__ == "__main__":
    from drumvae.cli import export_cmd

    export_cmd()
