"""Training data for the Music Transformer: JSB Chorales (SATB, 16ths) and MAESTRO piano performances.

**JSB** (``jsb-chorales-czhuang/Jsb16thSeparated.npz``): the official BL2012 train/valid/test
keys. A chorale is BOS + 4T voice tokens (``tokenizer.jsb_encode``). Training examples: a
chorale drawn uniformly, transposed by a whole number of semitones (default -3..+3), cropped to
L+1 tokens at a frame boundary (BOS when the crop starts at 0). Evaluation
(:func:`jsb_windows`): every chorale whole, unaugmented; a chorale longer than L+1 tokens is read
in windows of L+1 that step by L/2 tokens, and each window scores only tokens no earlier window
scored (:func:`scored_windows`), so every voice token is scored once with at least L/2 tokens of
context (or all it has).

**MAESTRO** (the ASAP subset, ``asap-maestro-subset``, CC BY-NC-SA 4.0): split by piece with the
rule of its SOURCE.md, the same split as Piano Genie (``modelkit.datasets.maestro_split``). Preparation
reads every performance once (sustain folded into durations) into a cache. Training examples: a
performance drawn in proportion to its notes, a random note to start from, the paper's
augmentation (transposition -3..+3 semitones, time stretch 0.95..1.05), encoded and cropped to
L+1 tokens (PAD after a piece's end). Evaluation (:func:`maestro_windows`): each validation/test
performance encoded whole and read as JSB is, in windows of L+1 tokens stepping by L/2, so every
token is scored once with at least L/2 tokens of context, as the live model always has (until
December 2026: non-overlapping windows, where a window's first tokens had next to none).

Every batch is a pure function of (seed, step), so a run resumes exactly.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modelkit.datasets import cache_dir as _cache_dir
from modelkit.datasets import asap_cache, datasets_root
from musiclm import tokenizer as tk
from modelkit.datasets import MAESTRO_SPLIT_RULE as SPLIT_RULE  # the same split as Piano Genie
from modelkit.datasets import maestro_split as split_of

JSB_DATASET = "jsb-chorales-czhuang"
JSB_FILE = "Jsb16thSeparated.npz"
JSB_SPLITS = {"train": "train", "validation": "valid", "test": "test"}
MAESTRO_DATASET = "asap-maestro-subset"
CACHE_VERSION = 1


def default_cache_dir() -> Path:
    return _cache_dir("musiclm")


# ---- JSB -------------------------------------------------------------------------------------


def load_jsb(data_dir: str | Path | None = None) -> dict[str, list[np.ndarray]]:
    """{"train", "validation", "test"} -> chorales (T x 4 float pitches, NaN = rest)."""
    root = Path(data_dir) if data_dir else datasets_root() / JSB_DATASET
    path = root / JSB_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (set GENIE_DATASETS or --data)")
    z = np.load(path, allow_pickle=True, encoding="latin1")
    return {ours: [np.asarray(x, dtype=np.float64) for x in z[theirs]] for ours, theirs in JSB_SPLITS.items()}


def jsb_meta(chorales: dict[str, list[np.ndarray]]) -> dict:
    return {"dataset": f"{JSB_DATASET}/{JSB_FILE}", "split_rule": "the file's BL2012 train/valid/test keys",
            "counts": {s: {"chorales": len(c), "frames": int(sum(len(x) for x in c)),
                           "tokens": int(sum(4 * len(x) for x in c))} for s, c in chorales.items()},
            "vocab": tk.JSB_VOCAB}


class JsbSampler:
    """Random transposed crops of L+1 tokens; ``batch(step)`` depends only on (seed, step)."""

    def __init__(self, chorales: list[np.ndarray], batch_size: int, length: int, seed: int = 0,
                 transpose: tuple[int, int] = (-3, 3)) -> None:
        if length % tk.JSB_VOICES:
            raise ValueError("the JSB training length must be a multiple of 4")
        self.chorales, self.batch_size, self.length, self.seed = chorales, batch_size, length, seed
        self.transpose = transpose

    def example(self, rng: np.random.Generator) -> np.ndarray:
        frames = self.chorales[int(rng.integers(len(self.chorales)))]
        k = int(rng.integers(self.transpose[0], self.transpose[1] + 1))
        tokens = tk.jsb_encode(np.clip(frames + k, 0, 127))
        n_frames = len(frames)
        max_start = max(0, n_frames - self.length // tk.JSB_VOICES)
        f = int(rng.integers(0, max_start + 1))
        start = 4 * f  # BOS at 0, frame f at 1 + 4f: position 1 mod 4 is always the soprano
        seq = tokens[start:start + self.length + 1]
        out = np.full(self.length + 1, tk.PAD, np.int64)
        out[:len(seq)] = seq
        return out

    def batch(self, step: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, step])
        return np.stack([self.example(rng) for _ in range(self.batch_size)])


def scored_windows(seqs: list[np.ndarray], length: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Evaluation windows of whole sequences: (inputs, targets), each (N, L), PAD-filled.
    Windows of L+1 tokens step by ``stride`` through each sequence, and each scores only the
    targets no earlier window scored: every target is scored once, with at least L - stride
    tokens of context (or all its sequence has before it). ``stride == length``: non-overlapping."""
    if not 0 < stride <= length:
        raise ValueError(f"stride must be in 1..{length}, not {stride}")
    xs, ys = [], []
    for seq in seqs:
        scored = 0  # targets seq[1..scored] done
        start = 0
        while scored < len(seq) - 1:
            win = seq[start:start + length + 1]
            x = np.full(length, tk.PAD, np.int64)
            y = np.full(length, tk.PAD, np.int64)
            x[:len(win) - 1] = win[:-1]
            tgt = win[1:].copy()
            first_new = scored - start  # target index j predicts seq[start + j + 1]
            tgt[:max(first_new, 0)] = tk.PAD
            y[:len(tgt)] = tgt
            xs.append(x)
            ys.append(y)
            scored = start + len(win) - 1
            start += stride
    if not xs:
        return np.zeros((0, length), np.int64), np.zeros((0, length), np.int64)
    return np.stack(xs), np.stack(ys)


