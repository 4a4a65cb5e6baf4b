"""Piano performances as Piano Genie sees them: onsets, keys 0-87, quantized delta-times.

Data: the ASAP subset of MAESTRO (``../shared/datasets/asap-maestro-subset``, CC BY-NC-SA 4.0),
split by piece with the rule of its SOURCE.md: h = int(sha1(composer + "|" + title), 16) mod 10;
0 is test, 1 validation, otherwise train. No piece is in two splits.

Preparation runs once (``prepare``): every performance becomes its note onsets, sorted by time
then pitch, with pitches 21-108 stored as keys 0-87 (others dropped). The arrays and the split go
to a cache file (``.npz``) beside a metadata JSON that records the split rule and counts.

Training examples (``TrainSampler``) follow the paper: time stretch U[0.95, 1.05], transposition
-6..+5 semitones (notes pushed off the keyboard are dropped), random 128-note crops. Delta-time
is the time since the previous onset, quantized at 31.25 Hz into 33 buckets, saturating at the
last (32 = 1.024 s or more; a piece's first note gets it too). A batch is a pure function of
(seed, step), so resuming and multi-process training see the same examples.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modelkit.datasets import MAESTRO_SPLIT_RULE as SPLIT_RULE  # noqa: F401 (re-exported)
from modelkit.datasets import asap_cache, cache_dir, datasets_root
from modelkit.datasets import maestro_split as split_of  # noqa: F401 (re-exported)

NUM_KEYS = 88
LOWEST_PITCH = 21  # A0 is key 0; C8 (108) is key 87
DT_RATE_HZ = 31.25  # delta-time buckets are 32 ms wide
NUM_DT = 33  # buckets 0..32; 32 means "1.024 s or longer"
SEQ_LEN = 128
SPLITS = ("train", "validation", "test")
CACHE_VERSION = 1
DATASET = "asap-maestro-subset"


# ---- the encoding --------------------------------------------------------------------------


def quantize_dt(dt_s: np.ndarray) -> np.ndarray:
    """Seconds between onsets -> bucket 0..32 (31.25 Hz, rounded, saturating)."""
    return np.clip(np.round(np.asarray(dt_s, dtype=np.float64) * DT_RATE_HZ), 0, NUM_DT - 1).astype(np.int64)


def dt_bucket_ns(dt_ns: int) -> int:
    """The same quantization for a live inter-press time in nanoseconds."""
    return int(min(max(round(dt_ns * 1e-9 * DT_RATE_HZ), 0), NUM_DT - 1))


def encode(times_s: np.ndarray, pitches: np.ndarray, first_dt_s: float = np.inf
           ) -> tuple[np.ndarray, np.ndarray]:
    """Onset times and MIDI pitches -> (keys 0-87, delta-time buckets).

    Notes outside 21-108 are dropped; notes are sorted by time then pitch. ``first_dt_s`` is the
    time from the onset before (infinity at the start of a piece: the saturated bucket).
    """
    times_s = np.asarray(times_s, dtype=np.float64)
    pitches = np.asarray(pitches, dtype=np.int64)
    keep = (pitches >= LOWEST_PITCH) & (pitches < LOWEST_PITCH + NUM_KEYS)
    times_s, pitches = times_s[keep], pitches[keep]
    order = np.lexsort((pitches, times_s))
    times_s, pitches = times_s[order], pitches[order]
    dt = np.diff(times_s, prepend=times_s[0] - first_dt_s if len(times_s) else 0.0)
    return pitches - LOWEST_PITCH, quantize_dt(dt)


def decode(keys: np.ndarray, dt: np.ndarray, start_s: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(keys, buckets) -> (onset times at bucket resolution, MIDI pitches); the first onset is at
    ``start_s``. Inverse of :func:`encode` up to the 32 ms grid and the saturation."""
    dt = np.asarray(dt, dtype=np.float64) / DT_RATE_HZ
    dt[:1] = 0.0
    return start_s + np.cumsum(dt), np.asarray(keys, dtype=np.int64) + LOWEST_PITCH


