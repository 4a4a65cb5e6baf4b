"""``pianogenie``: 8 buttons play the 88 piano keys through Piano Genie's decoder.

Each press plays one note; its release ends that note (a held button pressed again does nothing).
The decoder's input for a press is (button, previous key, time since the previous press), and the
time is only known at the press. To keep the model off the press path, the processor keeps the
next-note distributions of all 8 buttons ready for the current delta-time bucket (and the one
after), with the LSTM state each row would leave behind, and refreshes them from ``on_idle`` when
the bucket changes (32 ms buckets, saturating after about 1 s). A press then only draws from its
row and keeps that row's state. A press that finds no ready row (the first idle call has not come
yet) runs the step itself.

Presses within ``chord_ms`` of each other form a chord. The model was trained on chords sorted
low note first, so it hears a chord low button first: when a lower button joins a chord, its note
is drawn after the chord's lower notes only, and the model's memory is rebuilt in button order
(the notes already sounding are kept; nothing waits for the chord to complete).

Options restrict the output to a key/scale and a pitch range (the distribution is renormalised
over the allowed keys), offer a 4-button mode (buttons 0-3 play the model's buttons 0, 2, 5, 7),
and reset the model's memory with a button combination or a controller. Sustain (CC 64) passes
through. The artefact (TorchScript, or ONNX where torch is not installed) is loaded through
``daemon.runtime`` only; the processor works in numpy.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np

from daemon.events import (CC_SUSTAIN, CONTROL_CHANGE, NOTE_OFF, NOTE_ON, ButtonEvent, Event,
                           MidiEvent, Out)
from daemon.processor import BaseProcessor, Context, ProcessorError, package_file

log = logging.getLogger("genie.pianogenie")

NUM_KEYS = 88
LOWEST_PITCH = 21
START_KEY = NUM_KEYS  # the decoder's "previous key" before the first note
NUM_DT = 33
DT_RATE_HZ = 31.25
FOUR_BUTTONS = (0, 2, 5, 7)

SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11), "ionian": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10), "aeolian": (0, 2, 3, 5, 7, 8, 10),
    "harmonic minor": (0, 2, 3, 5, 7, 8, 11), "melodic minor": (0, 2, 3, 5, 7, 9, 11),
    "dorian": (0, 2, 3, 5, 7, 9, 10), "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11), "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "locrian": (0, 1, 3, 5, 6, 8, 10), "pentatonic": (0, 2, 4, 7, 9),
    "major pentatonic": (0, 2, 4, 7, 9), "minor pentatonic": (0, 3, 5, 7, 10),
    "blues": (0, 3, 5, 6, 7, 10), "whole tone": (0, 2, 4, 6, 8, 10),
    "chromatic": tuple(range(12)),
}
TONICS = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}


def parse_scale(text: str) -> frozenset[int]:
    """"C major", "F# minor", "Bb dorian", "A minor pentatonic" -> pitch classes; "" -> all 12."""
    text = " ".join(text.strip().lower().split())
    if not text or text == "chromatic":
        return frozenset(range(12))
    m = re.fullmatch(r"([a-g])([#b]?)\s+(.+)", text)
    if not m or m.group(3) not in SCALES:
        raise ValueError(f"unknown scale {text!r} (e.g. 'C major', 'F# minor', 'D dorian'; "
                         f"modes: {', '.join(sorted(SCALES))})")
    tonic = (TONICS[m.group(1)] + {"#": 1, "b": -1, "": 0}[m.group(2)]) % 12
    return frozenset((tonic + i) % 12 for i in SCALES[m.group(3)])


def allowed_keys(scale: str, low: int, high: int) -> np.ndarray:
    """Boolean mask over the 88 keys: in the scale and within [low, high] (MIDI pitches)."""
    classes = parse_scale(scale)
    pitches = np.arange(NUM_KEYS) + LOWEST_PITCH
    return np.isin(pitches % 12, list(classes)) & (pitches >= low) & (pitches <= high)


def dt_bucket(dt_ns: int | None) -> int:
    """Time since the previous press -> the decoder's delta-time bucket (as ``data.dt_bucket_ns``)."""
    if dt_ns is None:
        return NUM_DT - 1
    return int(min(max(round(dt_ns * 1e-9 * DT_RATE_HZ), 0), NUM_DT - 1))


