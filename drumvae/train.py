"""Train the Drum VAE on GMD 2-bar windows: ``train(TrainConfig(...))`` through ``modelkit``.

Each step draws ``batch_size`` training windows and, per window, an input transform (reconstruction,
humanize, tap2drum, tap2drum with fixed velocity; probabilities ``transform_p``): one model serves
every mode. The batch is a pure function of (seed, step), so a run resumes exactly; the loop
(``modelkit.loop.train_loop``) gives Adam with warm-up and cosine decay, gradient clipping, DDP
under torchrun, checkpoints (``ckpt.pt``, ``best.pt`` by validation loss), the time limit, the
progress bar and ``loss.png``.

    genie train drumvae --out runs/drumvae/model --threads 1 --max-minutes 90
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from drumvae import data
from drumvae.model import NUM_TRANSFORMS, RECONSTRUCT, DrumVAE, DrumVAEConfig
from modelkit.configs import from_dict
from modelkit.loop import LoopConfig, train_loop

log = logging.getLogger("genie.drumvae.train")


@dataclass
class Augment:
    """New training windows made from real ones (the encoder must learn to copy, not to recall 16.9k
    windows: trained on those alone, training windows reconstruct at 0.94 and unseen ones at 0.74).

    Both the encoder's input and the target change, so every mode learns from them."""

    bar_mix_p: float = 0.5  # share of windows whose second bar is another window's (same style)
    hit_drop_p: float = 0.3  # share of windows that lose some of their hits
    hit_drop_rate: float = 0.15  # the fraction of hits such a window loses
    lane_mix_p: float = 0.3  # share of windows whose cymbals or toms are another window's (same style)


LEGACY_AUGMENT = {"bar_mix_p": 0.0, "hit_drop_p": 0.0, "lane_mix_p": 0.0}  # runs saved before augmentation
# the instruments that lane mixing takes from another window as a group: the cymbals (closed and
# open hi-hat, crash, ride) and the toms; kick and snare stay, they carry the groove's skeleton
LANE_GROUPS = ((2, 3, 7, 8), (4, 5, 6))


@dataclass
class TrainConfig:
    model: DrumVAEConfig = field(default_factory=DrumVAEConfig)
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(
        out_dir="runs/drumvae/model", steps=18_000, lr=1e-3, warmup_steps=200, decay="cosine",
        min_lr_ratio=0.05, ckpt_every=400, eval_every=400, log_every=50, threads=1))
    batch_size: int = 128  # global batch of windows (split over processes under torchrun)
    # transform drawn per window: reconstruction, humanize, tap2drum, tap2drum fixed velocity
    transform_p: tuple[float, float, float, float] = (0.4, 0.3, 0.15, 0.15)
    augment: Augment = field(default_factory=Augment)
    eval_windows: int = 512  # validation windows (a fixed, evenly spaced subset)
    init_from: str = ""  # a checkpoint whose weights the run starts from (same model), e.g. to fine-tune
    data_dir: str = ""  # "" = $GENIE_DATASETS or ../shared/datasets, then groove-midi-v1.0.0
    cache_dir: str = ""  # "" = $XDG_CACHE_HOME/genie/drumvae

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        if "augment" not in d:  # a run saved before these options resumes as it was trained
            d = {**d, "augment": dict(LEGACY_AUGMENT),
                 "model": {"sched_sampling": 0.0, **d.get("model", {})}}
        elif "lane_mix_p" not in d["augment"]:  # saved before lane mixing
            d = {**d, "augment": {**d["augment"], "lane_mix_p": 0.0}}
        return from_dict(cls, d, "drumvae config")

    def to_dict(self) -> dict:
        return asdict(self)


def stage_model(start: DrumVAEConfig, own: DrumVAEConfig, set_keys: Iterable[str]) -> DrumVAEConfig:
    """The model of a run that starts from another run's weights: that run's (``start``), with the
    training settings (scheduled sampling, dropout, the KL terms) that this run's config sets
    (``set_keys`` of ``own``); the settings that shape the weights stay ``start``'s."""
    return replace(start, **{k: getattr(own, k) for k in set_keys if k not in start.architecture()})


