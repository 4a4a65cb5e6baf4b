"""Train Piano Genie (or its no-button baseline): ``train(TrainConfig(...))``.

Adam 3e-4, batch 32 of random augmented 128-note crops, as the paper, on the shared loop
(``modelkit.loop``: exact resume from ``ckpt.pt``, ``best.pt`` by validation cross-entropy,
DistributedDataParallel under ``torchrun``, a time limit, ``loss.png``).

    python -m pianogenie train --out runs/pianogenie/model
    torchrun --nproc_per_node 2 -m pianogenie train --out runs/pianogenie/model
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from modelkit import plots
from modelkit.loop import LoopConfig, distributed, train_loop
from pianogenie import data
from pianogenie.model import PianoGenie, PianoGenieConfig

log = logging.getLogger("genie.pianogenie.train")


@dataclass
class TrainConfig:
    out_dir: str = "runs/pianogenie/model"
    model: PianoGenieConfig = field(default_factory=PianoGenieConfig)
    steps: int = 200_000  # where to stop; the paper's checkpoint ran 166k steps
    batch_size: int = 32  # the global batch; split over processes under torchrun
    lr: float = 3e-4
    decay_from: int = 0  # 0: a constant learning rate, as the paper; N: cosine decay from step N to `steps`, to a tenth
    seed: int = 0
    ckpt_every: int = 500
    eval_every: int = 500
    eval_windows: int = 256  # validation windows per evaluation (a fixed subset, same every time)
    log_every: int = 50
    threads: int = 2  # torch intra-op threads per process
    data_dir: str = ""  # "" = $GENIE_DATASETS or ../shared/datasets, then asap-maestro-subset
    cache_dir: str = ""  # "" = $XDG_CACHE_HOME/genie/pianogenie
    max_minutes: float = 0.0  # stop (after a checkpoint) when this much time has passed; 0 = no limit

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Strict: an unknown key (a typo, a config of another model) is an error."""
        from modelkit.configs import from_dict

        return from_dict(cls, d, "training config")

    def to_dict(self) -> dict:
        return asdict(self)


# ---- pieces ------------------------------------------------------------------------------


def load_data(cfg: TrainConfig) -> data.Performances:
    return data.prepare(Path(cfg.data_dir) / data.DATASET if cfg.data_dir else None,
                        Path(cfg.cache_dir) if cfg.cache_dir else None)


def validation_windows(perf: data.Performances, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    keys, dts = data.eval_windows(perf.subset("validation"))
    idx = np.linspace(0, len(keys) - 1, min(n, len(keys))).round().astype(int) if len(keys) else []
    return torch.from_numpy(keys[idx]), torch.from_numpy(dts[idx])


@torch.no_grad()
def estimate(model: PianoGenie, keys: torch.Tensor, dts: torch.Tensor, batch_size: int = 64) -> dict:
    """Mean loss terms over windows, in eval mode (each window weighs the same)."""
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    for i in range(0, len(keys), batch_size):
        k, d = keys[i:i + batch_size], dts[i:i + batch_size]
        _, loss, terms = model(k, d, targets=k)
        for name, v in {"loss": loss, **terms}.items():
            sums[name] = sums.get(name, 0.0) + float(v) * len(k)
    model.train(was_training)
    return {name: s / max(len(keys), 1) for name, s in sums.items()}


def checkpoint_path(out_dir: str | Path) -> Path:
    return Path(out_dir) / "ckpt.pt"


def load_checkpoint(path: str | Path) -> dict:
    """Tensors and plain data only (``modelkit.checkpoints``): a checkpoint runs no code."""
    from modelkit.checkpoints import load_checkpoint as load

    return load(path)


def model_from_checkpoint(ckpt: dict) -> PianoGenie:
    model = PianoGenie(PianoGenieConfig(**ckpt["model_args"]))  # older runs lack the VQ keys: IQAE
    model.load_state_dict(ckpt["model"])  # strict
    return model.eval()


def plot_history(history: list[dict], path: Path, title: str = "") -> bool:
    """Training and validation cross-entropy (and the contour penalty) against step, as a PNG."""
    return plots.plot_history(history, path, title, series=("ce", "contour"), ylabel="nats per note")


# ---- the loop (modelkit.loop) ---------------------------------------------------------------


class PianoGenieTask:
    """Piano Genie for ``modelkit.loop.train_loop``: random augmented 128-note crops (the batch of
    step s is a pure function of (seed, s)); best.pt by validation cross-entropy."""

    plot_series = ("ce", "contour")
    plot_ylabel = "nats per note"

    def __init__(self, cfg: TrainConfig, perf: data.Performances) -> None:
        self.cfg = cfg
        self.perf = perf
        self.label = "baseline" if cfg.model.baseline else "pianogenie-vq" if cfg.model.vq else "pianogenie"
        self.sampler = data.TrainSampler(perf.subset("train"), cfg.batch_size, cfg.seed)
        self.val_keys, self.val_dts = validation_windows(perf, cfg.eval_windows)

    def build_model(self) -> PianoGenie:
        return PianoGenie(self.cfg.model)

    def model_args(self) -> dict:
        return asdict(self.cfg.model)

    def saved_model_args(self, args: dict) -> dict:
        """A run from before the VQ-VAE and no-time options lacks their keys: it had the defaults."""
        return asdict(PianoGenieConfig(**args))

    def config(self) -> dict:
        return self.cfg.to_dict()

    def meta(self) -> dict:
        return {"split_rule": self.perf.meta.get("split_rule", ""), "counts": self.perf.meta.get("counts", {})}

    def batch(self, step: int, rank: int, world: int) -> tuple[torch.Tensor, torch.Tensor]:
        keys, dts = self.sampler.batch(step)
        per = self.cfg.batch_size // world
        return (torch.from_numpy(keys[rank * per:(rank + 1) * per]),
                torch.from_numpy(dts[rank * per:(rank + 1) * per]))

    def loss(self, net, batch, step: int):
        keys, dts = batch
        _, loss, terms = net(keys, dts, targets=keys)
        return loss, terms

    def validate(self, model: PianoGenie) -> dict:
        device = next(model.parameters()).device
        return estimate(model, self.val_keys.to(device), self.val_dts.to(device))


def loop_config(cfg: TrainConfig) -> LoopConfig:
    """The paper's optimiser: Adam at a constant 3e-4, no clipping; with ``decay_from``, a cosine
    tail from that step to the end (a run's last stretch at a falling rate)."""
    return LoopConfig(out_dir=cfg.out_dir, steps=cfg.steps, lr=cfg.lr, seed=cfg.seed,
                      decay="cosine" if cfg.decay_from else "none", decay_start=cfg.decay_from,
                      ckpt_every=cfg.ckpt_every, eval_every=cfg.eval_every, log_every=cfg.log_every,
                      threads=cfg.threads, max_minutes=cfg.max_minutes, grad_clip=0.0, best_on="ce")


def train(cfg: TrainConfig, perf: data.Performances | None = None, progress: bool | None = None) -> dict:
    """Train until ``cfg.steps`` (resuming from ``out_dir/ckpt.pt`` when it exists); returns the
    last checkpoint dict. ``perf`` lets tests pass prepared data instead of the dataset."""
    _, world = distributed()
    if cfg.batch_size % world:
        raise ValueError(f"batch size {cfg.batch_size} does not split over {world} processes")
    task = PianoGenieTask(cfg, perf if perf is not None else load_data(cfg))
    return train_loop(task, loop_config(cfg), progress=progress)
