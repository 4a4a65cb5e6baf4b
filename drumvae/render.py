"""Drum grids as pictures: 9 classes x 16th steps, velocity as shade, offset as a shift.

    python -m drumvae.render PATTERN.mid --png grid.png [--bars 2]

(``genie render`` would mount this through the ``genie.commands`` entry-point group, which belongs
to the daemon's CLI; until it is added, run the module.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from drumvae import data


def draw_grid(ax, hits: np.ndarray, velocities: np.ndarray, offsets: np.ndarray, title: str = "") -> None:
    """One grid on a matplotlib axis: a box per hit, darker = louder, shifted left when early."""
    from matplotlib.patches import Rectangle

    steps, n = hits.shape
    for s in range(steps):
        if s % 4 == 0:
            ax.axvline(s, color="0.85" if s % 16 else "0.5", lw=0.6 if s % 16 else 1.0, zorder=0)
    for s, c in zip(*np.nonzero(hits)):
        x = s - float(offsets[s, c]) / 2.0  # + offset = early = left
        shade = 0.15 + 0.85 * float(velocities[s, c])
        ax.add_patch(Rectangle((x - 0.4, c - 0.4), 0.8, 0.8, color=(0.1, 0.2, 0.6, shade), lw=0))
    ax.set_xlim(-0.8, steps - 0.2)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_yticks(range(n), data.CLASS_NAMES, fontsize=7)
    ax.set_xticks(range(0, steps + 1, 4))
    ax.set_xlabel("16th step")
    if title:
        ax.set_title(title, fontsize=9)


def render_png(panels: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]], path: str | Path) -> bool:
    """Panels of (title, hits, velocities, offsets) stacked in one PNG; False without matplotlib."""
    from modelkit.plots import pyplot

    plt = pyplot()
    if plt is None:
        return False
    steps = max(p[1].shape[0] for p in panels)
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(6.0, steps * 0.22), 2.3 * len(panels)), squeeze=False)
    for ax, (title, h, v, o) in zip(axes[:, 0], panels):
        draw_grid(ax, h, v, o, title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def grid_of_file(path: str | Path, bars: int = 0) -> data.Grid:
    """A MIDI file on the 16th grid (all of it, or its first ``bars``)."""
    ticks, pitches, vels, tpb, end, _ = data.read_notes(path)
    table = data.pitch_to_class()
    keep = np.array([p in table for p in pitches.tolist()], bool)
    n_bars = bars or max(data.num_bars(end, tpb), 1)
    return data.to_grid(ticks[keep], pitches[keep], vels[keep], tpb, n_bars * data.STEPS_PER_BAR)


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("midi", type=Path)
    ap.add_argument("--png", type=Path, required=True)
    ap.add_argument("--bars", type=int, default=0, help="only the first N bars (0: all)")
    args = ap.parse_args(argv)
    g = grid_of_file(args.midi, args.bars)
    if not render_png([(args.midi.name, g.hits, g.velocities, g.offsets)], args.png):
        raise SystemExit("--png needs matplotlib")
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