def jsb_windows(chorales: list[np.ndarray], length: int) -> tuple[np.ndarray, np.ndarray]:
    """Evaluation windows: (inputs, targets), each (N, L), targets PAD where not scored; the
    stride is L/2 rounded to whole frames, so a window starts with a soprano."""
    stride = max(tk.JSB_VOICES, (length // 2) // tk.JSB_VOICES * tk.JSB_VOICES)
    return scored_windows([tk.jsb_encode(frames) for frames in chorales], length, stride)


# ---- MAESTRO ---------------------------------------------------------------------------------


@dataclass
class Performances:
    """Notes of many performances, flat: performance i is ``[offsets[i], offsets[i+1])``."""

    start: np.ndarray
    end: np.ndarray
    pitch: np.ndarray  # int16
    velocity: np.ndarray  # int16
    offsets: np.ndarray
    names: list[str]
    splits: list[str]
    meta: dict

    def __len__(self) -> int:
        return len(self.names)

    def notes(self, i: int) -> tk.Notes:
        a, b = self.offsets[i], self.offsets[i + 1]
        return tk.Notes(self.start[a:b], self.end[a:b], self.pitch[a:b].astype(np.int64),
                        self.velocity[a:b].astype(np.int64))

    def subset(self, split: str) -> Performances:
        idx = [i for i, s in enumerate(self.splits) if s == split]
        parts = [self.notes(i) for i in idx]
        cat = (lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt))
        return Performances(cat([p.start for p in parts], np.float64), cat([p.end for p in parts], np.float64),
                            cat([p.pitch for p in parts], np.int16), cat([p.velocity for p in parts], np.int16),
                            np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64),
                            [self.names[i] for i in idx], [split] * len(idx), self.meta)


def prepare_maestro(data_dir: str | Path | None = None, cache_dir: str | Path | None = None,
                    progress: bool = False) -> Performances:
    """Read every MAESTRO performance of the ASAP subset once (pedal folded); later calls read
    the cache (keyed by the metadata file's hash)."""
    data_dir = Path(data_dir) if data_dir else datasets_root() / MAESTRO_DATASET
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    metadata, npz, meta_path, fingerprint = asap_cache(data_dir, cache_dir, f"asap-notes-v{CACHE_VERSION}")
    if npz.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        z = np.load(npz)
        return Performances(z["start"], z["end"], z["pitch"], z["velocity"], z["offsets"],
                            meta["names"], meta["splits"], meta)
    with metadata.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["maestro_midi_performance"]]
    rows = [r for r in rows if (data_dir / r["midi_performance"]).is_file()]
    rows.sort(key=lambda r: r["midi_performance"])
    parts, names, splits = [], [], []
    for n, r in enumerate(rows):
        notes = tk.read_midi(data_dir / r["midi_performance"])
        if len(notes):
            notes = tk.Notes(notes.start - notes.start[0], notes.end - notes.start[0], notes.pitch, notes.velocity)
        parts.append(notes)
        names.append(r["midi_performance"])
        splits.append(split_of(r["composer"], r["title"]))
        if progress and n % 50 == 0:
            print(f"prepare: {n}/{len(rows)} performances", flush=True)
    counts = {s: {"performances": splits.count(s),
                  "pieces": len({(r["composer"], r["title"]) for r, sp in zip(rows, splits) if sp == s}),
                  "notes": int(sum(len(p) for p, sp in zip(parts, splits) if sp == s)),
                  "hours": round(sum(float(p.end.max()) if len(p) else 0.0
                                     for p, sp in zip(parts, splits) if sp == s) / 3600, 2)}
              for s in ("train", "validation", "test")}
    meta = {"dataset": MAESTRO_DATASET, "metadata_sha1": fingerprint, "split_rule": SPLIT_RULE,
            "counts": counts, "names": names, "splits": splits, "cache_version": CACHE_VERSION,
            "vocab": tk.PERFORMANCE_VOCAB}
    perf = Performances(np.concatenate([p.start for p in parts]), np.concatenate([p.end for p in parts]),
                        np.concatenate([p.pitch for p in parts]).astype(np.int16),
                        np.concatenate([p.velocity for p in parts]).astype(np.int16),
                        np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64),
                        names, splits, meta)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = npz.with_suffix(".tmp.npz")
    np.savez(tmp, start=perf.start, end=perf.end, pitch=perf.pitch, velocity=perf.velocity, offsets=perf.offsets)
    os.replace(tmp, npz)
    meta_path.write_text(json.dumps(meta, indent=1))
    return perf


