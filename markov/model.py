"""The seed's bigram Markov chain over MIDI pitches: P(next pitch | previous pitch).

The simplest language model of the project (Shannon 1948, section 3: a first-order Markov source),
used by the ``markov`` processor. Pure numpy, no torch, so it runs anywhere and loads in
milliseconds. Reading top to bottom: hyperparameters, data (MIDI files -> pitch sequences, the
split), the model (counts, add-alpha smoothing, likelihood), the button-constrained sampler, and
the JSON file format.

Likelihood is measured on *transitions*: every note of a melody but its first is predicted from the
one before it. The unigram baseline predicts the same notes without context, from the train set's
distribution of next notes, so the two perplexities compare like with like.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

N_PITCHES = 128
FORMAT = "genie-markov-bigram"
VERSION = 1

PIANO_LOW = 21  # A0, the lowest key of an 88-key piano
PIANO_HIGH = 108  # C8, the highest

# Semitone interval window (inclusive) that each of the 8 buttons may move the melody by. Buttons
# 0-3 go down, furthest first; 4-7 are their mirror image going up. The windows tile -12..+12
# without gaps except 0: a press always moves, so a musician's contour is always heard.
BUTTON_INTERVALS: tuple[tuple[int, int], ...] = (
    (-12, -8),  # 0: a sixth to an octave down
    (-7, -5),  # 1: a fourth or fifth down
    (-4, -3),  # 2: a third down
    (-2, -1),  # 3: a step down
    (1, 2),  # 4: a step up
    (3, 4),  # 5: a third up
    (5, 7),  # 6: a fourth or fifth up
    (8, 12),  # 7: a sixth to an octave up
)
N_BUTTONS = len(BUTTON_INTERVALS)


@dataclass(frozen=True)
class MarkovConfig:
    """Hyperparameters; saved with the counts so a file says how its model was made."""

    alpha: float = 0.03
    """Add-alpha (Lidstone) smoothing: every one of the 128 next pitches gets ``alpha`` pseudo-counts.
    Of 0.001, 0.01, 0.03, 0.1, 0.3 and 1.0, 0.03 gave the lowest validation perplexity on Nottingham
    (7.43; 1.0, Laplace, gives 7.53: it spreads mass over pitches folk tunes never play)."""


# ---- data --------------------------------------------------------------------------------------


def read_pitches(path: str | Path) -> list[int]:
    """Note-on pitches of a MIDI file in playing order: by onset (in ticks), then by pitch.

    Every track and channel is merged, so the result is a melody only for monophonic files (such as
    Nottingham's ``MIDI/melody``); chords come out lowest note first. A note-on of velocity 0 is a
    note-off and is skipped. An unreadable file raises ValueError naming it.
    """
    import mido  # here, not at the top: the processor imports this module and never reads MIDI

    path = Path(path)
    try:
        midi = mido.MidiFile(path)
        events: list[tuple[int, int]] = []
        tick = 0
        for msg in mido.merge_tracks(midi.tracks):
            tick += msg.time
            if msg.type == "note_on" and msg.velocity > 0:
                events.append((tick, msg.note))
    except (OSError, EOFError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"{path}: not a readable MIDI file ({type(exc).__name__}: {exc})") from None
    events.sort()
    return [pitch for _, pitch in events]


def split_of(stem: str) -> str:
    """The dataset's split for a file stem: sha1(stem) mod 10 is 0 for test, 1 for validation.

    This is the rule in ``nottingham-jukedeck/SOURCE.md``; it is stable as files are added.
    """
    h = int(hashlib.sha1(stem.encode("utf-8")).hexdigest(), 16) % 10
    return "test" if h == 0 else "validation" if h == 1 else "train"


# ---- model -------------------------------------------------------------------------------------


@dataclass(eq=False)  # arrays have no single truth value; compare .counts instead
class BigramModel:
    """Transition counts ``counts[prev, next]`` over the 128 MIDI pitches, plus smoothing."""

    counts: np.ndarray  # (128, 128) int64
    config: MarkovConfig = field(default_factory=MarkovConfig)
    meta: dict[str, Any] = field(default_factory=dict)
    """How the model was made: data, split, files, notes, wall time, metrics."""

    def __post_init__(self) -> None:
        self.counts = np.asarray(self.counts, dtype=np.int64)
        if self.counts.shape != (N_PITCHES, N_PITCHES):
            raise ValueError(f"counts must be {N_PITCHES}x{N_PITCHES}, got {self.counts.shape}")
        if self.config.alpha <= 0 or not math.isfinite(self.config.alpha):
            raise ValueError(f"alpha must be a positive number, got {self.config.alpha}")

    def save(self, path: str | Path) -> None:
        """Write the model as sparse JSON (see :func:`save`)."""
        save(self, path)

    @classmethod
    def load(cls, path: str | Path) -> BigramModel:
        """Read and validate a model file (see :func:`load`)."""
        return load(path)

    @property
    def transitions(self) -> int:
        return int(self.counts.sum())

    @cached_property
    def log_probs(self) -> np.ndarray:
        """log P(next | prev) with add-alpha smoothing; (128, 128), each row sums to 1 in prob."""
        alpha = self.config.alpha
        smoothed = self.counts + alpha
        return np.log(smoothed) - np.log(smoothed.sum(axis=1, keepdims=True))

    @cached_property
    def unigram_log_probs(self) -> np.ndarray:
        """log P(next), ignoring the previous pitch: the baseline a bigram has to beat; (128,)."""
        smoothed = self.counts.sum(axis=0) + self.config.alpha
        return np.log(smoothed) - np.log(smoothed.sum())

    def nll(self, sequences: Iterable[Sequence[int]], unigram: bool = False) -> tuple[float, int]:
        """Total negative log-likelihood (nats) of every transition, and how many there were."""
        prev, nxt = _pairs(sequences)
        if unigram:
            return float(-self.unigram_log_probs[nxt].sum()), len(nxt)
        return float(-self.log_probs[prev, nxt].sum()), len(nxt)

    def perplexity(self, sequences: Iterable[Sequence[int]], unigram: bool = False) -> float:
        """exp(mean NLL per predicted note) over the transitions of ``sequences``."""
        total, n = self.nll(sequences, unigram=unigram)
        if n == 0:
            raise ValueError("no transitions to evaluate (every sequence has fewer than 2 notes)")
        return math.exp(total / n)

    # ---- sampling ----------------------------------------------------------------------------

    def next_pitch(self, prev_pitch: int, button: int, rng: random.Random,
                   temperature: float = 1.0, low: int = PIANO_LOW, high: int = PIANO_HIGH) -> int:
        """Sample the pitch that follows ``prev_pitch`` when button ``button`` (0-7) is pressed.

        The candidates are ``prev_pitch`` plus the button's interval window (``BUTTON_INTERVALS``),
        within ``low..high``; they are drawn from the smoothed bigram row restricted to the window,
        so a window the data never visited is still sampled, by smoothing (near-uniformly).
        ``temperature`` sharpens (<1) or flattens (>1) the choice; 0 takes the most likely pitch.
        When the window lies wholly outside ``low..high`` the melody goes to the edge, and from
        the edge the window is mirrored (``button_window``): it never sticks there.
        """
        candidates = button_window(prev_pitch, button, low, high)
        if len(candidates) == 1:
            return candidates[0]
        row = self.log_probs[min(max(prev_pitch, 0), N_PITCHES - 1)]
        logits = [float(row[p]) for p in candidates]
        if temperature <= 0:
            return candidates[max(range(len(candidates)), key=logits.__getitem__)]
        top = max(logits)
        weights = [math.exp((x - top) / temperature) for x in logits]
        # One uniform draw against the cumulative weights: same seed, same pitches, any platform.
        r = rng.random() * sum(weights)
        for pitch, w in zip(candidates, weights):
            r -= w
            if r < 0:
                return pitch
        return candidates[-1]


def button_window(prev_pitch: int, button: int, low: int = PIANO_LOW,
                  high: int = PIANO_HIGH) -> list[int]:
    """The pitches button ``button`` may play after ``prev_pitch``, within ``low..high``.

    Never empty, and never stuck at an edge: a window wholly below the range plays ``low`` (the
    melody still goes down) unless the previous note is ``low`` already; then, as above ``high``,
    the window is mirrored (a step down from the lowest note steps up as far)."""
    if not 0 <= button < N_BUTTONS:
        raise ValueError(f"button must be 0..{N_BUTTONS - 1}, got {button}")
    if not 0 <= low <= high < N_PITCHES:
        raise ValueError(f"pitch range must satisfy 0 <= low <= high <= 127, got {low}..{high}")
    d_lo, d_hi = BUTTON_INTERVALS[button]
    first, last = max(prev_pitch + d_lo, low), min(prev_pitch + d_hi, high)
    if first <= last:
        return list(range(first, last + 1))
    below = prev_pitch + d_hi < low
    if (below and prev_pitch > low) or (not below and prev_pitch < high):
        return [low] if below else [high]  # towards the edge: the contour holds
    first, last = max(prev_pitch - d_hi, low), min(prev_pitch - d_lo, high)  # at the edge: mirrored
    if first <= last:
        return list(range(first, last + 1))
    return [low] if below else [high]


def _pairs(sequences: Iterable[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(prev, next) index arrays of every transition in ``sequences``."""
    prev: list[np.ndarray] = []
    nxt: list[np.ndarray] = []
    for seq in sequences:
        arr = np.asarray(seq, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= N_PITCHES):
            raise ValueError(f"pitches must be 0..127, got {arr.min()}..{arr.max()}")
        if arr.size >= 2:
            prev.append(arr[:-1])
            nxt.append(arr[1:])
    if not prev:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(prev), np.concatenate(nxt)


def fit(sequences: Iterable[Sequence[int]], config: MarkovConfig | None = None,
        meta: dict[str, Any] | None = None) -> BigramModel:
    """Count every transition of ``sequences``: one pass, no optimisation."""
    prev, nxt = _pairs(sequences)
    counts = np.zeros((N_PITCHES, N_PITCHES), dtype=np.int64)
    np.add.at(counts, (prev, nxt), 1)
    return BigramModel(counts, config or MarkovConfig(), dict(meta or {}))


# ---- file format -------------------------------------------------------------------------------
#
# {"format": "genie-markov-bigram", "version": 1, "config": {"alpha": ...}, "meta": {...},
#  "counts": {"<prev>": {"<next>": count, ...}, ...}}    (sparse: only non-zero counts)


def save(model: BigramModel, path: str | Path) -> None:
    """Write ``model`` as JSON: one line per previous pitch, so a retrained file diffs readably."""
    rows = []
    for prev in range(N_PITCHES):
        nz = np.flatnonzero(model.counts[prev])
        if nz.size:
            row = {str(int(n)): int(model.counts[prev, n]) for n in nz}
            rows.append(f"    {json.dumps(str(prev))}: {json.dumps(row)}")
    head = {"format": FORMAT, "version": VERSION, "config": asdict(model.config), "meta": model.meta}
    body = json.dumps(head, indent=2, sort_keys=False)[:-2]  # drop the closing "\n}"
    text = body + ',\n  "counts": {\n' + ",\n".join(rows) + "\n  }\n}\n"
    Path(path).write_text(text, encoding="utf-8")


def load(path: str | Path) -> BigramModel:
    """Read a model written by :func:`save`; anything else raises a one-line ValueError naming it."""
    path = Path(path)

    def bad(reason: str) -> ValueError:
        return ValueError(f"markov model file {path}: {reason}")

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise bad("not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise bad(f"cannot be read ({type(exc).__name__})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise bad(f"not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise bad(f"not a {FORMAT} file")
    if doc.get("version") != VERSION:
        raise bad(f"unsupported version {doc.get('version')!r} (this Genie reads {VERSION})")
    config = doc.get("config")
    alpha = config.get("alpha") if isinstance(config, dict) else None
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < math.inf:
        raise bad("config.alpha must be a positive number")
    meta = doc.get("meta", {})
    if not isinstance(meta, dict):
        raise bad("meta must be an object")
    rows = doc.get("counts")
    if not isinstance(rows, dict):
        raise bad("counts must be an object")
    counts = np.zeros((N_PITCHES, N_PITCHES), dtype=np.int64)
    for prev, row in rows.items():
        p = _pitch_key(prev)
        if p is None or not isinstance(row, dict):
            raise bad(f"counts key {prev!r} is not a pitch 0..127 with an object of counts")
        for nxt, count in row.items():
            n = _pitch_key(nxt)
            if n is None or isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise bad(f"counts[{prev}][{nxt!r}] must be a pitch 0..127 with a count >= 0")
            counts[p, n] = count
    if not counts.any():
        raise bad("holds no transitions")
    return BigramModel(counts, MarkovConfig(alpha=float(alpha)), meta)


def _pitch_key(key: str) -> int | None:
    if not (isinstance(key, str) and key.isdigit()):
        return None
    value = int(key)
    return value if value < N_PITCHES else None