def load_data(cfg: TrainConfig) -> data.Windows:
    return data.prepare(Path(cfg.data_dir) / data.DATASET if cfg.data_dir else None,
                        Path(cfg.cache_dir) if cfg.cache_dir else None)


def tensors(w: data.Windows, which: np.ndarray) -> dict[str, torch.Tensor]:
    return {"x": torch.from_numpy(w.features()), "which": torch.from_numpy(which.astype(np.int64)),
            "style": torch.from_numpy(w.style.astype(np.int64)), "fill": torch.from_numpy(w.fill.astype(np.int64))}


def validation_set(w: data.Windows, n: int) -> tuple[data.Windows, np.ndarray]:
    """An evenly spaced subset of ``w``; window i gets transform i mod 4 (all modes, every time)."""
    idx = np.linspace(0, len(w) - 1, min(n, len(w))).round().astype(int)
    return w.take(idx), np.arange(len(idx)) % NUM_TRANSFORMS


@torch.no_grad()
def estimate(model: DrumVAE, batch: dict[str, torch.Tensor], chunk: int = 256) -> dict[str, float]:
    """Mean loss terms (z = mu) and reconstruction step accuracy (teacher-forced and free-running)."""
    from drumvae.evaluate import step_accuracy

    sums: dict[str, float] = {}
    n = len(batch["x"])
    tf_acc, fr_acc, n_rec = 0.0, 0.0, 0
    for i in range(0, n, chunk):
        b = {k: v[i:i + chunk] for k, v in batch.items()}
        (logits, _, _), loss, terms = model(b["x"], b["which"], b["style"], b["fill"], sample=False)
        for k, v in {"loss": loss, **terms}.items():
            sums[k] = sums.get(k, 0.0) + float(v) * len(b["x"])
        rec = b["which"] == RECONSTRUCT
        if rec.any():
            hits = b["x"][rec][..., :model.cfg.num_classes]
            tf_acc += float(step_accuracy(logits[rec] > 0, hits)) * int(rec.sum())
            fr, _, _ = model.reconstruct(b["x"][rec], b["which"][rec], b["style"][rec], b["fill"][rec])
            fr_acc += float(step_accuracy(fr > 0, hits)) * int(rec.sum())
            n_rec += int(rec.sum())
    out = {k: v / max(n, 1) for k, v in sums.items()}
    out["step_acc_tf"] = tf_acc / max(n_rec, 1)
    out["step_acc_free"] = fr_acc / max(n_rec, 1)
    return out