def maestro_meta(perf: Performances) -> dict:
    return {k: v for k, v in perf.meta.items() if k not in ("names", "splits")}


@dataclass
class Augment:
    transpose: tuple[int, int] = (-3, 3)  # semitones, inclusive (Magenta: "no more than a minor third")
    stretch: tuple[float, float] = (0.95, 1.05)  # time stretch factor, uniform


def crop_tokens(notes: tk.Notes, first: int, length: int, rng: np.random.Generator | None,
                augment: Augment | None) -> np.ndarray:
    """L+1 tokens from note ``first`` on (augmented when ``augment``), PAD-filled at the end.
    Events are kept up to the onset of the last note taken, so no note inside the crop is missing."""
    take = slice(first, first + length)  # >= 2 tokens a note: always enough
    s, e, p, v = notes.start[take], notes.end[take], notes.pitch[take], notes.velocity[take]
    s, e = s - s[0], e - s[0]
    if augment is not None:
        stretch = rng.uniform(*augment.stretch)
        s, e = s * stretch, e * stretch
        p = p + int(rng.integers(augment.transpose[0], augment.transpose[1] + 1))
        keep = (p >= 0) & (p < 128)
        s, e, p, v = s[keep], e[keep], p[keep], v[keep]
    complete = first + length < len(notes.pitch)  # notes after the crop exist: cut at the last onset
    tokens = tk.encode(tk.Notes(s, e, p, v))
    if complete and len(s):
        tokens = tokens[:tk.tokens_before(tokens, float(s.max()))]
    out = np.full(length + 1, tk.PAD, np.int64)
    seq = tokens[:length + 1]
    out[:len(seq)] = seq
    return out


class MaestroSampler:
    """Random augmented crops of L+1 tokens; ``batch(step)`` depends only on (seed, step)."""

    def __init__(self, perf: Performances, batch_size: int, length: int, seed: int = 0,
                 augment: Augment | None = Augment()) -> None:
        self.perf, self.batch_size, self.length, self.seed, self.augment = perf, batch_size, length, seed, augment
        n = np.diff(perf.offsets).astype(np.float64)
        if n.sum() == 0:
            raise ValueError("no notes to train on")
        self.p = n / n.sum()

    def batch(self, step: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, step])
        out = np.empty((self.batch_size, self.length + 1), np.int64)
        for i in range(self.batch_size):
            j = int(rng.choice(len(self.p), p=self.p))
            notes = self.perf.notes(j)
            first = int(rng.integers(0, max(len(notes) - 16, 1)))
            out[i] = crop_tokens(notes, first, self.length, rng, self.augment)
        return out


def maestro_windows(perf: Performances, length: int, limit: int = 0, stride: int = 0
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Evaluation windows of every performance, encoded whole and unaugmented: (inputs, targets)
    (N, L) each, PAD where not scored. ``stride`` (default L/2, as JSB and as the live model
    hears: every token scored with at least L/2 tokens of context); ``stride = L`` gives
    non-overlapping windows, where a window's first tokens have next to no context. ``limit`` > 0
    keeps that many windows, evenly spaced (a fixed subset)."""
    x, y = scored_windows([tk.encode(perf.notes(i)) for i in range(len(perf))], length, stride or length // 2)
    if limit and len(x) > limit:
        keep = np.linspace(0, len(x) - 1, limit).round().astype(int)
        x, y = x[keep], y[keep]
    return x, y
