"""Loss curves as PNG (matplotlib, the ``train`` extra; skipped without it)."""

from __future__ import annotations

from pathlib import Path


def pyplot():
    """matplotlib's pyplot on the Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def plot_history(history: list[dict], path: str | Path, title: str = "", series: tuple[str, ...] = ("loss",),
                 ylabel: str = "loss") -> bool:
    """Training rows (``series`` keys) and validation rows (``val_`` + key) against step."""
    plt = pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in series:
        train = [h for h in history if key in h]
        val = [h for h in history if f"val_{key}" in h]
        if train:
            ax.plot([h["step"] for h in train], [h[key] for h in train], lw=0.8, label=f"train {key}")
        if val:
            ax.plot([h["step"] for h in val], [h[f"val_{key}"] for h in val], "o-", ms=3,
                    label=f"validation {key}")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
