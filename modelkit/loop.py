"""One training loop for every model package: ``train_loop(task, loop_config)``.

The task supplies the model, the batch of each step (a pure function of seed and step, so a run
resumes exactly), the loss and the validation; the loop supplies Adam (or AdamW) with warm-up and
cosine decay, gradient clipping, DistributedDataParallel under ``torchrun`` (gloo on CPU, nccl on
GPUs; each of W processes takes its share of the same global batch, so W processes follow the same
trajectory as one), checkpoints every ``ckpt_every`` steps (``ckpt.pt``: resume; ``best.pt``: the
lowest validation loss), a time limit, a progress bar and the loss curve (``loss.png``).
Only rank 0 writes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from modelkit.checkpoints import best_path, checkpoint_path, load_checkpoint, save_atomic
from modelkit.plots import plot_history

log = logging.getLogger("genie.train")


@dataclass
class LoopConfig:
    out_dir: str = "runs/model"
    steps: int = 10_000  # where to stop
    lr: float = 1e-3  # peak learning rate
    warmup_steps: int = 0  # linear warm-up from 0
    decay: str = "none"  # "none" or "cosine" (to lr * min_lr_ratio at ``steps``)
    decay_start: int = 0  # cosine decay runs from here (or the warm-up's end, if later) to ``steps``
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0  # > 0: AdamW
    grad_clip: float = 1.0  # max gradient norm; 0 = off
    seed: int = 0
    ckpt_every: int = 500
    eval_every: int = 500
    log_every: int = 50
    threads: int = 1  # torch intra-op threads per process
    max_minutes: float = 0.0  # stop (after a checkpoint) when this much time has passed; 0 = no limit
    best_on: str = "loss"  # the validation measure (lower is better) that chooses best.pt


class Task(Protocol):
    """What a model package gives the loop."""

    label: str  # progress bar and plot title

    def build_model(self) -> nn.Module: ...

    def model_args(self) -> dict[str, Any]: ...  # rebuilds the model (``ckpt["model_args"]``)

    def config(self) -> dict[str, Any]: ...  # the package's whole training config, as plain data

    def meta(self) -> dict[str, Any]: ...  # data split and counts, for the card

    def batch(self, step: int, rank: int, world: int) -> Any: ...  # this rank's share of step's batch

    def loss(self, net: nn.Module, batch: Any, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...

    def validate(self, model: nn.Module) -> dict[str, float]: ...  # holds LoopConfig.best_on (lower: better)

    # optional: ``plot_series`` (training keys drawn in loss.png, default ("loss",)),
    # ``plot_ylabel``, and ``saved_model_args(args) -> dict``: a checkpoint's model_args with the
    # settings added to the model since it was written filled in as that run had them


def learning_rate(cfg: LoopConfig, step: int) -> float:
    """Warm-up then constant or cosine decay; a pure function of the step."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.decay == "cosine":
        start = max(cfg.warmup_steps, cfg.decay_start)
        t = min(max(step - start, 0) / max(cfg.steps - start, 1), 1.0)
        floor = cfg.lr * cfg.min_lr_ratio
        return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * t))
    return cfg.lr


