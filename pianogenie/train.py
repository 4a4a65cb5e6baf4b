"""Train Piano Genie (or its no-button baseline): ``train(TrainConfig(...))``.

Adam 3e-4, batch 32 of random augmented 128-note crops, as the paper. Every ``ckpt_every`` steps
the run writes ``ckpt.pt`` in its folder: weights, optimizer, step, RNG state, the training and
model configs, the loss history and the wall time so far, so that a run stopped at any point
resumes exactly (the batch of step s is a pure function of (seed, s)) and a model card can be
written from the checkpoint alone. ``best.pt`` keeps the weights with the lowest validation
cross-entropy. The loss curve is drawn to ``loss.png`` when matplotlib is installed.

Under ``torchrun`` (WORLD_SIZE > 1) the run uses DistributedDataParallel (gloo on CPU, nccl on
GPUs): each of the W processes takes its share of the same global batch, so W processes follow
the same trajectory as one. Only rank 0 writes.

    python -m pianogenie train --out runs/pianogenie/model
    torchrun --nproc_per_node 2 -m pianogenie train --out runs/pianogenie/model
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from modelkit import plots
from modelkit.checkpoints import save_atomic
from modelkit.loop import distributed, time_is_up
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
    model = PianoGenie(PianoGenieConfig(**ckpt["model_args"]))
    model.load_state_dict(ckpt["model"])  # strict
    return model.eval()


def plot_history(history: list[dict], path: Path, title: str = "") -> bool:
    """Training and validation cross-entropy (and the contour penalty) against step, as a PNG."""
    return plots.plot_history(history, path, title, series=("ce", "contour"), ylabel="nats per note")


# ---- the loop ----------------------------------------------------------------------------


def train(cfg: TrainConfig, perf: data.Performances | None = None, progress: bool | None = None) -> dict:
    """Train until ``cfg.steps`` (resuming from ``out_dir/ckpt.pt`` when it exists); returns the
    last checkpoint dict. ``perf`` lets tests pass prepared data instead of the dataset."""
    rank, world = distributed()
    if cfg.batch_size % world:
        raise ValueError(f"batch size {cfg.batch_size} does not split over {world} processes")
    torch.set_num_threads(cfg.threads)
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    out = Path(cfg.out_dir)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)

    perf = perf if perf is not None else load_data(cfg)
    sampler = data.TrainSampler(perf.subset("train"), cfg.batch_size, cfg.seed)
    val_keys, val_dts = validation_windows(perf, cfg.eval_windows)

    torch.manual_seed(cfg.seed)
    model = PianoGenie(cfg.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    step, best_val, history, wall_s = 0, math.inf, [], 0.0
    ckpt_file = checkpoint_path(out)
    if ckpt_file.is_file():
        ckpt = load_checkpoint(ckpt_file)
        if ckpt["model_args"] != asdict(cfg.model):
            raise ValueError(f"{ckpt_file} was made with model {ckpt['model_args']}, not {asdict(cfg.model)}")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        step, best_val, history, wall_s = ckpt["step"], ckpt["best_val"], ckpt["history"], ckpt["wall_time_s"]
        torch.set_rng_state(ckpt["rng"]["torch"])
        if rank == 0:
            log.info("resumed %s at step %d", ckpt_file, step)
    model.to(device)
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def checkpoint() -> dict:
        ckpt = {"model": {k: v.cpu() for k, v in model.state_dict().items()},
                "optimizer": optimizer.state_dict(), "step": step, "best_val": best_val,
                "model_args": asdict(cfg.model), "config": cfg.to_dict(), "history": history,
                "wall_time_s": wall_s, "rng": {"torch": torch.get_rng_state()},
                "split": perf.meta.get("split_rule", ""), "data": perf.meta.get("counts", {}),
                "torch": str(torch.__version__)}
        if rank == 0:
            save_atomic(ckpt, ckpt_file)
        return ckpt

    show_bar = progress if progress is not None else (rank == 0 and sys.stderr.isatty())
    bar = None
    if show_bar:
        import click

        bar = click.progressbar(length=cfg.steps, label="pianogenie" if not cfg.model.baseline else "baseline",
                                file=sys.stderr, show_pos=True, show_eta=True)
        bar.update(step)
    per = cfg.batch_size // world
    acc: dict[str, float] = {}
    acc_n, t_log = 0, time.perf_counter()
    started = time.perf_counter()
    last = checkpoint() if step == 0 else None
    while step < cfg.steps:
        t0 = time.perf_counter()
        keys, dts = sampler.batch(step)
        keys = torch.from_numpy(keys[rank * per:(rank + 1) * per]).to(device)
        dts = torch.from_numpy(dts[rank * per:(rank + 1) * per]).to(device)
        _, loss, terms = net(keys, dts, targets=keys)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        wall_s += time.perf_counter() - t0
        for name, v in {"loss": loss, **terms}.items():
            acc[name] = acc.get(name, 0.0) + float(v.detach())
        acc_n += 1
        if bar is not None:
            bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.steps:
            ms = (time.perf_counter() - t_log) / acc_n * 1e3
            row = {"step": step, **{k: v / acc_n for k, v in acc.items()}, "ms_per_step": ms}
            history.append(row)
            if rank == 0:
                parts = " ".join(f"{k} {v / acc_n:.4f}" for k, v in acc.items())
                log.info("step %d | %s | %.0f ms/step", step, parts, ms)
            acc, acc_n, t_log = {}, 0, time.perf_counter()
        out_of_time = time_is_up(cfg, started, step, world, device)
        if step % cfg.eval_every == 0 or step == cfg.steps or out_of_time:
            val = estimate(model, val_keys.to(device), val_dts.to(device))
            history.append({"step": step, **{f"val_{k}": v for k, v in val.items()}})
            if rank == 0:
                log.info("step %d | validation %s", step, " ".join(f"{k} {v:.4f}" for k, v in val.items()))
            if val["ce"] < best_val:
                best_val = val["ce"]
                if rank == 0:
                    save_atomic({"model": {k: v.cpu() for k, v in model.state_dict().items()},
                           "model_args": asdict(cfg.model), "step": step, "val": val,
                           "config": cfg.to_dict(), "wall_time_s": wall_s}, out / "best.pt")
        if step % cfg.ckpt_every == 0 or step == cfg.steps or out_of_time:
            last = checkpoint()
            if rank == 0:
                plot_history(history, out / "loss.png",
                             f"Piano Genie{' baseline' if cfg.model.baseline else ''}: {step} steps")
                (out / "history.json").write_text(json.dumps(history))
        if out_of_time:
            break
    if bar is not None:
        bar.render_finish()
    return last if last is not None else checkpoint()
