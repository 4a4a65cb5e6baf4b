"""Drum performances as GrooVAE sees them: 2-bar windows on a 16th-note grid, 9 drum classes.

Data: the Groove MIDI Dataset v1.0.0 (``../shared/datasets/groove-midi-v1.0.0``, CC BY 4.0), with
the official file-level train/validation/test split of its ``info.csv``; 4/4 files only.

Encoding (Gillick et al. 2019, Magenta ``GrooveConverter``): a file's note-ons are mapped to 9
classes through the Roland TD-11 table (:data:`ROLAND_CLASSES`), snapped to the nearest 16th note
(the grid starts at tick 0: GMD was recorded to a click), and each (step, class) cell holds

- ``hit`` in {0, 1},
- ``velocity`` = MIDI velocity / 127,
- ``offset`` = (grid time - onset) / half a step, in [-1, 1]: **positive means played early**.

One note per class per step: the loudest wins, the others are counted as dropped. A file's length
in bars is ``round(end / bar)`` (the TFDS rule); windows of 2 bars (32 steps) start at every bar
(hop 1 bar); all-silent windows are left out. Each window keeps its file's primary style
(``funk/groove1`` -> ``funk``), its beat/fill label, tempo and split.

``prepare`` reads the files once and caches the arrays (``.npz``) with a metadata JSON (the split
rule, counts, dropped notes) under ``$XDG_CACHE_HOME/genie/drumvae``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from drumvae.kit import CLASS_NAMES, GM_OUTPUT_PITCHES, ROLAND_CLASSES, pitch_to_class  # noqa: F401 (re-exported)
from modelkit.datasets import cache_dir, datasets_root  # noqa: F401 (re-exported)

log = logging.getLogger("genie.drumvae.data")

DATASET = "groove-midi-v1.0.0"
NUM_CLASSES = 9
STEPS_PER_BAR = 16
BARS = 2
STEPS = STEPS_PER_BAR * BARS  # 32 steps per window
SPLITS = ("train", "validation", "test")
CACHE_VERSION = 1
SPLIT_RULE = "official file-level split of info.csv (column 'split'); 4-4 files only"


# ---- the grid ------------------------------------------------------------------------------


@dataclass
class Grid:
    """A performance on the 16th grid: [steps, 9] hits (uint8), velocities and offsets (float32)."""

    hits: np.ndarray
    velocities: np.ndarray
    offsets: np.ndarray
    dropped: int = 0  # note-ons lost to a louder one of the same class on the same step
    beyond: int = 0  # note-ons snapped past the file's last bar


def read_notes(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int, float]:
    """Note-ons of a MIDI file: (ticks, pitches, velocities, ticks per beat, end tick, first qpm)."""
    import mido

    mid = mido.MidiFile(str(path))
    ticks, pitches, vels, end, tempo = [], [], [], 0, None
    for track in mid.tracks:
        t = 0
        for msg in track:
            t += msg.time
            if msg.type == "note_on" and msg.velocity > 0:
                ticks.append(t)
                pitches.append(msg.note)
                vels.append(msg.velocity)
            elif msg.type == "set_tempo" and tempo is None:
                tempo = msg.tempo
        end = max(end, t)
    qpm = 60e6 / (tempo or 500_000)
    return (np.asarray(ticks, np.int64), np.asarray(pitches, np.int64), np.asarray(vels, np.int64),
            mid.ticks_per_beat, end, qpm)


def to_grid(ticks: np.ndarray, pitches: np.ndarray, velocities: np.ndarray, tpb: int, num_steps: int,
            classes: tuple[tuple[int, ...], ...] = ROLAND_CLASSES) -> Grid:
    """Note-ons (ticks) -> a grid of ``num_steps`` 16ths; unknown pitches raise ``KeyError``."""
    step_ticks = tpb / 4.0
    cls = pitch_to_class(classes)
    hits = np.zeros((num_steps, NUM_CLASSES), np.uint8)
    vel = np.zeros((num_steps, NUM_CLASSES), np.float32)
    off = np.zeros((num_steps, NUM_CLASSES), np.float32)
    dropped = beyond = 0
    for t, p, v in zip(ticks.tolist(), pitches.tolist(), velocities.tolist()):
        c = cls[p]
        s = int(np.floor(t / step_ticks + 0.5))  # nearest step, ties late
        if s >= num_steps:
            beyond += 1
            continue
        if hits[s, c]:
            dropped += 1
            if v / 127.0 <= vel[s, c]:
                continue
        hits[s, c] = 1
        vel[s, c] = v / 127.0
        off[s, c] = (s * step_ticks - t) / (step_ticks / 2.0)
    return Grid(hits, vel, np.clip(off, -1.0, 1.0), dropped, beyond)


def from_grid(hits: np.ndarray, velocities: np.ndarray, offsets: np.ndarray, tpb: int = 480
              ) -> list[tuple[float, int, int]]:
    """A grid -> notes (tick, class, MIDI velocity 1-127), sorted; inverse of :func:`to_grid`."""
    step_ticks = tpb / 4.0
    notes = []
    for s, c in zip(*np.nonzero(hits)):
        tick = s * step_ticks - float(offsets[s, c]) * step_ticks / 2.0
        notes.append((tick, int(c), int(np.clip(round(float(velocities[s, c]) * 127), 1, 127))))
    return sorted(notes)


def num_bars(end_tick: int, tpb: int) -> int:
    """A file's length in bars: round(end / bar), as TFDS's groove builder."""
    return int(round(end_tick / (tpb * 4)))


def write_midi(hits: np.ndarray, velocities: np.ndarray, offsets: np.ndarray, path: str | Path,
               qpm: float = 120.0, pitches: tuple[int, ...] = GM_OUTPUT_PITCHES, tpb: int = 480) -> None:
    """A grid as a type-0 MIDI file on channel 10, one pitch per class (GM by default)."""
    import mido

    notes = from_grid(hits, velocities, offsets, tpb)
    events = []
    for tick, c, v in notes:
        on = max(int(round(tick)), 0)
        events += [(on, 1, pitches[c], v), (on + tpb // 8, 0, pitches[c], 0)]
    events.sort()
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(qpm), time=0)])
    now = 0
    for tick, _, p, v in events:
        track.append(mido.Message("note_on", channel=9, note=p, velocity=v, time=tick - now))
        now = tick
    mid = mido.MidiFile(ticks_per_beat=tpb)
    mid.tracks.append(track)
    mid.save(str(path))


# ---- the dataset ---------------------------------------------------------------------------


def default_cache_dir() -> Path:
    return cache_dir("drumvae")


def primary_style(style: str) -> str:
    return style.split("/")[0]


@dataclass
class Windows:
    """2-bar windows, flat arrays over N windows."""

    hits: np.ndarray  # uint8 [N, 32, 9]
    velocities: np.ndarray  # float32 [N, 32, 9], 0-1
    offsets: np.ndarray  # float32 [N, 32, 9], -1..1 (+ = early)
    style: np.ndarray  # int64 [N], index into meta["styles"]
    fill: np.ndarray  # int64 [N], 1 = fill, 0 = beat
    split: np.ndarray  # int64 [N], index into SPLITS
    file_id: np.ndarray  # int64 [N], index into meta["files"]
    bpm: np.ndarray  # float32 [N], the file's tempo
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.hits)

    def subset(self, split: str) -> Windows:
        m = self.split == SPLITS.index(split)
        return Windows(self.hits[m], self.velocities[m], self.offsets[m], self.style[m], self.fill[m],
                       self.split[m], self.file_id[m], self.bpm[m], self.meta)

    def take(self, idx: np.ndarray) -> Windows:
        return Windows(self.hits[idx], self.velocities[idx], self.offsets[idx], self.style[idx],
                       self.fill[idx], self.split[idx], self.file_id[idx], self.bpm[idx], self.meta)

    @property
    def styles(self) -> list[str]:
        return self.meta["styles"]

    def features(self) -> np.ndarray:
        """[N, 32, 27] float32: hits, velocities, offsets (GrooVAE's order)."""
        return np.concatenate([self.hits.astype(np.float32), self.velocities, self.offsets], -1)


def file_windows(grid: Grid, bars: int) -> list[int]:
    """Start steps of the non-silent 2-bar windows of a file (hop one bar)."""
    starts = []
    for b in range(max(bars - BARS + 1, 1)):
        s = b * STEPS_PER_BAR
        if grid.hits[s:s + STEPS].any():
            starts.append(s)
    return starts


def read_info(data_dir: Path) -> list[dict]:
    with (data_dir / "info.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def prepare(data_dir: Path | None = None, cache_dir: Path | None = None) -> Windows:
    """Read every 4/4 GMD file once (later calls read the cache) into 2-bar windows."""
    data_dir = Path(data_dir) if data_dir else datasets_root() / DATASET
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    info = data_dir / "info.csv"
    if not info.is_file():
        raise FileNotFoundError(f"{info} not found (set GENIE_DATASETS or --data)")
    fingerprint = hashlib.sha1(info.read_bytes() + repr(ROLAND_CLASSES).encode()).hexdigest()[:12]
    stem = cache_dir / f"gmd-v{CACHE_VERSION}-{fingerprint}"
    npz, meta_path = stem.with_suffix(".npz"), stem.with_suffix(".json")
    if npz.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        z = np.load(npz)
        return Windows(**{k: z[k] for k in z.files}, meta=meta)

    rows = sorted((r for r in read_info(data_dir) if r["time_signature"] == "4-4"),
                  key=lambda r: r["midi_filename"])
    styles = sorted({primary_style(r["style"]) for r in rows})
    arrays: dict[str, list] = {k: [] for k in ("hits", "velocities", "offsets", "style", "fill", "split",
                                               "file_id", "bpm")}
    counts = {s: {"files": 0, "windows": 0, "note_ons": 0, "dropped_note_ons": 0, "beyond_end": 0,
                  "beat_windows": 0, "fill_windows": 0} for s in SPLITS}
    files = []
    for i, r in enumerate(rows):
        ticks, pitches, vels, tpb, end, _ = read_notes(data_dir / r["midi_filename"])
        bars = max(num_bars(end, tpb), 1)
        grid = to_grid(ticks, pitches, vels, tpb, max(bars, BARS) * STEPS_PER_BAR)
        split = r["split"]
        c = counts[split]
        c["files"] += 1
        c["note_ons"] += len(ticks)
        c["dropped_note_ons"] += grid.dropped
        c["beyond_end"] += grid.beyond
        files.append(r["midi_filename"])
        for s in file_windows(grid, bars):
            arrays["hits"].append(grid.hits[s:s + STEPS])
            arrays["velocities"].append(grid.velocities[s:s + STEPS])
            arrays["offsets"].append(grid.offsets[s:s + STEPS])
            arrays["style"].append(styles.index(primary_style(r["style"])))
            arrays["fill"].append(int(r["beat_type"] == "fill"))
            arrays["split"].append(SPLITS.index(split))
            arrays["file_id"].append(i)
            arrays["bpm"].append(float(r["bpm"]))
            c["windows"] += 1
            c["fill_windows" if r["beat_type"] == "fill" else "beat_windows"] += 1
    w = {k: np.stack(v) if k in ("hits", "velocities", "offsets") else np.asarray(v)
         for k, v in arrays.items()}
    w["bpm"] = w["bpm"].astype(np.float32)
    meta = {"dataset": DATASET, "info_sha1": fingerprint, "split_rule": SPLIT_RULE, "counts": counts,
            "styles": styles, "files": files, "classes": [list(c) for c in ROLAND_CLASSES],
            "class_names": list(CLASS_NAMES), "cache_version": CACHE_VERSION,
            "window": f"{BARS} bars of {STEPS_PER_BAR} steps, hop 1 bar, silent windows left out"}
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = stem.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **w)
    os.replace(tmp, npz)
    meta_path.write_text(json.dumps(meta, indent=1))
    log.info("prepared %s: %s", DATASET, {s: counts[s]["windows"] for s in SPLITS})
    return Windows(**w, meta=meta)


def synthetic(n: int = 64, seed: int = 0, styles: tuple[str, ...] = ("funk", "rock")) -> Windows:
    """Tiny made-up windows (a kick/snare/hat groove with jitter) for tests without the dataset."""
    rng = np.random.default_rng(seed)
    hits = np.zeros((n, STEPS, NUM_CLASSES), np.uint8)
    hits[:, 0::8, 0] = 1
    hits[:, 4::8, 1] = 1
    hits[:, 0::2, 2] = 1
    hits[: n // 2, 6::16, 0] = 1
    vel = (hits * rng.uniform(0.3, 1.0, hits.shape)).astype(np.float32)
    off = (hits * rng.uniform(-0.4, 0.4, hits.shape)).astype(np.float32)
    idx = np.arange(n)
    return Windows(hits, vel, off, idx % len(styles), (idx % 3 == 0).astype(np.int64),
                   np.where(idx % 8 == 0, 2, np.where(idx % 8 == 1, 1, 0)), idx, np.full(n, 120.0, np.float32),
                   meta={"styles": list(styles), "counts": {}, "split_rule": "synthetic", "dataset": "synthetic",
                         "files": [f"synthetic/{i}_groove.mid" for i in range(n)]})


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    print(json.dumps(prepare().meta["counts"], indent=1))
