"""``drumvae``: a drummer that follows the DAW's clock; taps become grooves, with human velocity
and timing.

The processor plays 2-bar *segments* of a groove (32 sixteenths, 9 drum classes) decoded by the
exported Drum VAE (``drumvae.pt``: ``encode``, ``decode``; see ``drumvae.export``) from a latent z.

Time. With ``clock = true`` it follows the DAW's transport (``Context.transport``): bar position
by counting MIDI clocks, Start plays from the downbeat, Stop and a lost clock end every note,
Song Position Pointer and Continue resume at the new place. Without a DAW clock it runs a
transport of its own at ``bpm`` (button 7 starts and stops it; ``send_clock`` also sends MIDI
clock, Start and Stop on its output, so a DAW or a drum machine can follow Genie).

Ahead of time, never late. At the first clock of each segment a job on the processor's worker
decodes the next one (2 bars ahead: at least a beat before it is due), and its hits land in a
``TickSchedule``, which places each note a few clocks before it is due with the newest tempo
estimate; micro-timing offsets move a hit up to half a sixteenth early or late (an early hit is
due before its grid step). The pattern a Start plays first is decoded beforehand. Velocities and
offsets are played with a drummer's spread (``drumvae.spread``: the decoder alone plays them too
evenly), with the table of the input that made the groove (a new groove, taps, or humanize);
``spread = false`` plays them exactly as decoded.

Controls (the 8 buttons; CCs are options):
- buttons 0-3 tap a rhythm: after a beat without taps, the taps (with their timing and force)
  become a groove through the model's tap2drum input, from the next bar on;
- 4: a new groove (from the aggregate posterior: a training window's z, when the weights ship a
  groove bank, plus noise; otherwise a prior sample); 5: a fill in the next bar, then back;
- 6: keep the current groove (first in A, then in B); with both kept, ``morph_cc`` mixes them;
- 7: start/stop (own clock);
- CCs: ``variation_cc`` (how far z wanders each loop), ``temperature_cc``, ``style_cc``,
  ``morph_cc``; each takes effect from the next segment.

Humanize mode (``mode = "humanize"``, with ``buttons = "none"``): drum notes from the DAW are
heard on the grid; each 2 bars heard come back, on the next 2 bars, with the model's velocities
and timing (the hits as played). A 2-bar model cannot look ahead live, so this is for a looping
part: the DAW plays its loop into Genie with its own drums muted, and hears the humanized loop
one loop later.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from daemon import runtime
from daemon.events import (CLOCK, CONTROL_CHANGE, NOTE_OFF, NOTE_ON, START, STOP, ButtonEvent, Event,
                           MidiEvent, Out, TransportEvent)
from daemon.processor import (TICKS_PER_BEAT, BaseProcessor, Context, ProcessorError, TickSchedule,
                              Transport, package_file)
from drumvae.kit import (GM_DRUM_CHANNEL, GM_OUTPUT_PITCHES, HUMANIZE, RECONSTRUCT, TAP, TAP_LANE,
                         TRANSFORM_NAMES, pitch_to_class)
from drumvae.spread import SPREAD_FILE, Spread, read as read_spread

log = logging.getLogger("genie.drumvae")

MODEL_FILE = "weights/drumvae.pt"
META_FILE = "drumvae.json"
GROOVES_FILE = "drumvae_grooves.json"
TICKS_PER_STEP = 6  # MIDI clocks per sixteenth
STEPS = 32  # a segment: 2 bars of sixteenths
TAP_BUTTONS = (0, 1, 2, 3)
NEW_GROOVE, FILL, KEEP, START_STOP = 4, 5, 6, 7
NOTE_TICKS = 2  # a drum hit's note-off, a third of a sixteenth later


@dataclass
class Pattern:
    """A decoded segment: [32, 9] hits (bool), velocities (0-1) and offsets (-1..1 of half a step)."""

    hits: np.ndarray
    velocities: np.ndarray
    offsets: np.ndarray


class DrumVAEProcessor(BaseProcessor):
    name: ClassVar[str] = "drumvae"
    model_files: ClassVar[tuple[str, ...]] = (MODEL_FILE,)
    defaults: ClassVar[dict[str, Any]] = {
        "weights": "",  # drumvae.pt; "" = the shipped weights
        "mode": "groove",  # "groove" or "humanize"
        "style": "",  # a Groove MIDI Dataset style (rock, funk, jazz, ...); "" = the first
        "temperature": 0.5,  # hit sampling: 0 = the likeliest hits only
        "variation": 0.15,  # how far z wanders from the groove each loop (standard deviations)
        "bpm": 120.0,  # own tempo without a DAW clock
        "start": False,  # own clock: start playing at once
        "send_clock": False,  # own clock: send MIDI clock, Start and Stop on the output
        "channel": GM_DRUM_CHANNEL,  # output channel of the drums (General MIDI: 10)
        "pitches": [],  # 9 output pitches, one per class (default General MIDI)
        "spread": True,  # velocities and timing with a drummer's spread (drumvae.spread); false: as decoded
        "morph_cc": 21, "variation_cc": 22, "temperature_cc": 23, "style_cc": 24,
    }

    # ---- start-up ------------------------------------------------------------------------------

    def start(self, ctx: Context) -> None:
        super().start(ctx)
        opts = self.options
        if opts["mode"] not in ("groove", "humanize"):
            raise ProcessorError(f"option 'mode' of processor 'drumvae' must be groove or humanize, "
                                 f"got {opts['mode']!r}")
        path = Path(opts["weights"]) if opts["weights"] else package_file(type(self), MODEL_FILE)
        try:
            self.model = runtime.load_model(path)
            self._decode_fn, self._encode_fn = self.model.function("forward"), self.model.function("encode")
            self.z_dim = int(self.model.attr("z_dim"))
        except runtime.ModelFileError as exc:
            raise ProcessorError(str(exc)) from None
        meta_path = path.with_name(META_FILE)
        try:
            self.meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise ProcessorError(f"model file {meta_path}: unreadable ({exc})") from None
        self.styles: list[str] = list(self.meta.get("styles", [])) or ["rock"]
        pitches = opts["pitches"] or list(self.meta.get("gm_output_pitches", GM_OUTPUT_PITCHES))
        if len(pitches) != 9 or any(not isinstance(p, int) or not 0 <= p <= 127 for p in pitches):
            raise ProcessorError("option 'pitches' of processor 'drumvae' must list 9 notes 0-127")
        if not 1 <= opts["channel"] <= 16:
            raise ProcessorError("option 'channel' of processor 'drumvae' must be 1-16")
        self.pitches = pitches
        self.channel = opts["channel"] - 1
        self.classes = pitch_to_class()
        self.style = self._style_index(opts["style"])
        self.temperature = max(float(opts["temperature"]), 1e-3)
        self.variation = float(opts["variation"])
        self.rng = np.random.default_rng(ctx.seed)
        self.bank = self._load_bank(path.with_name(GROOVES_FILE))
        self.spreads = self._load_spreads(path.with_name(SPREAD_FILE)) if opts["spread"] else {}
        self.z = self._new_z()
        self.z_from = RECONSTRUCT  # the input transform that made z (its spread table plays it)
        self.kept: list[np.ndarray | None] = [None, None]
        self.morph: float | None = None
        self._schedule: TickSchedule | None = None
        self.decided: set[int] = set()  # segments whose notes are in the schedule (or coming)
        self.jobs: list = []
        self.taps: list[tuple[float, int]] = []  # (tick, velocity)
        self.heard: dict[int, np.ndarray] = {}  # humanize: segment -> [32, 9] hits heard
        self.fill_bar: int | None = None
        self.decodes = 0
        runtime.warm_up(lambda: self._decode(self.z, 0, self._noise()), 5)
        runtime.check_finite(self._decode_fn(self.z[None], np.array([0]), np.array([0]), self._noise(), 1.0),
                             f"model file {path}")
        self.ready = self._decode(self.z, 0, self._noise())  # what a Start plays first
        self.own: Transport | None = None
        self.own_next_ns = 0
        log.info("drumvae %s (%s): %d styles, style %s, temperature %g, variation %g%s", self.model.path,
                 self.model.format, len(self.styles), self.styles[self.style], self.temperature, self.variation,
                 f", groove bank of {sum(len(v) for v in self.bank.values())}" if self.bank else
                 " (no groove bank: new grooves are prior samples)")

    def _style_index(self, style: str) -> int:
        if not style:
            return 0
        if style not in self.styles:
            raise ProcessorError(f"option 'style' of processor 'drumvae': unknown style {style!r} "
                                 f"(know {', '.join(self.styles)})")
        return self.styles.index(style)

    def _load_bank(self, path: Path) -> dict[str, np.ndarray]:
        """Latent codes of training windows by style (``drumvae.grooves``), if shipped."""
        if not path.is_file():
            return {}
        try:
            raw = json.loads(path.read_text())
            return {k: np.asarray(v, dtype=np.float32).reshape(-1, self.z_dim) for k, v in raw["z"].items()}
        except (OSError, ValueError, KeyError) as exc:
            raise ProcessorError(f"model file {path}: unreadable ({exc})") from None

    def _load_spreads(self, path: Path) -> dict[int, Spread]:
        """A drummer's spread of velocity and timing per input transform (``drumvae.spread``), if shipped."""
        if not path.is_file():
            log.info("drumvae: no %s beside the weights: velocities and timing play as decoded", SPREAD_FILE)
            return {}
        try:
            tables = read_spread(path)
            return {TRANSFORM_NAMES.index(k): t for k, t in tables.items() if k in TRANSFORM_NAMES}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ProcessorError(f"model file {path}: unreadable ({exc})") from None

    @property
    def transport(self) -> Transport | None:
        return self.ctx.transport if self.own is None else self.own

    @property
    def schedule(self) -> TickSchedule:
        if self._schedule is None or self._schedule.transport is not self.transport:
            self._schedule = TickSchedule(self.transport, horizon_ticks=TICKS_PER_STEP, keep_channel=True)
        return self._schedule

    # ---- the model (also run on the worker: reads only what it is given) ----------------------

    def _noise(self) -> np.ndarray:
        return self.rng.random((1, STEPS, 9), dtype=np.float32)

    def _new_z(self) -> np.ndarray:
        """From the aggregate posterior: a training window's z of this style, plus a little noise."""
        codes = self.bank.get(self.styles[self.style]) if self.bank else None
        if codes is None or not len(codes):
            codes = next(iter(self.bank.values()), None) if self.bank else None
        if codes is not None and len(codes):
            base = codes[self.rng.integers(len(codes))]
            return (base + 0.1 * self.rng.standard_normal(self.z_dim)).astype(np.float32)
        return self.rng.standard_normal(self.z_dim).astype(np.float32)

    def _decode(self, z: np.ndarray, fill: int, noise: np.ndarray, style: int | None = None,
                z_from: int = RECONSTRUCT) -> Pattern:
        """Decode one segment; velocities and offsets get the spread of ``z_from``'s table."""
        logits, vel, off = self._decode_fn(z[None], np.array([self.style if style is None else style]),
                                           np.array([fill]), noise, self.temperature)
        hits = noise[0] < 1.0 / (1.0 + np.exp(-logits[0] / self.temperature))  # as decode drew them
        table = self.spreads.get(z_from)
        if table is None:
            return Pattern(hits, vel[0].clip(0, 1) * hits, off[0].clip(-1, 1) * hits)
        return Pattern(hits, *table.apply(hits, vel[0], off[0]))

    def _encode(self, grid: np.ndarray, which: int) -> np.ndarray:
        (z,) = self._encode_fn(grid[None].astype(np.float32), np.array([which]), np.zeros((1, self.z_dim), np.float32))
        return z[0].astype(np.float32)

    def _loop_z(self) -> np.ndarray:
        """This loop's z: the groove (or the morph of A and B) wandered by ``variation``."""
        z = self.z
        if self.morph is not None and self.kept[0] is not None and self.kept[1] is not None:
            z = (1 - self.morph) * self.kept[0] + self.morph * self.kept[1]
        return (z + self.variation * self.rng.standard_normal(self.z_dim)).astype(np.float32)

    def _loop_from(self) -> int:
        """The transform whose spread plays this loop: a morph mixes grooves, played as reconstructions."""
        if self.morph is not None and self.kept[0] is not None and self.kept[1] is not None:
            return RECONSTRUCT
        return self.z_from

    # ---- planning ------------------------------------------------------------------------------

    def _plan(self, seg: int, from_tick: int) -> None:
        """Decode segment ``seg`` on the worker; its hits from ``from_tick`` on go to the schedule."""
        self.decided.add(seg)
        z, noise, style, z_from = self._loop_z(), self._noise(), self.style, self._loop_from()
        first = seg * STEPS * TICKS_PER_STEP
        fill_bar = self.fill_bar if self.fill_bar is not None and first <= self.fill_bar < first + STEPS * TICKS_PER_STEP else None
        fill_noise = self._noise() if fill_bar is not None else None
        if fill_bar is not None:
            self.fill_bar = None

        def job(token) -> Iterator[tuple[int, int, Pattern, tuple[int, int] | None]]:
            yield seg, from_tick, self._decode(z, 0, noise, style, z_from), None
            if fill_bar is not None and not token.cancelled:
                bar_ticks = STEPS * TICKS_PER_STEP // 2
                yield seg, fill_bar, self._decode(z, 1, fill_noise, style, z_from), (fill_bar, fill_bar + bar_ticks)

        self.jobs.append(self.ctx.submit(job, self._keep))

    def _keep(self, piece: tuple[int, int, Pattern, tuple[int, int] | None]) -> list[Out]:
        """A decoded segment (or a fill bar in it), on the engine thread: into the schedule."""
        seg, from_tick, pattern, window = piece
        if seg not in self.decided:
            return []
        self.decodes += 1
        if window is not None:  # a fill replaces its bar
            self.schedule.clear(window[0], window[1])
        self._add(seg, pattern, from_tick, window)
        return []

    def _add(self, seg: int, p: Pattern, from_tick: float, window: tuple[int, int] | None = None) -> None:
        first = seg * STEPS * TICKS_PER_STEP
        for step, cls in zip(*np.nonzero(p.hits)):
            grid_tick = first + step * TICKS_PER_STEP
            if window is not None and not window[0] <= grid_tick < window[1]:
                continue
            if grid_tick < from_tick:
                continue
            tick = grid_tick + float(p.offsets[step, cls]) * TICKS_PER_STEP / 2
            velocity = int(np.clip(round(float(p.velocities[step, cls]) * 127), 1, 127))
            pitch = self.pitches[cls]
            self.schedule.add(tick, (NOTE_ON | self.channel, pitch, velocity), f"s{seg}")
            self.schedule.add(tick + NOTE_TICKS, (NOTE_OFF | self.channel, pitch, 0), f"s{seg}")

    def _replan(self, from_tick: int) -> None:
        """The groove changed: what is decided from ``from_tick`` on is decided again."""
        for job in self.jobs:
            job.cancel()
        self.jobs = []
        self.schedule.clear(from_tick)
        self.ctx.retract(from_ns=self.transport.time_of(from_tick))
        seg = from_tick // (STEPS * TICKS_PER_STEP)
        self.decided = {s for s in self.decided if s < seg}
        self._plan(seg, from_tick)

    def _forget(self) -> None:
        """Stop, a lost clock, a jump: nothing queued, nothing sounding."""
        for job in self.jobs:
            job.cancel()
        self.jobs = []
        self.decided.clear()
        self.taps.clear()
        if self._schedule is not None:
            self._schedule.clear()
        self.ctx.retract(end_sounding=True)

    # ---- events --------------------------------------------------------------------------------

    def on_event(self, ev: Event) -> Iterable[Out]:
        if isinstance(ev, TransportEvent):
            return self._on_transport(ev)
        if isinstance(ev, ButtonEvent):
            return self._on_button(ev)
        if isinstance(ev, MidiEvent):
            if ev.status == CONTROL_CHANGE and len(ev.message) == 3:
                self._on_cc(ev.message[1], ev.message[2])
            elif ev.is_note_on and self.options["mode"] == "humanize":
                self._hear(ev)
        return ()

    def _on_transport(self, ev: TransportEvent) -> list[Out]:
        if ev.kind in ("start", "continue", "position", "stop", "lost"):
            self._forget()
            return []
        if ev.kind != "tick":
            return []
        seg_ticks = STEPS * TICKS_PER_STEP
        seg = ev.tick // seg_ticks
        out: list[Out] = []
        if seg not in self.decided:  # just started here: the pattern decoded beforehand
            self.decided.add(seg)
            if self.options["mode"] == "groove":
                self._add(seg, self.ready, ev.tick)
        if self.options["mode"] == "humanize" and ev.tick % seg_ticks == 0 and seg - 1 in self.heard:
            self._humanize(seg - 1, seg)
        elif self.options["mode"] == "groove" and seg + 1 not in self.decided and self.transport.tick_ns:
            self._plan(seg + 1, (seg + 1) * seg_ticks)
        self._taps_done(ev.tick)
        out += self.schedule.due(ev.tick, ev.time_ns)
        return out

    def _on_button(self, ev: ButtonEvent) -> list[Out]:
        if not ev.pressed:
            return []
        t = self.transport
        playing = t is not None and t.running and t.last_tick is not None
        if ev.button in TAP_BUTTONS:
            tick = t.tick_at(ev.time_ns) if playing else None
            if tick is not None:
                self.taps.append((tick, ev.velocity or 100))
        elif ev.button == NEW_GROOVE:
            self.z, self.z_from = self._new_z(), RECONSTRUCT
            self._changed()
        elif ev.button == FILL and playing:
            self.fill_bar = t.next_bar_tick()
            self._replan(self.fill_bar)
        elif ev.button == KEEP:
            slot = 0 if self.kept[0] is None or self.kept[1] is not None else 1
            if self.kept[0] is not None and self.kept[1] is not None:
                self.kept = [self.z.copy(), None]
                slot = 0
            self.kept[slot] = self.z.copy()
            log.info("drumvae: groove kept as %s", "AB"[slot])
        elif ev.button == START_STOP:
            return self._start_stop(ev.time_ns)
        return []

    def _changed(self) -> None:
        """A new z: from the next bar when playing; otherwise what a Start plays first."""
        t = self.transport
        if t is not None and t.running and t.last_tick is not None and t.tick_ns:
            self._replan(t.next_bar_tick())
        elif not self.ctx.can_submit:  # no engine (a bench, a test): decode here
            self.ready = self._decode(self._loop_z(), 0, self._noise(), z_from=self._loop_from())
        else:
            z, noise, z_from = self._loop_z(), self._noise(), self._loop_from()
            self.jobs.append(self.ctx.submit(lambda token: iter([self._decode(z, 0, noise, z_from=z_from)]),
                                             self._set_ready))

    def _set_ready(self, pattern: Pattern) -> list[Out]:
        self.ready = pattern
        return []

    def _on_cc(self, cc: int, value: int) -> None:
        o = self.options
        if cc == o["morph_cc"]:
            self.morph = value / 127
        elif cc == o["variation_cc"]:
            self.variation = value / 127
        elif cc == o["temperature_cc"]:
            self.temperature = max(value / 127 * 1.5, 1e-3)
        elif cc == o["style_cc"]:
            self.style = min(value * len(self.styles) // 128, len(self.styles) - 1)

    # ---- taps: tap2drum --------------------------------------------------------------------

    def _taps_done(self, now_tick: int) -> None:
        """A beat after the last tap, three taps or more become the groove from the next bar."""
        if not self.taps or now_tick - self.taps[-1][0] < TICKS_PER_BEAT:
            return
        taps, self.taps = self.taps, []
        if len(taps) < 3:
            return
        bar_ticks = STEPS * TICKS_PER_STEP // 2
        start = int(taps[0][0] + TICKS_PER_STEP / 2) // bar_ticks * bar_ticks  # the first tap's bar
        grid = np.zeros((STEPS, 27), dtype=np.float32)
        for tick, velocity in taps:
            pos = (tick - start) / TICKS_PER_STEP
            step = int(round(pos))
            if not 0 <= step < STEPS:
                continue
            grid[step, TAP_LANE] = 1.0
            grid[step, 9 + TAP_LANE] = max(grid[step, 9 + TAP_LANE], velocity / 127)
            grid[step, 18 + TAP_LANE] = float(np.clip((pos - step) * 2, -1, 1))
        if taps[-1][0] - start < bar_ticks:  # one bar tapped: it loops
            grid[STEPS // 2:] = grid[:STEPS // 2]
        self.z, self.z_from = self._encode(grid, TAP), TAP
        log.info("drumvae: %d taps became a groove", len(taps))
        self._changed()

    # ---- humanize ------------------------------------------------------------------------------

    def _hear(self, ev: MidiEvent) -> None:
        t = self.transport
        cls = self.classes.get(ev.message[1])
        tick = t.tick_at(ev.time_ns) if t is not None and t.running else None
        if cls is None or tick is None:
            return
        step = int(round(tick / TICKS_PER_STEP))
        self.heard.setdefault(step // STEPS, np.zeros((STEPS, 9), dtype=bool))[step % STEPS, cls] = True

    def _humanize(self, heard_seg: int, play_seg: int) -> None:
        """The hits heard in ``heard_seg`` with the model's velocities and timing, on ``play_seg``."""
        hits = self.heard.pop(heard_seg)
        for s in [s for s in self.heard if s < heard_seg]:
            del self.heard[s]
        self.decided.add(play_seg)
        grid = np.zeros((STEPS, 27), dtype=np.float32)
        grid[:, :9] = hits
        noise = np.where(hits, -1.0, 2.0).astype(np.float32)[None]  # the decoder plays exactly the hits heard
        style = self.style

        def job(token) -> Iterator[tuple[int, int, Pattern, None]]:
            z = self._encode(grid, HUMANIZE)
            yield play_seg, play_seg * STEPS * TICKS_PER_STEP, self._decode(z, 0, noise, style, HUMANIZE), None

        self.jobs.append(self.ctx.submit(job, self._keep))

    # ---- own clock -------------------------------------------------------------------------------

    def _start_stop(self, now_ns: int) -> list[Out]:
        if self.ctx.transport is not None:
            return []  # the DAW's transport decides
        if self.own is not None and self.own.running:
            self.own.feed((STOP,), now_ns)
            self._forget()
            self.own = None
            return [Out(now_ns, (STOP,))] if self.options["send_clock"] else []
        self.own = Transport("drumvae", lost_after_ns=1 << 62)
        self.own_next_ns = now_ns
        self.own.feed((START,), now_ns)
        self._forget()
        return [Out(now_ns, (START,))] if self.options["send_clock"] else []

    def on_idle(self, now_ns: int) -> Iterable[Out]:
        out: list[Out] = []
        if self.own is None and self.ctx.transport is None and self.options["start"]:
            self.options["start"] = False
            out += self._start_stop(now_ns)
        if self.own is None or not self.own.running:
            return out
        tick_ns = 60e9 / self.options["bpm"] / TICKS_PER_BEAT
        while self.own_next_ns <= now_ns + tick_ns:  # clocks a tick ahead, at their exact times
            t = self.own_next_ns
            self.own_next_ns = round(t + tick_ns)
            if self.options["send_clock"]:
                out.append(Out(t, (CLOCK,)))
            for ev in self.own.feed((CLOCK,), t):
                out += self._on_transport(ev)
        return out

    def output_channels(self) -> Iterable[int]:
        return (self.channel + 1,)

    def on_release(self, reason: str) -> None:
        """The engine ended our notes (panic, switch, ...): plan afresh from the next clock."""
        self.jobs = []
        self.decided.clear()
        self.taps.clear()
        if self._schedule is not None:
            self._schedule.clear()

    def stop(self) -> None:
        self.jobs = []