class ReadyRows:
    """The 8 buttons' next-key distributions for one delta-time bucket, and the states they leave."""

    __slots__ = ("bucket", "probs", "best", "h", "c")

    def __init__(self, bucket: int, probs: np.ndarray, best: np.ndarray, h, c) -> None:
        self.bucket, self.probs, self.best, self.h, self.c = bucket, probs, best, h, c


class PianoGenieProcessor(BaseProcessor):
    """Button i plays a key drawn from the decoder given the button, the key before and the time."""

    name: ClassVar[str] = "pianogenie"
    defaults: ClassVar[dict] = {
        "weights": "",  # a decoder exported by `genie export pianogenie`; "" = the shipped one
        "decoder": "iqae",  # the shipped decoder to play: "iqae" (buttons follow pitch) or "vq" (VQ-VAE)
        "temperature": 0.25,  # the paper's demos; 0 always plays the likeliest key
        "velocity": 100,  # for buttons without a velocity (keyboard, gamepad)
        "buttons": 8,  # 8, or 4: buttons 0-3 play the model's buttons 0, 2, 5, 7
        "scale": "",  # restrict to a key/scale, e.g. "C major", "A minor pentatonic"; "" = all keys
        "low": 21,  # lowest MIDI pitch played (A0)
        "high": 108,  # highest MIDI pitch played (C8)
        "chord_ms": 5.0,  # presses closer than this are a chord, which the model hears low button first
        "reset_cc": -1,  # a controller number that resets the model's memory (value > 0); -1 = none
        "reset_buttons": [],  # buttons that, all held, reset the memory (e.g. [0, 7]); [] = none
    }
    decoders: ClassVar[dict[str, str]] = {"iqae": "weights/pianogenie_decoder.pt",
                                          "vq": "weights/pianogenie_vq_decoder.pt"}  # option "decoder"
    model_files: ClassVar[tuple[str, ...]] = tuple(decoders.values())
    warmup_calls: ClassVar[int] = 20  # TorchScript optimises a function over its first calls

    # ---- start-up --------------------------------------------------------------------------

    def start(self, ctx: Context) -> None:
        super().start(ctx)
        opts = self.options
        if opts["buttons"] not in (4, 8):
            raise ProcessorError(f"option 'buttons' of processor {self.name!r} must be 8 or 4, "
                                 f"got {opts['buttons']}")
        if not 21 <= opts["low"] <= opts["high"] <= 108:
            raise ProcessorError(f"options low/high of processor {self.name!r} must satisfy "
                                 f"21 <= low <= high <= 108, got {opts['low']}..{opts['high']}")
        if not 1 <= opts["velocity"] <= 127:
            raise ProcessorError(f"option 'velocity' of processor {self.name!r} must be 1..127, "
                                 f"got {opts['velocity']}")
        if not opts["temperature"] >= 0:
            raise ProcessorError(f"option 'temperature' of processor {self.name!r} must be >= 0, "
                                 f"got {opts['temperature']}")
        if not 0 <= opts["chord_ms"] <= 100:
            raise ProcessorError(f"option 'chord_ms' of processor {self.name!r} must be 0..100, "
                                 f"got {opts['chord_ms']}")
        if not (opts["reset_cc"] == -1 or 0 <= opts["reset_cc"] <= 127):
            raise ProcessorError(f"option 'reset_cc' of processor {self.name!r} must be -1 or "
                                 f"0..127, got {opts['reset_cc']}")
        if opts["decoder"] not in self.decoders:
            raise ProcessorError(f"option 'decoder' of processor {self.name!r} must be one of "
                                 f"{', '.join(map(repr, self.decoders))}, got {opts['decoder']!r}")
        if any(not isinstance(b, int) or not 0 <= b < opts["buttons"] for b in opts["reset_buttons"]):
            raise ProcessorError(f"option 'reset_buttons' of processor {self.name!r} must list "
                                 f"buttons 0..{opts['buttons'] - 1}, got {opts['reset_buttons']}")
        try:
            self.allowed = allowed_keys(opts["scale"], opts["low"], opts["high"])
        except ValueError as exc:
            raise ProcessorError(f"option 'scale' of processor {self.name!r}: {exc}") from None
        if not self.allowed.any():
            raise ProcessorError(f"processor {self.name!r}: no key of scale {opts['scale']!r} lies "
                                 f"in {opts['low']}..{opts['high']}")

        from daemon import runtime

        path = (Path(opts["weights"]).expanduser() if opts["weights"]
                else package_file(type(self), self.decoders[opts["decoder"]]))
        try:
            model = runtime.load_model(path)
            path = model.path
            self.step = model.function()
            self.num_buttons = int(model.attr("num_buttons"))
            sizes = (int(model.attr("num_keys")), int(model.attr("num_dt")))  # read from the artefact
            self._state_shape = (int(model.attr("num_layers")), 1, int(model.attr("hidden")))
        except runtime.ModelFileError as exc:
            raise ProcessorError(str(exc)) from None
        if self.num_buttons != 8:
            raise ProcessorError(f"model file {path}: a decoder for {self.num_buttons} buttons, not 8")
        if sizes != (NUM_KEYS, NUM_DT):
            raise ProcessorError(f"model file {path}: a decoder for {sizes[0]} keys and {sizes[1]} "
                                 f"time buckets, not {NUM_KEYS} and {NUM_DT}")
        self._temperature = opts["temperature"] if opts["temperature"] >= 1e-3 else 0.0  # below: argmax
        self._mask = np.where(self.allowed, 0.0, -np.inf).astype(np.float32)
        self._buttons = np.arange(self.num_buttons)
        self._rng = ctx.rng()
        self._held: dict[tuple[str, int], int] = {}  # (source, input button) -> MIDI pitch
        self._down: set[int] = set()  # input buttons held, for the reset combination
        self.misses = 0  # presses that found no ready row and ran the step themselves
        self._inflight: tuple | None = None  # (generation, buckets) a worker is computing
        self.reset()
        runtime.warm_up(lambda: self._rows(NUM_DT - 1, NUM_DT - 1), self.warmup_calls)
        h, c = self._initial_state()
        runtime.check_finite(self.step(self._buttons[:1], np.array([START_KEY]), np.array([NUM_DT - 1]), h, c),
                             f"model file {path}")
        self._ready = {}
        log.info("pianogenie decoder %s (%s): %d buttons%s, temperature %g", path, model.format, self.num_buttons,
                 " (4-button mode)" if opts["buttons"] == 4 else "", opts["temperature"])

    def _initial_state(self) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(self._state_shape, np.float32), np.zeros(self._state_shape, np.float32)

    def reset(self) -> None:
        """Forget the performance: a fresh LSTM state, the start symbol, no previous press."""
        self.h, self.c = self._initial_state()
        self.prev_key = START_KEY
        self.last_press_ns: int | None = None
        self._ready: dict[int, ReadyRows] = {}
        self._chord: list[tuple[int, int]] = []  # (model button, key) of the chord, in press order
        self._chord_start_ns = 0
        self._chord_base = (self.h, self.c, self.prev_key, NUM_DT - 1)

    # ---- the model -------------------------------------------------------------------------

    def _distribution(self, logits) -> tuple[np.ndarray, np.ndarray]:
        """Logits [N, 88] -> (probabilities over the allowed keys at the temperature, argmax).
        At temperature 0 the probabilities are those at temperature 1, used only to rank."""
        masked = logits + self._mask
        z = masked - masked.max(-1, keepdims=True)  # 0 at the best key, -inf off the scale
        t = self._temperature
        e = np.exp(z / (t if t > 0 else 1.0))
        return e / e.sum(-1, keepdims=True), masked.argmax(-1)

    def _rows(self, *buckets: int) -> list[ReadyRows]:
        """All buttons' next-key distributions for each bucket, in one batched step."""
        return self._rows_from(self.h, self.c, self.prev_key, buckets)

    def _rows_from(self, h0, c0, prev_key: int, buckets) -> list[ReadyRows]:
        """``_rows`` from a given state: safe on the worker thread (reads no mutable state)."""
        n, nb = self.num_buttons, len(buckets)
        button = np.tile(self._buttons, nb)
        prev = np.full(n * nb, prev_key, dtype=np.int64)
        dt = np.repeat(np.asarray(buckets, dtype=np.int64), n)
        logits, h, c = self.step(button, prev, dt, np.repeat(h0, n * nb, 1), np.repeat(c0, n * nb, 1))
        probs, best = self._distribution(logits)
        return [ReadyRows(b, probs[i * n:(i + 1) * n], best[i * n:(i + 1) * n],
                          h[:, i * n:(i + 1) * n], c[:, i * n:(i + 1) * n])
                for i, b in enumerate(buckets)]

    # Ready rows belong to one model state. The state's generation moves on with every press and
    # reset; rows made for an older generation (by a worker that finished late) are never used.
    @property
    def _ready(self) -> dict[int, ReadyRows]:
        gen, rows = self._ready_pack
        return rows if gen == self._state_gen else {}

    @_ready.setter
    def _ready(self, rows: dict[int, ReadyRows]) -> None:
        self._state_gen = getattr(self, "_state_gen", 0) + (0 if rows else 1)
        self._ready_pack = (self._state_gen, rows)

    def _wanted(self, now_ns: int) -> tuple[int, ...] | None:
        """The buckets a press at ``now_ns`` (and a moment later) needs, or None when ready."""
        b = dt_bucket(None if self.last_press_ns is None else now_ns - self.last_press_ns)
        ready = self._ready
        if b in ready and min(b + 1, NUM_DT - 1) in ready:
            return None
        return (b,) if b == NUM_DT - 1 else (b, b + 1)

    def refresh(self, now_ns: int) -> None:
        """Have rows ready for the bucket a press at ``now_ns`` would fall in, and the next one."""
        wanted = self._wanted(now_ns)
        if wanted is not None:
            self._ready = {r.bucket: r for r in self._rows(*wanted)}

    def refresh_in_worker(self, now_ns: int) -> None:
        """``refresh`` on the processor's worker (``Context.submit``), so no press waits for it.
        The job reads a copy of the state; its rows come back on the engine thread
        (``_take_rows``) with the state's generation and are dropped if a press came first."""
        wanted = self._wanted(now_ns)
        if wanted is None or self._inflight == (self._state_gen, wanted):
            return
        gen, h, c, prev = self._state_gen, self.h, self.c, self.prev_key
        self._inflight = (gen, wanted)

        def job(token) -> Iterator[tuple[int, dict[int, ReadyRows]]]:
            yield gen, {r.bucket: r for r in self._rows_from(h, c, prev, wanted)}

        self.ctx.submit(job, self._take_rows)

    def _take_rows(self, piece: tuple[int, dict[int, ReadyRows]]) -> list[Out]:
        gen, rows = piece
        if gen == self._state_gen:
            self._ready_pack = (gen, rows)
        return []

    def _draw(self, probs: np.ndarray, best: int) -> int:
        """A key from one row, avoiding keys sounding now (the same key twice would have its two
        note-offs clash); when every allowed key is sounding, the row as it is."""
        sounding = [p - LOWEST_PITCH for p in self._held.values()]
        if sounding:
            p = probs.copy()
            p[sounding] = 0.0
            if p.sum() > 0:
                probs = p
                if best in sounding:
                    best = int(p.argmax())
        if self._temperature == 0:
            return int(best)
        cdf = np.cumsum(probs, dtype=np.float64)
        return int(min(np.searchsorted(cdf, self._rng.random() * cdf[-1], side="right"), NUM_KEYS - 1))

    def _feed(self, button: int, dt: int, key: int | None) -> int:
        """One decoder step from the current state: draw the key (or take ``key``), advance."""
        logits, self.h, self.c = self.step(np.array([button]), np.array([self.prev_key]), np.array([dt]),
                                           self.h, self.c)
        if key is None:
            probs, best = self._distribution(logits)
            key = self._draw(probs[0], int(best[0]))
        self.prev_key = key
        return key

    def press(self, button: int, now_ns: int) -> int:
        """The key that model button ``button`` plays at ``now_ns``; the model's state moves on."""
        window_ns = int(self.options["chord_ms"] * 1e6)
        in_chord = bool(self._chord) and now_ns - self._chord_start_ns <= window_ns
        if in_chord and any(b > button for b, _ in self._chord):
            return self._join_chord_below(button, now_ns)
        dt_ns = None if self.last_press_ns is None else now_ns - self.last_press_ns
        bucket = dt_bucket(dt_ns)
        if not in_chord:
            self._chord, self._chord_start_ns = [], now_ns
            self._chord_base = (self.h, self.c, self.prev_key, bucket)
        row = self._ready.get(bucket)
        if row is None:
            self.misses += 1
            row = self._rows(bucket)[0]
        key = self._draw(row.probs[button], int(row.best[button]))
        self.h, self.c = row.h[:, button:button + 1], row.c[:, button:button + 1]
        self.prev_key = key
        self.last_press_ns = now_ns
        self._ready = {}
        self._chord.append((button, key))
        return key

    def _join_chord_below(self, button: int, now_ns: int) -> int:
        """A lower button joins a chord: replay the chord low button first from its start,
        drawing the new note in its place and keeping the notes already sounding."""
        self.h, self.c, self.prev_key, first_bucket = self._chord_base
        order = sorted([*self._chord, (button, None)], key=lambda m: m[0])
        new_key = -1
        for i, (b, key) in enumerate(order):
            got = self._feed(b, first_bucket if i == 0 else 0, key)
            if key is None:
                new_key = got
        self._chord = [(b, new_key if k is None else k) for b, k in order]
        self.last_press_ns = max(self.last_press_ns or now_ns, now_ns)
        self._ready = {}
        return new_key

    # ---- events ----------------------------------------------------------------------------

    def on_event(self, ev: Event) -> Iterable[Out]:
        if isinstance(ev, ButtonEvent):
            return self._on_button(ev)
        if isinstance(ev, MidiEvent) and ev.status == CONTROL_CHANGE and len(ev.message) == 3:
            if ev.message[1] == self.options["reset_cc"] and ev.message[2] > 0:
                self.reset()
                log.info("pianogenie: memory reset (CC %d)", ev.message[1])
                return []
            if ev.message[1] == CC_SUSTAIN:
                return [Out(ev.time_ns, ev.message, voice="sustain")]
        return ()

    def _on_button(self, ev: ButtonEvent) -> list[Out]:
        opts = self.options
        if not 0 <= ev.button < opts["buttons"]:
            return []
        key = (ev.source, ev.button)
        voice = f"{ev.source}:{ev.button}"
        if not ev.pressed:
            self._down.discard(ev.button)
            pitch = self._held.pop(key, None)
            return [] if pitch is None else [Out(ev.time_ns, (NOTE_OFF, pitch, 0), voice=voice)]
        if key in self._held:  # a held button pressed again (key repeat, bounce): nothing
            return []
        self._down.add(ev.button)
        combo = set(opts["reset_buttons"])
        if combo and combo <= self._down and ev.button in combo:
            self.reset()
            log.info("pianogenie: memory reset (buttons %s)", sorted(combo))
            return []
        button = FOUR_BUTTONS[ev.button] if opts["buttons"] == 4 else ev.button
        pitch = self.press(button, ev.time_ns) + LOWEST_PITCH
        self._held[key] = pitch
        return [Out(ev.time_ns, (NOTE_ON, pitch, ev.velocity or opts["velocity"]), voice=voice)]

    def on_idle(self, now_ns: int) -> Iterable[Out]:
        if not self.ctx.can_submit:
            self.refresh(now_ns)
        else:
            self.refresh_in_worker(now_ns)
        return ()

    def on_release(self, reason: str) -> None:
        """The engine ended our notes (panic, switch, ...) and cancelled our jobs: no key counts
        as held any more (a button still down plays again when pressed), and the next rows are
        asked for afresh (the cancelled job's never come)."""
        self._held.clear()
        self._down.clear()
        self._inflight = None

    def stop(self) -> None:
        self._held.clear()  # the scheduler's ledger sends the note-offs
        self._ready = {}