class DrumTask:
    """The Drum VAE as a ``modelkit.loop.Task``."""

    label = "drumvae"

    def __init__(self, cfg: TrainConfig, windows: data.Windows | None = None) -> None:
        self.cfg = cfg
        w = windows if windows is not None else load_data(cfg)
        self.meta_ = {"dataset": w.meta.get("dataset", ""), "split_rule": w.meta.get("split_rule", ""),
                      "counts": w.meta.get("counts", {}), "styles": list(w.styles)}
        if len(w.styles) > cfg.model.num_styles:
            raise ValueError(f"{len(w.styles)} styles in the data, model has {cfg.model.num_styles}")
        self.train = w.subset("train")
        self.train_x = torch.from_numpy(self.train.features())
        self.train_style = torch.from_numpy(self.train.style.astype(np.int64))
        self.train_fill = torch.from_numpy(self.train.fill.astype(np.int64))
        styles = self.train.style
        self.same_style = [np.flatnonzero(styles == s) for s in range(int(styles.max()) + 1)]
        val, which = validation_set(w.subset("validation"), cfg.eval_windows)
        self.val = tensors(val, which)
        self.p = np.asarray(cfg.transform_p, np.float64)
        self.p = self.p / self.p.sum()

    def build_model(self) -> nn.Module:
        model = DrumVAE(self.cfg.model)
        if self.cfg.init_from:  # a resumed run then loads its own weights over these
            from modelkit.checkpoints import load_checkpoint

            ckpt = load_checkpoint(self.cfg.init_from)
            if DrumVAEConfig(**ckpt["model_args"]).architecture() != self.cfg.model.architecture():
                raise ValueError(f"{self.cfg.init_from} holds another model than this run's")
            model.load_state_dict(ckpt["model"])
        return model

    def model_args(self) -> dict[str, Any]:
        return asdict(self.cfg.model)

    def config(self) -> dict[str, Any]:
        return self.cfg.to_dict()

    def meta(self) -> dict[str, Any]:
        return self.meta_

    def batch(self, step: int, rank: int, world: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.cfg.loop.seed, step])
        idx = rng.integers(0, len(self.train_x), self.cfg.batch_size)
        which = rng.choice(NUM_TRANSFORMS, self.cfg.batch_size, p=self.p)
        x = self.augment(self.train_x[torch.from_numpy(idx)], idx, rng)  # the whole batch: same for any world
        mine = slice(rank * (self.cfg.batch_size // world), (rank + 1) * (self.cfg.batch_size // world))
        t = torch.from_numpy(idx[mine])
        return {"x": x[mine], "which": torch.from_numpy(which[mine]), "style": self.train_style[t],
                "fill": self.train_fill[t]}

    def augment(self, x: torch.Tensor, idx: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """:class:`Augment` applied to a batch ``x`` [B, 32, 27] of training windows ``idx``."""
        a, n, half = self.cfg.augment, self.cfg.model.num_classes, x.shape[1] // 2
        x = x.clone()
        mix = rng.random(len(idx)) < a.bar_mix_p
        for i in np.flatnonzero(mix):
            pool = self.same_style[int(self.train.style[idx[i]])]
            x[i, half:] = self.train_x[int(pool[rng.integers(len(pool))]), half:]
        lanes = rng.random(len(idx)) < a.lane_mix_p if a.lane_mix_p else np.zeros(len(idx), bool)  # older runs: same draws
        for i in np.flatnonzero(lanes):
            pool = self.same_style[int(self.train.style[idx[i]])]
            cls = list(LANE_GROUPS[int(rng.integers(len(LANE_GROUPS)))])
            cols = torch.tensor([c + k * n for k in range(3) for c in cls])
            x[i, :, cols] = self.train_x[int(pool[rng.integers(len(pool))])][:, cols]
        drop = (rng.random((len(idx), 1, 1)) < a.hit_drop_p) & (rng.random((len(idx), x.shape[1], n)) < a.hit_drop_rate)
        if drop.any():
            keep = torch.from_numpy(~np.tile(drop, (1, 1, 3)))
            x = x * keep.to(x.dtype)
        return x

    def loss(self, net: nn.Module, batch: dict[str, torch.Tensor], step: int
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        _, loss, terms = net(batch["x"], batch["which"], batch["style"], batch["fill"])
        return loss, terms

    def validate(self, model: nn.Module) -> dict[str, float]:
        return estimate(model, self.val)


def model_from_checkpoint(ckpt: dict) -> DrumVAE:
    model = DrumVAE(from_dict(DrumVAEConfig, ckpt["model_args"], "model_args"))
    model.load_state_dict(ckpt["model"])  # strict
    return model.eval()


def train(cfg: TrainConfig, windows: data.Windows | None = None, progress: bool | None = None) -> dict:
    """Train until ``cfg.loop.steps`` (resuming from the run folder); returns the last checkpoint."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if cfg.batch_size % world:
        raise ValueError(f"batch size {cfg.batch_size} does not split over {world} processes")
    task = DrumTask(cfg, windows)
    log.info("drumvae: %d training windows, %d parameters", len(task.train_x),
             sum(p.numel() for p in task.build_model().parameters()))
    return train_loop(task, cfg.loop, progress=progress)


if __name__ == "__main__":
    from drumvae.cli import train_cmd

    train_cmd()
