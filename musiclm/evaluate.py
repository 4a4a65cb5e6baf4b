"""Evaluate Music Transformers: NLL per token (nats) on JSB Chorales and MAESTRO, beside the paper.

``run()`` with no paths evaluates the shipped files: a TorchScript artefact in ``musiclm/weights/``
where one is shipped (``musiclm_maestro.pt``; ``musiclm_jsb.pt`` and ``musiclm_jsb_absolute.pt``
if ever exported there), else the checkpoints in ``checkpoints/musiclm/<run>/`` (``best.pt``, else
``ckpt.pt``, whose weights are the best when no best.pt was copied beside it). The
protocol of each dataset is in ``musiclm.data`` and the model card.
"""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path
from typing import Any

import torch

from modelkit.checkpoints import best_or_last, load_checkpoint
from modelkit.plots import pyplot
from musiclm.train import config_from_checkpoint, eval_set, model_from_checkpoint, nll_per_token, preset

log = logging.getLogger("genie.musiclm.evaluate")

PACKAGE = Path(__file__).resolve().parent
WEIGHTS_DIR = PACKAGE / "weights"
SHIPPED_CHECKPOINTS = PACKAGE.parent / "checkpoints" / "musiclm"
RUN_NAMES = ("jsb-relative", "jsb-absolute", "maestro-relative", "maestro-absolute", "maestro-relative-512")
ARTEFACTS = {"jsb-relative": "musiclm_jsb.pt", "jsb-absolute": "musiclm_jsb_absolute.pt",
             "maestro-relative": "musiclm_maestro.pt"}
PAPER = {"jsb-relative": 0.357, "jsb-absolute": 0.417, "maestro-relative": 1.835}
TARGETS = {"jsb-relative": "<= 0.36", "jsb-absolute": "measurably worse than relative",
           "maestro-relative": "<= 2.0"}


def is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("/constants.pkl") or "/code/" in n for n in z.namelist())
    except zipfile.BadZipFile:
        return False


def default_path(name: str, runs: Path = SHIPPED_CHECKPOINTS) -> Path | None:
    """The shipped artefact of run ``name``, else its kept checkpoint (best, else last)."""
    shipped = WEIGHTS_DIR / ARTEFACTS[name]
    return shipped if shipped.is_file() else best_or_last(Path(runs) / name)


def load_any(path: Path) -> tuple[Any, str, int]:
    """(a module whose forward(x) gives (logits, loss), dataset, L) from an artefact or checkpoint."""
    if is_torchscript(path):
        from daemon import runtime

        step = runtime.load_torchscript(path)
        dataset = json.loads(step.vocab_json)["name"].split("-")[0]
        return step.model, ("jsb" if dataset == "jsb" else "maestro"), int(step.max_len)
    ckpt = load_checkpoint(path)
    cfg = config_from_checkpoint(ckpt)
    return model_from_checkpoint(ckpt), cfg.dataset, cfg.model.max_len


def run(jsb_relative: Path | None = None, jsb_absolute: Path | None = None, maestro: Path | None = None,
        split: str = "both", maestro_windows: int = 256, data_dir: Path | None = None, png: Path | None = None,
        runs: Path = SHIPPED_CHECKPOINTS) -> dict:
    """NLL per token of each model found on the requested split(s)."""
    torch.set_num_threads(1)
    splits = ["validation", "test"] if split == "both" else [split]
    paths = {"jsb-relative": jsb_relative, "jsb-absolute": jsb_absolute, "maestro-relative": maestro}
    sources: dict[str, Any] = {}
    result: dict[str, Any] = {"models": {}, "paper_validation_nll": PAPER, "targets": TARGETS,
                              "unit": "nats per token", "maestro_windows_per_split": maestro_windows}
    for name, given in paths.items():
        path = Path(given) if given else default_path(name, runs)
        if path is None or not path.is_file():
            result["models"][name] = {"missing": f"not found: {path}" if path else "no shipped file"}
            continue
        model, dataset, length = load_any(path)
        entry: dict[str, Any] = {"file": str(path), "dataset": dataset, "max_len": length}
        try:
            if dataset not in sources:
                cfg = preset(dataset, data_dir=str(data_dir or ""))
                from musiclm.train import load_source

                sources[dataset] = load_source(cfg)
        except FileNotFoundError as exc:
            entry["error"] = str(exc)
            result["models"][name] = entry
            continue
        cfg = preset(dataset)
        cfg.model.max_len = length
        for s in splits:
            x, y = eval_set(cfg, s, sources[dataset], maestro_windows)
            nll, count = nll_per_token(model, x, y, label=f"{name} {s}")
            entry[s] = {"nll": nll, "tokens": count}
            log.info("%s %s: NLL %.4f over %d tokens", name, s, nll, count)
            if dataset == "maestro":  # the protocol before December 2026, for comparison
                x, y = eval_set(cfg, s, sources[dataset], maestro_windows, stride=length)
                entry[s]["nll_no_overlap"], _ = nll_per_token(model, x, y, label=f"{name} {s}, no overlap")
        result["models"][name] = entry
    rel = result["models"].get("jsb-relative", {}).get("validation", {}).get("nll")
    ab = result["models"].get("jsb-absolute", {}).get("validation", {}).get("nll")
    if rel is not None and ab is not None:
        result["jsb_absolute_minus_relative"] = ab - rel
    if png:
        result["curves_png"] = str(png) if plot_curves(runs, png) else None
    return result