def read_onsets(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Every note-on (velocity > 0) of a MIDI file: (times in seconds, pitches), sorted by time
    then pitch. Tempo changes are honoured (mido's playback clock)."""
    import mido

    times, pitches = [], []
    t = 0.0
    for msg in mido.MidiFile(str(path)):
        t += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            times.append(t)
            pitches.append(msg.note)
    times_a, pitches_a = np.asarray(times, dtype=np.float64), np.asarray(pitches, dtype=np.int64)
    order = np.lexsort((pitches_a, times_a))
    return times_a[order], pitches_a[order]


# ---- the split and the cache ---------------------------------------------------------------


def default_cache_dir() -> Path:
    return cache_dir("pianogenie")


@dataclass
class Performances:
    """Prepared notes of many performances, flat: performance i is ``[offsets[i], offsets[i+1])``."""

    times: np.ndarray  # float64 seconds, [N]
    keys: np.ndarray  # int8 keys 0-87, [N]
    offsets: np.ndarray  # int64, [P + 1]
    names: list[str]
    splits: list[str]
    meta: dict

    def __len__(self) -> int:
        return len(self.names)

    def piece(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.times[a:b], self.keys[a:b].astype(np.int64)

    def subset(self, split: str) -> Performances:
        idx = [i for i, s in enumerate(self.splits) if s == split]
        parts = [self.piece(i) for i in idx]
        lengths = [len(k) for _, k in parts]
        return Performances(
            times=np.concatenate([t for t, _ in parts]) if parts else np.zeros(0),
            keys=np.concatenate([k for _, k in parts]).astype(np.int8) if parts else np.zeros(0, np.int8),
            offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            names=[self.names[i] for i in idx], splits=[split] * len(idx), meta=self.meta)


def prepare(data_dir: Path | None = None, cache_dir: Path | None = None,
            progress: bool = False) -> Performances:
    """Read every MAESTRO performance of the ASAP subset once; later calls read the cache."""
    data_dir = Path(data_dir) if data_dir else datasets_root() / DATASET
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    metadata, npz, meta_path, fingerprint = asap_cache(data_dir, cache_dir, f"asap-v{CACHE_VERSION}")
    if npz.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        z = np.load(npz)
        return Performances(z["times"], z["keys"], z["offsets"], meta["names"], meta["splits"], meta)

    with metadata.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["maestro_midi_performance"]]
    rows = [r for r in rows if (data_dir / r["midi_performance"]).is_file()]
    rows.sort(key=lambda r: r["midi_performance"])
    times, keys, lengths, names, splits = [], [], [], [], []
    for n, r in enumerate(rows):
        t, p = read_onsets(data_dir / r["midi_performance"])
        keep = (p >= LOWEST_PITCH) & (p < LOWEST_PITCH + NUM_KEYS)
        times.append(t[keep])
        keys.append((p[keep] - LOWEST_PITCH).astype(np.int8))
        lengths.append(int(keep.sum()))
        names.append(r["midi_performance"])
        splits.append(split_of(r["composer"], r["title"]))
        if progress and n % 50 == 0:
            print(f"prepare: {n}/{len(rows)} performances", flush=True)
    counts = {s: {"performances": splits.count(s),
                  "pieces": len({(r["composer"], r["title"]) for r, sp in zip(rows, splits) if sp == s}),
                  "notes": int(sum(n for n, sp in zip(lengths, splits) if sp == s))}
              for s in SPLITS}
    meta = {"dataset": DATASET, "metadata_sha1": fingerprint, "split_rule": SPLIT_RULE,
            "counts": counts, "names": names, "splits": splits, "cache_version": CACHE_VERSION}
    perf = Performances(np.concatenate(times), np.concatenate(keys),
                        np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), names, splits, meta)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = npz.with_suffix(".tmp.npz")
    np.savez(tmp, times=perf.times, keys=perf.keys, offsets=perf.offsets)
    os.replace(tmp, npz)
    meta_path.write_text(json.dumps(meta, indent=1))
    return perf


# ---- training crops and evaluation windows -------------------------------------------------


@dataclass
class Augment:
    stretch: tuple[float, float] = (0.95, 1.05)  # time stretch factor, uniform
    transpose: tuple[int, int] = (-6, 5)  # semitones, inclusive


def crop(times: np.ndarray, keys: np.ndarray, start: int, rng: np.random.Generator | None,
         augment: Augment | None, length: int = SEQ_LEN) -> tuple[np.ndarray, np.ndarray] | None:
    """One example from ``start``: augmented (when ``augment``), ``length`` notes, or None when
    too few notes survive the transposition."""
    first_dt = times[start] - times[start - 1] if start > 0 else np.inf
    t = times[start:start + 2 * length]
    k = keys[start:start + 2 * length].astype(np.int64)
    if augment is not None:
        stretch = rng.uniform(*augment.stretch)
        t, first_dt = (t - t[0]) * stretch, first_dt * stretch
        k = k + int(rng.integers(augment.transpose[0], augment.transpose[1] + 1))
        keep = (k >= 0) & (k < NUM_KEYS)
        t, k = t[keep], k[keep]
    if len(k) < length:
        return None
    t, k = t[:length], k[:length]
    dt = quantize_dt(np.diff(t, prepend=t[0] - first_dt))
    return k, dt


class TrainSampler:
    """Random augmented crops; ``batch(step)`` depends only on (seed, step)."""

    def __init__(self, perf: Performances, batch_size: int = 32, seed: int = 0,
                 augment: Augment | None = Augment(), length: int = SEQ_LEN) -> None:
        self.perf, self.batch_size, self.seed, self.augment, self.length = perf, batch_size, seed, augment, length
        lengths = np.diff(perf.offsets)
        self.starts = np.maximum(lengths - length, 0)  # a crop starts in [0, starts]
        weight = np.where(lengths >= length, self.starts + 1, 0).astype(np.float64)
        if weight.sum() == 0:
            raise ValueError(f"no performance has {length} notes")
        self.p = weight / weight.sum()

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, step])
        keys = np.empty((self.batch_size, self.length), np.int64)
        dts = np.empty_like(keys)
        i = 0
        while i < self.batch_size:
            p = int(rng.choice(len(self.p), p=self.p))
            t, k = self.perf.piece(p)
            ex = crop(t, k, int(rng.integers(0, self.starts[p] + 1)), rng, self.augment, self.length)
            if ex is not None:
                keys[i], dts[i] = ex
                i += 1
        return keys, dts


def eval_windows(perf: Performances, length: int = SEQ_LEN) -> tuple[np.ndarray, np.ndarray]:
    """Every non-overlapping ``length``-note window of every performance, no augmentation."""
    keys, dts = [], []
    for i in range(len(perf)):
        t, k = perf.piece(i)
        for start in range(0, len(k) - length + 1, length):
            ex = crop(t, k, start, None, None, length)
            keys.append(ex[0])
            dts.append(ex[1])
    if not keys:
        return np.zeros((0, length), np.int64), np.zeros((0, length), np.int64)
    return np.stack(keys), np.stack(dts)
