"""Train a Music Transformer on JSB Chorales or MAESTRO: ``train(TrainConfig(...))``.

The loop is modelkit's (``train_loop``: Adam/AdamW, warm-up and cosine decay, gradient clipping,
DDP under torchrun, exact resume from ``ckpt.pt``, ``best.pt`` at the lowest validation NLL, a
time limit, a progress bar and ``loss.png``); this module supplies the task: the data, the loss
(mean NLL in nats per token, PAD not scored) and the validation NLL per token.

    python -m musiclm.train --dataset jsb --position relative      # = genie train musiclm ...
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from modelkit import configs
from modelkit.checkpoints import checkpoint_path, load_checkpoint
from modelkit.loop import LoopConfig, train_loop
from musiclm import data
from musiclm import tokenizer as tk
from musiclm.model import MusicTransformer, MusicTransformerConfig, grow_context

log = logging.getLogger("genie.musiclm.train")


@dataclass
class TrainConfig:
    out_dir: str = "runs/musiclm/maestro-relative"
    dataset: str = "maestro"  # "jsb" (Jsb16thSeparated.npz) or "maestro" (the ASAP subset)
    model: MusicTransformerConfig = field(default_factory=MusicTransformerConfig)
    steps: int = 20_000  # where the cosine schedule ends; --max-minutes usually stops first
    batch_size: int = 16  # sequences of model.max_len tokens (the global batch under torchrun)
    lr: float = 1e-3  # peak; Adam(W)
    warmup_steps: int = 200
    decay: str = "cosine"
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0  # > 0: AdamW (regularisation for the small JSB set)
    grad_clip: float = 1.0
    seed: int = 0
    ckpt_every: int = 100
    eval_every: int = 100
    log_every: int = 10
    threads: int = 1
    max_minutes: float = 0.0  # stop (after a checkpoint) when this much time has passed; 0 = no limit
    transpose: tuple[int, int] = (-3, 3)  # semitones, inclusive (both datasets)
    stretch: tuple[float, float] = (0.95, 1.05)  # MAESTRO only
    eval_windows: int = 48  # MAESTRO validation windows per evaluation (fixed subset); JSB: all of it
    data_dir: str = ""  # a datasets root; "" = $GENIE_DATASETS or ../shared/datasets
    cache_dir: str = ""  # "" = $XDG_CACHE_HOME/genie/musiclm
    init_from: str = ""  # a checkpoint whose weights start this run (grown to its L): a new run, step 0

    def loop(self) -> LoopConfig:
        keys = set(LoopConfig.__dataclass_fields__) & set(type(self).__dataclass_fields__)
        return LoopConfig(**{k: getattr(self, k) for k in keys})


def preset(dataset: str, position: str = "relative", **overrides: Any) -> TrainConfig:
    """The sizes we train on one CPU thread: JSB tiny, MAESTRO small (see the model card)."""
    if dataset == "jsb":
        model = MusicTransformerConfig(vocab_size=tk.JSB_VOCAB_SIZE, max_len=256, n_layer=3, n_head=4,
                                       d_model=128, d_ff=512, dropout=0.2, position=position)
        cfg = TrainConfig(out_dir=f"runs/musiclm/jsb-{position}", dataset="jsb", model=model,
                          batch_size=16, lr=1e-3, weight_decay=0.05, steps=4000)
    elif dataset == "maestro":
        model = MusicTransformerConfig(vocab_size=tk.PERFORMANCE_VOCAB_SIZE, max_len=256, n_layer=4,
                                       n_head=4, d_model=192, d_ff=768, dropout=0.1, position=position)
        cfg = TrainConfig(out_dir=f"runs/musiclm/maestro-{position}", dataset="maestro", model=model,
                          batch_size=16, lr=1e-3, steps=4000)
    else:
        raise ValueError(f"dataset must be 'jsb' or 'maestro', not {dataset!r}")
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg


@torch.no_grad()
def nll_per_token(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int = 16,
                  label: str = "") -> tuple[float, int]:
    """(mean NLL in nats over the non-PAD targets, their count), in eval mode; a progress bar
    labelled ``label`` on a terminal."""
    import sys

    import click

    was = model.training
    model.eval()
    total, count = 0.0, 0
    starts = range(0, len(inputs), batch_size)
    bar = click.progressbar(starts, label=label, file=sys.stderr) if label and sys.stderr.isatty() else None
    for i in (bar if bar is not None else starts):
        x, y = inputs[i:i + batch_size], targets[i:i + batch_size]
        logits, _ = model(x)
        nll = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                                          ignore_index=tk.PAD, reduction="sum")
        total += float(nll)
        count += int((y != tk.PAD).sum())
    if bar is not None:
        bar.render_finish()
    model.train(was)
    return total / max(count, 1), count


def eval_set(cfg: TrainConfig, split: str, source: Any, limit: int = 0, stride: int = 0
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """The evaluation windows of a split (``source``: JSB chorales dict or Performances); MAESTRO:
    ``limit`` windows at most, stepping by ``stride`` (default L/2; see ``data.maestro_windows``)."""
    if cfg.dataset == "jsb":
        x, y = data.jsb_windows(source[split], cfg.model.max_len)
    else:
        x, y = data.maestro_windows(source.subset(split), cfg.model.max_len, limit, stride)
    return torch.from_numpy(x), torch.from_numpy(y)


def load_source(cfg: TrainConfig) -> Any:
    root = Path(cfg.data_dir) if cfg.data_dir else None
    if cfg.dataset == "jsb":
        return data.load_jsb(root / data.JSB_DATASET if root else None)
    return data.prepare_maestro(root / data.MAESTRO_DATASET if root else None, cfg.cache_dir or None)


class MusicLMTask:
    """What modelkit's loop needs: model, batches, loss, validation."""

    def __init__(self, cfg: TrainConfig, source: Any = None) -> None:
        self.cfg = cfg
        self.label = f"musiclm {cfg.dataset}-{cfg.model.position}"
        self.source = source if source is not None else load_source(cfg)
        L = cfg.model.max_len
        if cfg.dataset == "jsb":
            self.sampler: Any = data.JsbSampler(self.source["train"], cfg.batch_size, L, cfg.seed, cfg.transpose)
            self._meta = data.jsb_meta(self.source)
        else:
            self.sampler = data.MaestroSampler(self.source.subset("train"), cfg.batch_size, L, cfg.seed,
                                               data.Augment(cfg.transpose, cfg.stretch))
            self._meta = data.maestro_meta(self.source)
        self.val = eval_set(cfg, "validation", self.source, cfg.eval_windows)

    def build_model(self) -> nn.Module:
        model = MusicTransformer(self.cfg.model)
        if self.cfg.init_from and not checkpoint_path(Path(self.cfg.out_dir)).is_file():
            parent = load_checkpoint(self.cfg.init_from)
            model.load_state_dict(grow_context(parent["model"], self.cfg.model.max_len))  # strict
            log.info("%s starts from %s (step %s, L %d -> %d)", self.label, self.cfg.init_from, parent.get("step"),
                     parent["model_args"]["max_len"], self.cfg.model.max_len)
        return model

    def model_args(self) -> dict[str, Any]:
        return configs.to_dict(self.cfg.model)

    def config(self) -> dict[str, Any]:
        return configs.to_dict(self.cfg)

    def meta(self) -> dict[str, Any]:
        return self._meta

    def batch(self, step: int, rank: int, world: int) -> torch.Tensor:
        b = self.sampler.batch(step)
        per = len(b) // world
        return torch.from_numpy(np.ascontiguousarray(b[rank * per:(rank + 1) * per]))

    def loss(self, net: nn.Module, batch: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        _, loss = net(batch[:, :-1], batch[:, 1:])
        return loss, {}

    def validate(self, model: nn.Module) -> dict[str, float]:
        nll, _ = nll_per_token(model, *self.val)
        return {"loss": nll}


def train(cfg: TrainConfig, source: Any = None, progress: bool | None = None) -> dict:
    """Train until ``cfg.steps`` or ``cfg.max_minutes`` (resuming from ``out_dir/ckpt.pt``);
    returns the last checkpoint. ``source`` lets tests pass data instead of the datasets."""
    if cfg.batch_size % int(os.environ.get("WORLD_SIZE", "1")):
        raise ValueError(f"batch size {cfg.batch_size} does not split over the processes")
    torch.set_num_threads(cfg.threads)
    task = MusicLMTask(cfg, source)
    log.info("%s: %d parameters, vocab %d, L %d", task.label, MusicTransformer(cfg.model).num_params(),
             cfg.model.vocab_size, cfg.model.max_len)
    return train_loop(task, cfg.loop(), progress)


def config_from_checkpoint(ckpt: dict) -> TrainConfig:
    return configs.from_dict(TrainConfig, ckpt["config"], "checkpoint config")


def model_from_checkpoint(ckpt: dict) -> MusicTransformer:
    model = MusicTransformer(configs.from_dict(MusicTransformerConfig, ckpt["model_args"], "model_args"))
    model.load_state_dict(ckpt["model"])  # strict
    return model.eval()


if __name__ == "__main__":
    from musiclm.cli import train_cmd

    train_cmd()