def parent_of(config: dict) -> str | None:
    """The run a training config started from with ``--init-from`` (its folder's name), or None."""
    return Path(config["init_from"]).parent.name if config.get("init_from") else None


def started_from(runs: Path, name: str) -> tuple[str | None, int]:
    """(the run ``name`` started from with ``--init-from``, that run's step), or (None, 0)."""
    ckpt = runs / name / "ckpt.pt"
    pname = parent_of(load_checkpoint(ckpt)["config"]) if ckpt.is_file() else None
    if not pname:
        return None, 0
    pckpt = runs / pname / "ckpt.pt"
    return pname, (load_checkpoint(pckpt)["step"] if pckpt.is_file() else 0)


def plot_curves(runs: Path, path: Path) -> bool:
    """Validation NLL against step of every run in ``runs`` (its history.json), one PNG."""
    plt = pyplot()
    if plt is None:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, prefix in zip(axes, ("jsb", "maestro")):
        tops = []
        for name in RUN_NAMES:
            hist = Path(runs) / name / "history.json"
            if not name.startswith(prefix) or not hist.is_file():
                continue
            h = json.loads(hist.read_text())
            tr = [r for r in h if "loss" in r]
            va = [r for r in h if "val_loss" in r]
            tops += [r["val_loss"] for r in va[1:]]
            parent, at = started_from(Path(runs), name)  # a run started from another goes on from its step
            label = f"{name} validation" + (f" (from {parent} at {at:,}; windows by L/2)" if parent else "")
            line, = ax.plot([at + r["step"] for r in va], [r["val_loss"] for r in va], "o-", ms=3, label=label)
            ax.plot([at + r["step"] for r in tr], [r["loss"] for r in tr], lw=0.6, alpha=0.5,
                    color=line.get_color(), label=f"{name} train")
        for name, v in PAPER.items():
            if name.startswith(prefix):
                ax.axhline(v, ls="--", lw=0.8, color="gray")
                ax.text(0, v, f" paper {name.split('-')[1]} {v}", va="bottom", fontsize=7, color="gray")
        floor = min(v for n, v in PAPER.items() if n.startswith(prefix)) - 0.15
        ax.set_ylim(floor, max(tops) + 0.1 if tops else floor + 1.5)
        ax.set_title("JSB Chorales" if prefix == "jsb" else "MAESTRO (ASAP subset)")
        ax.set_xlabel("step")
        ax.set_ylabel("NLL per token (nats)")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def format_report(result: dict) -> str:
    lines = ["NLL per token (nats)   validation   test     paper (validation)   target"]
    for name, entry in result["models"].items():
        if "missing" in entry or "error" in entry:
            lines.append(f"{name:22s} {entry.get('missing') or entry.get('error')}")
            continue
        v = entry.get("validation", {}).get("nll")
        t = entry.get("test", {}).get("nll")
        f = (lambda x: f"{x:.4f}" if x is not None else "  —   ")
        lines.append(f"{name:22s} {f(v):12s} {f(t):8s} {PAPER[name]:<20} {TARGETS[name]}")
    if "jsb_absolute_minus_relative" in result:
        lines.append(f"JSB absolute - relative (validation): {result['jsb_absolute_minus_relative']:+.4f}")
    return "\n".join(lines)
