"""``musiclm``: call and response. It listens while you play, and answers the moment you stop.

The exported Music Transformer (``musiclm_maestro.pt``, or ``musiclm_maestro.onnx`` where torch is
not installed: ``forward(token, position, kv_cache)``, see ``musiclm.export``) reads the performance encoding (note-on, note-off, 10 ms time shifts,
velocity bins). Everything here happens on the engine thread except the model, which runs in
jobs on the processor's own worker (``Context.submit``); their results come back as pieces.

Listening. Every note heard (a MIDI keyboard, or another processor's notes through a chain) becomes
tokens at once: the time since the last event as time shifts (a long pause counts as
``max_gap_s``), a velocity bin when it changes, the note-on or note-off. A feed job runs them
through the model, so the key/value cache is current when the musician stops; one feed job is
in flight at a time and the next takes whatever arrived meanwhile.

Answering. After ``silence_ms`` with no key held (or on any button, or ``answer_cc``), an answer
job samples from the cache (``temperature``, ``top_p``), at most ``polyphony`` notes at once,
the first time shift capped at ``first_gap_ms`` so the answer starts promptly (``lead_ms`` after
the trigger: time to sample the first notes). Each note goes to
the scheduler as soon as it is sampled, ahead of the playhead by at most ``lookahead_s`` (the job
waits beyond that). It ends after ``length_s`` or ``length_notes``; a note whose note-off does not
come is ended after ``max_note_s``.

When the musician plays again the answer stops at once: the job is cancelled, what it queued is
retracted and what sounds gets its note-off, on that same engine pass. The context the model
keeps is the musician's playing (the answer is not fed back). The answer plays on ``channel``
(default 2), so a DAW can give it another instrument.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from daemon import runtime
from daemon.events import CONTROL_CHANGE, NOTE_OFF, NOTE_ON, ButtonEvent, Event, MidiEvent, Out
from daemon.processor import BaseProcessor, Context, ProcessorError, package_file

log = logging.getLogger("genie.musiclm")

MODEL_FILE = "weights/musiclm_maestro.pt"
# the performance vocabulary (musiclm.tokenizer; its ids are frozen in every checkpoint)
PAD, BOS, EOS = 0, 1, 2
TOK_NOTE_ON, TOK_NOTE_OFF, TOK_SHIFT, TOK_VELOCITY = 3, 131, 259, 359
NUM_SHIFTS, NUM_VELOCITY_BINS, VOCAB = 100, 32, 391
STEP_NS = 10_000_000  # one time shift: 10 ms
MS = 1_000_000
CACHE_LAYOUT = "ring"  # the exported step's cache (``musiclm.export``): a ring of L-1 slots


def empty_cache(model: runtime.Model, batch: int = 1) -> np.ndarray:
    """The key/value cache before the first token, for either runtime: a ring of L-1 slots,
    (layers, 2, B, H, L-1, Dh). A model file exported before the ring (its cache grew from 0)
    raises ModelFileError."""
    try:
        ring = model.attr("cache") == CACHE_LAYOUT
    except runtime.ModelFileError:
        ring = False
    if not ring:
        raise runtime.ModelFileError(f"model file {model.path}: its cache is not a ring (exported by an "
                                     "older genie); export it again with `genie export musiclm`")
    return np.zeros((int(model.attr("model.n_layer")), 2, batch, int(model.attr("model.n_head")),
                     int(model.attr("max_len")) - 1, int(model.attr("model.head_dim"))), np.float32)


def sample(logits: np.ndarray, rng: np.random.Generator, temperature: float, top_p: float) -> int:
    """One token from logits: temperature, then nucleus (top-p) sampling; 0 temperature: argmax."""
    if temperature <= 1e-3:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / temperature
    z -= z.max()
    p = np.exp(z)
    p /= p.sum()
    if top_p < 1.0:
        order = np.argsort(-p)
        keep = order[: int(np.searchsorted(np.cumsum(p[order]), top_p)) + 1]
        q = np.zeros_like(p)
        q[keep] = p[keep]
        p = q / q.sum()
    return int(rng.choice(len(p), p=p))


class MusicLMProcessor(BaseProcessor):
    name: ClassVar[str] = "musiclm"
    model_files: ClassVar[tuple[str, ...]] = (MODEL_FILE,)
    listens: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = {
        "weights": "",  # musiclm_maestro.pt; "" = the shipped weights
        "silence_ms": 800.0,  # answer after this long with no key held
        "answer_cc": -1,  # a CC (value > 0) that asks for the answer now; -1: off
        "length_s": 8.0,  # the longest answer
        "length_notes": 48,  # ... or this many notes
        "temperature": 1.0,
        "top_p": 0.95,
        "polyphony": 8,  # notes sounding at once, at most
        "lead_ms": 20.0,  # the answer starts this long after its trigger (time to sample the first notes)
        "first_gap_ms": 20.0,  # ... and its first note comes at most this long after that
        "max_note_s": 4.0,  # a note held longer is ended
        "max_gap_s": 2.0,  # a longer pause in the playing is heard as this long
        "lookahead_s": 1.0,  # how far ahead of the playhead the answer is sampled
        "channel": 2,  # the answer's MIDI channel
    }

    def start(self, ctx: Context) -> None:
        super().start(ctx)
        path = Path(self.options["weights"]) if self.options["weights"] else package_file(type(self), MODEL_FILE)
        try:
            self.model = runtime.load_model(path)
            path = self.model.path
            self._step = self.model.function()
            vocab, self.max_len, position = (int(self.model.attr("vocab_size")), int(self.model.attr("max_len")),
                                             str(self.model.attr("position")))
            cache = empty_cache(self.model)
        except runtime.ModelFileError as exc:
            raise ProcessorError(str(exc)) from None
        if vocab != VOCAB:
            raise ProcessorError(f"model file {path}: not a performance model (vocabulary of {vocab}, not {VOCAB})")
        if not 1 <= self.options["channel"] <= 16:
            raise ProcessorError("option 'channel' of processor 'musiclm' must be 1-16")
        self.channel = self.options["channel"] - 1
        self.rng = np.random.default_rng(ctx.seed)
        self.pending: list[int] = []  # tokens heard, not yet fed
        self.feeding = None  # the feed job in flight
        self.held: set[int] = set()
        self.last_ns: int | None = None  # the last event heard
        self.vel_bin = -1
        self.new_since_answer = False
        self.answer = None  # the answer job
        self.answer_end_ns = 0  # when the last note it queued is due
        self.answers = self.cut = 0
        runtime.warm_up(lambda: self._step(np.array([BOS]), 0, cache), 10)
        self.logits, self.cache = self._feed_tokens([BOS], 0, cache)
        self.position = 1
        log.info("musiclm %s (%s): context %d tokens (%s positions); answers after %.0f ms of silence",
                 path, self.model.format, self.max_len, position, self.options["silence_ms"])

    # ---- the model (run on the worker: reads only its arguments) --------------------------------

    def _feed_tokens(self, tokens: list[int], position: int, cache):
        logits = None
        for i, tok in enumerate(tokens):
            logits, cache = self._step(np.array([tok]), position + i, cache)
        return logits[0], cache

    # ---- listening -----------------------------------------------------------------------------

    def on_event(self, ev: Event) -> Iterable[Out]:
        if isinstance(ev, ButtonEvent):
            if ev.pressed:
                self._answer_now(ev.time_ns)
            return ()
        if not isinstance(ev, MidiEvent):
            return ()
        msg = ev.message
        if ev.status == CONTROL_CHANGE and len(msg) == 3 and msg[1] == self.options["answer_cc"] and msg[2]:
            self._answer_now(ev.time_ns)
        elif ev.is_note_on:
            self._stop_answer()
            self._hear(ev.time_ns, [self._velocity(msg[2]), TOK_NOTE_ON + msg[1]])
            self.held.add(msg[1])
        elif ev.is_note_off and msg[1] in self.held:
            self.held.discard(msg[1])
            self._hear(ev.time_ns, [TOK_NOTE_OFF + msg[1]])
        return ()

    def _velocity(self, velocity: int) -> int | None:
        b = min(velocity // 4, NUM_VELOCITY_BINS - 1)
        if b == self.vel_bin:
            return None
        self.vel_bin = b
        return TOK_VELOCITY + b

    def _hear(self, time_ns: int, tokens: list[int | None]) -> None:
        if self.last_ns is not None:
            gap = min(max(time_ns - self.last_ns, 0), round(self.options["max_gap_s"] * 1e9))
            steps = round(gap / STEP_NS)
            while steps > 0:
                k = min(steps, NUM_SHIFTS)
                self.pending.append(TOK_SHIFT + k - 1)
                steps -= k
        self.last_ns = time_ns
        self.pending += [t for t in tokens if t is not None]
        self.new_since_answer = True
        self._feed()

    def _feed(self) -> None:
        """Start a feed job with the tokens heard so far, unless one is running."""
        if self.feeding is not None or not self.pending:
            return
        tokens, self.pending = self.pending, []
        position, cache = self.position, self.cache
        self.position += len(tokens)
        if not self.ctx.can_submit:
            self.logits, self.cache = self._feed_tokens(tokens, position, cache)
            return

        def job(token) -> Iterator[tuple]:
            yield self._feed_tokens(tokens, position, cache)

        self.feeding = self.ctx.submit(job, self._fed)

    def _fed(self, piece: tuple) -> list[Out]:
        self.logits, self.cache = piece
        self.feeding = None
        self._feed()
        return []

    # ---- answering -----------------------------------------------------------------------------

    def on_idle(self, now_ns: int) -> Iterable[Out]:
        if self.answer is not None and self.answer.done() and now_ns >= self.answer_end_ns:
            self.answer = None  # played to its end: the stage is the musician's again
        if (self.answer is None and self.new_since_answer and not self.held and self.last_ns is not None
                and now_ns - self.last_ns >= self.options["silence_ms"] * MS):
            self._answer_now(now_ns)
        return ()

    def _answer_now(self, now_ns: int) -> None:
        if self.answer is not None or self.feeding is not None or self.pending or not self.ctx.can_submit:
            return  # an answer plays, or the model has not heard everything yet (next idle call)
        self.new_since_answer = False
        self.answers += 1
        start_ns = now_ns + round(self.options["lead_ms"] * MS)
        job = self._answer_job(self.logits, self.cache, self.position, start_ns,
                               np.random.default_rng(self.rng.integers(1 << 62)))
        self.answer_end_ns = now_ns
        self.answer = self.ctx.submit(job, self._answered)

    def _answered(self, outs: list[Out] | None) -> list[Out]:
        """A piece of the answer, on the engine thread: scheduled now."""
        if outs:
            self.answer_end_ns = max(self.answer_end_ns, max(o.due_ns for o in outs))
        return outs or []

    def _answer_job(self, logits: np.ndarray, cache, position: int, start_ns: int, rng: np.random.Generator):
        o = self.options
        step, ch = self._step, self.channel
        length = round(o["length_s"] * 1e9)
        max_note = round(o["max_note_s"] * 1e9)
        lookahead = round(o["lookahead_s"] * 1e9)
        first_gap = max(round(o["first_gap_ms"] * MS / STEP_NS), 1)
        now = self.ctx.now_ns
        vel_mask = np.zeros(VOCAB, dtype=bool)
        vel_mask[[PAD, BOS]] = True

        def job(token) -> Iterator[list[Out] | None]:
            nonlocal logits, cache
            # its own copy: the step writes the cache in place, and the heard one goes on from here
            # when the musician plays again (this worker runs one job at a time, in order)
            cache = cache.copy()
            t = 0  # ns into the answer
            vel, notes, started = 64, 0, False
            sounding: dict[int, int] = {}  # pitch -> onset (ns into the answer)
            pos = position
            while not token.cancelled:
                mask = vel_mask.copy()
                if len(sounding) >= o["polyphony"]:
                    mask[TOK_NOTE_ON:TOK_NOTE_OFF] = True
                lg = np.where(mask, -np.inf, logits)
                tok = sample(lg, rng, o["temperature"], o["top_p"])
                out: list[Out] = []
                if tok == EOS:
                    break
                if TOK_SHIFT <= tok < TOK_VELOCITY:
                    k = tok - TOK_SHIFT + 1
                    if not started:  # the first note comes within first_gap_ms
                        k = min(k, max(first_gap - t // STEP_NS, 0))
                    t += k * STEP_NS
                    for p, onset in list(sounding.items()):
                        if t - onset >= max_note:
                            del sounding[p]
                            out.append(Out(start_ns + onset + max_note, (NOTE_OFF | ch, p, 0), voice="answer", keep_channel=True))
                    if t >= length:
                        break
                elif TOK_VELOCITY <= tok:
                    vel = 4 * (tok - TOK_VELOCITY) + 2
                elif TOK_NOTE_ON <= tok < TOK_NOTE_OFF:
                    p = tok - TOK_NOTE_ON
                    if p in sounding:
                        out.append(Out(start_ns + t, (NOTE_OFF | ch, p, 0), voice="answer", keep_channel=True))
                    sounding[p] = t
                    started = True
                    notes += 1
                    out.append(Out(start_ns + t, (NOTE_ON | ch, p, vel), voice="answer", keep_channel=True))
                elif TOK_NOTE_OFF <= tok < TOK_SHIFT:
                    p = tok - TOK_NOTE_OFF
                    if p in sounding:
                        del sounding[p]
                        out.append(Out(start_ns + t, (NOTE_OFF | ch, p, 0), voice="answer", keep_channel=True))
                yield out or None
                if notes >= o["length_notes"] and not sounding:
                    break
                lg_t, cache = step(np.array([tok]), pos, cache)
                logits = lg_t[0]
                pos += 1
                while start_ns + t - now() > lookahead and not token.cancelled:  # far enough ahead
                    token.pause(0.01)
                    yield None
            yield [Out(start_ns + t, (NOTE_OFF | ch, p, 0), voice="answer", keep_channel=True)
                   for p in sorted(sounding)] or None

        return job

    def _stop_answer(self) -> None:
        """The musician plays again: cancel, take back what is queued, end what sounds."""
        if self.answer is None:
            return
        self.cut += 1
        self.answer.cancel()
        self.answer = None
        self.ctx.retract(voice="answer", end_sounding=True)

    def output_channels(self) -> Iterable[int]:
        return (self.channel + 1,)

    def on_release(self, reason: str) -> None:
        self.answer = None
        self.feeding = None
        self._feed()

    def stop(self) -> None:
        self.answer = None