def distributed() -> tuple[int, int]:
    """(rank, world size), initialising the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def time_is_up(cfg: LoopConfig, started: float, step: int, world: int, device: torch.device) -> bool:
    """Whether ``max_minutes`` has passed; checked at logging steps, rank 0 decides for all."""
    if not cfg.max_minutes or step % cfg.log_every:
        return False
    late = time.perf_counter() - started > cfg.max_minutes * 60
    if world > 1:
        import torch.distributed as dist

        flag = torch.tensor([int(late)], device=device)
        dist.broadcast(flag, src=0)
        late = bool(flag.item())
    return late


def _to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    return batch


def train_loop(task: Task, cfg: LoopConfig, progress: bool | None = None) -> dict:
    """Train until ``cfg.steps``, resuming from ``out_dir/ckpt.pt`` when it exists; returns the
    last checkpoint dict."""
    rank, world = distributed()
    torch.set_num_threads(cfg.threads)
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    out = Path(cfg.out_dir)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(cfg.seed)
    model = task.build_model()
    opt_cls = torch.optim.AdamW if cfg.weight_decay else torch.optim.Adam
    optimizer = opt_cls(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, best_val, history, wall_s = 0, math.inf, [], 0.0
    ckpt_file = checkpoint_path(out)
    if ckpt_file.is_file():
        ckpt = load_checkpoint(ckpt_file)
        saved = getattr(task, "saved_model_args", dict)(ckpt["model_args"])
        if saved != task.model_args():
            raise ValueError(f"{ckpt_file} was made with model {saved}, not {task.model_args()}")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        step, best_val, history, wall_s = ckpt["step"], ckpt["best_val"], ckpt["history"], ckpt["wall_time_s"]
        torch.set_rng_state(ckpt["rng"]["torch"])
        if rank == 0:
            log.info("resumed %s at step %d", ckpt_file, step)
    model.to(device)
    net: nn.Module = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def weights() -> dict:
        return {k: v.detach().cpu() for k, v in model.state_dict().items()}

    def checkpoint() -> dict:
        ckpt = {"model": weights(), "optimizer": optimizer.state_dict(), "step": step, "best_val": best_val,
                "model_args": task.model_args(), "config": task.config(), "history": history,
                "wall_time_s": wall_s, "rng": {"torch": torch.get_rng_state()}, "meta": task.meta(),
                "torch": str(torch.__version__)}
        if rank == 0:
            save_atomic(ckpt, ckpt_file)
        return ckpt

    show_bar = progress if progress is not None else (rank == 0 and sys.stderr.isatty())
    bar = None
    if show_bar:
        import click

        bar = click.progressbar(length=cfg.steps, label=task.label, file=sys.stderr, show_pos=True, show_eta=True)
        bar.update(step)
    acc: dict[str, float] = {}
    acc_n, t_log = 0, time.perf_counter()
    started = time.perf_counter()
    last = checkpoint() if step == 0 else None
    model.train()
    while step < cfg.steps:
        t0 = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(cfg, step)
        batch = _to(task.batch(step, rank, world), device)
        loss, terms = task.loss(net, batch, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
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
            row = {"step": step, **{k: v / acc_n for k, v in acc.items()}, "ms_per_step": ms,
                   "lr": learning_rate(cfg, step - 1)}
            history.append(row)
            if rank == 0:
                log.info("step %d | %s | %.0f ms/step", step, " ".join(f"{k} {v / acc_n:.4f}" for k, v in acc.items()), ms)
            acc, acc_n, t_log = {}, 0, time.perf_counter()
        out_of_time = time_is_up(cfg, started, step, world, device)
        if step % cfg.eval_every == 0 or step == cfg.steps or out_of_time:
            model.eval()
            with torch.no_grad():
                val = task.validate(model)
            model.train()
            history.append({"step": step, **{f"val_{k}": v for k, v in val.items()}})
            if rank == 0:
                log.info("step %d | validation %s", step, " ".join(f"{k} {v:.4f}" for k, v in val.items()))
            if val[cfg.best_on] < best_val:
                best_val = val[cfg.best_on]
                if rank == 0:
                    save_atomic({"model": weights(), "model_args": task.model_args(), "step": step, "val": val,
                                 "config": task.config(), "meta": task.meta(), "wall_time_s": wall_s},
                                best_path(out))
        if step % cfg.ckpt_every == 0 or step == cfg.steps or out_of_time:
            last = checkpoint()
            if rank == 0:
                plot_history(history, out / "loss.png", f"{task.label}: {step} steps",
                             series=getattr(task, "plot_series", ("loss",)),
                             ylabel=getattr(task, "plot_ylabel", "loss"))
                (out / "history.json").write_text(json.dumps(history))
        if out_of_time:
            break
    if bar is not None:
        bar.render_finish()
    ckpt = last if last is not None else checkpoint()
    if world > 1:  # no rank leaves (and tears its process group down) while rank 0 still writes
        import torch.distributed as dist

        dist.barrier()
    return ckpt
