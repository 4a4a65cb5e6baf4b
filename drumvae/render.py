"""Drum grids as pictures: 9 classes x 16th steps, velocity as shade, offset as a shift.

    genie render PATTERN.mid [--png grid.png] [--bars 2]
"""

from __future__ import annotations

from pathlib import Path

import click
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


@click.command("render")
@click.argument("pattern", metavar="PATTERN.mid", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--png", "png", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The picture [default: PATTERN.png beside it; an existing file is never overwritten].")
@click.option("--bars", type=click.IntRange(0), default=0, help="Only the first N bars (0: all).")
def render_cmd(pattern: Path, png: Path | None, bars: int) -> None:
    """Draw a drum performance (e.g. what genie play wrote from drumvae) as a grid: 9 classes x
    16th steps, velocity as shade, micro-timing as a shift from the grid."""
    if not pattern.is_file():
        raise click.ClickException(f"{pattern}: no such file")
    out = png or pattern.with_suffix(".png")
    if out.exists():
        raise click.ClickException(f"{out} exists; give another --png")
    try:
        g = grid_of_file(pattern, bars)
    except (OSError, EOFError, ValueError, KeyError, IndexError) as exc:
        raise click.ClickException(f"{pattern}: not a readable MIDI file ({exc})") from None
    if not render_png([(pattern.name, g.hits, g.velocities, g.offsets)], out):
        raise click.ClickException("drawing needs matplotlib (pip install matplotlib)")
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    render_cmd()
