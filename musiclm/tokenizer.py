"""The two token vocabularies of the Music Transformer paper (Huang et al. 2018, arXiv 1809.04281).

**Performance encoding** (piano; Oore et al. 2018, "This time with feeling"), frozen as
``PERFORMANCE_VOCAB`` (391 ids, recorded in every checkpoint):

====================  =========  ===========================================================
ids                   count      meaning
====================  =========  ===========================================================
0, 1, 2               3          PAD (never a target), BOS (start of a piece), EOS (its end)
3 .. 130              128        NOTE_ON pitch 0-127 (at the current velocity)
131 .. 258            128        NOTE_OFF pitch 0-127
259 .. 358            100        TIME_SHIFT 10 ms .. 1 s (id 259 + k - 1 moves k * 10 ms)
359 .. 390            32         VELOCITY bin 0-31 (MIDI velocity v -> bin v // 4; played as 4 * bin + 2)
====================  =========  ===========================================================

Times are rounded to the 10 ms grid; a gap longer than 1 s is several TIME_SHIFTs. A VELOCITY
token comes before a NOTE_ON only when the bin changes (the first NOTE_ON always gets one). At
one instant note-offs come before note-ons, each group by pitch. The sustain pedal (CC 64 >= 64)
is folded into durations before encoding: a key released while the pedal is down sounds until
the pedal comes up or the same key is struck again (Magenta's rule).

**JSB Chorales** (``Jsb16thSeparated.npz``, Coconet's 16th-note SATB version), frozen as
``JSB_VOCAB`` (131 ids): 0 PAD, 1 BOS (the start token of every chorale), 2 REST (a silent voice),
3 + p for MIDI pitch p. A chorale of T 16th-note frames is BOS followed by the 4T voice tokens in
raster order S1 A1 T1 B1 S2 A2 ... ; a held note repeats its pitch each 16th (the data does not
tell held notes from repeated ones). A "token" of the NLL is one of the 4T voice tokens (BOS is
input only); NLL is in nats.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# ---- performance vocabulary ----------------------------------------------------------------

PAD, BOS, EOS = 0, 1, 2
NOTE_ON = 3
NOTE_OFF = NOTE_ON + 128
TIME_SHIFT = NOTE_OFF + 128
NUM_SHIFTS = 100  # 10 ms .. 1 s
VELOCITY = TIME_SHIFT + NUM_SHIFTS
NUM_VELOCITY_BINS = 32
PERFORMANCE_VOCAB_SIZE = VELOCITY + NUM_VELOCITY_BINS  # 391
STEPS_PER_SECOND = 100

PERFORMANCE_VOCAB = {
    "name": "performance-v1", "size": PERFORMANCE_VOCAB_SIZE, "pad": PAD, "bos": BOS, "eos": EOS,
    "note_on": [NOTE_ON, 128], "note_off": [NOTE_OFF, 128], "time_shift": [TIME_SHIFT, NUM_SHIFTS],
    "velocity": [VELOCITY, NUM_VELOCITY_BINS], "steps_per_second": STEPS_PER_SECOND,
    "velocity_rule": "bin = v // 4; played as 4 * bin + 2", "pedal": "CC64 >= 64 folded into durations",
}

# ---- JSB vocabulary --------------------------------------------------------------------------

JSB_REST = 2
JSB_PITCH = 3
JSB_VOCAB_SIZE = JSB_PITCH + 128  # 131
JSB_VOICES = 4
JSB_VOCAB = {
    "name": "jsb-satb-v1", "size": JSB_VOCAB_SIZE, "pad": PAD, "bos": BOS, "rest": JSB_REST,
    "pitch": [JSB_PITCH, 128], "order": "S A T B per 16th-note frame (raster)",
    "start": "BOS, input only", "nll": "nats per voice token (BOS excluded)",
}


@dataclass
class Notes:
    """Notes as parallel arrays: onset and release in seconds, MIDI pitch, MIDI velocity 1-127."""

    start: np.ndarray
    end: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray

    def __len__(self) -> int:
        return len(self.pitch)

    def sorted(self) -> Notes:
        order = np.lexsort((self.pitch, self.start))
        return Notes(self.start[order], self.end[order], self.pitch[order], self.velocity[order])


def velocity_bin(v: np.ndarray | int) -> np.ndarray:
    return np.clip(np.asarray(v) // 4, 0, NUM_VELOCITY_BINS - 1)


def bin_velocity(b: np.ndarray | int) -> np.ndarray:
    return np.asarray(b) * 4 + 2


# ---- MIDI -> notes (sustain folded) -----------------------------------------------------------


def read_midi(path: str | Path, pedal: bool = True) -> Notes:
    """Every note of a MIDI file (all channels, tempo map honoured), the sustain pedal folded into
    durations when ``pedal``. Notes left on at the end of the file end there."""
    import mido

    t = 0.0
    sounding: dict[int, tuple[float, int]] = {}  # pitch -> (onset, velocity): key held down
    pedalled: dict[int, tuple[float, int]] = {}  # released keys held by the pedal
    down = False
    out: list[tuple[float, float, int, int]] = []

    def end_note(p: int, when: float) -> None:
        for held in (sounding, pedalled):
            if p in held:
                s, v = held.pop(p)
                out.append((s, max(when, s), p, v))

    for msg in mido.MidiFile(str(path)):
        t += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            end_note(msg.note, t)  # a re-struck key ends its previous sound
            sounding[msg.note] = (t, msg.velocity)
        elif msg.type in ("note_off", "note_on"):
            if msg.note in sounding:
                if pedal and down:
                    pedalled[msg.note] = sounding.pop(msg.note)
                else:
                    end_note(msg.note, t)
        elif msg.type == "control_change" and msg.control == 64 and pedal:
            now_down = msg.value >= 64
            if down and not now_down:
                for p in list(pedalled):
                    end_note(p, t)
            down = now_down
    for p in list(sounding) + list(pedalled):
        end_note(p, t)
    if not out:
        z = np.zeros(0)
        return Notes(z, z.copy(), z.astype(np.int64), z.astype(np.int64))
    a = np.array(out, dtype=np.float64)
    return Notes(a[:, 0], a[:, 1], a[:, 2].astype(np.int64), a[:, 3].astype(np.int64)).sorted()


def write_midi(notes: Notes, path: str | Path, program: int = 0) -> None:
    """Notes to a one-track MIDI file (120 bpm, 480 ticks per beat: 1 ms ticks)."""
    import mido

    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=500_000, time=0))
    track.append(mido.Message("program_change", program=program, time=0))
    # (tick, order, pitch, velocity): offs before ons at one tick, except a zero-length note's own off
    ev = []
    for s, e, p, v in zip(notes.start, notes.end, notes.pitch, notes.velocity):
        on, off = int(round(float(s) * 960)), int(round(float(e) * 960))
        ev += [(on, 1, int(p), int(v)), (max(off, on), 2 if off <= on else 0, int(p), 0)]
    ev.sort()
    last = 0
    for tick, kind, p, v in ev:
        track.append(mido.Message("note_on" if kind == 1 else "note_off", note=p, velocity=v,
                                  time=tick - last))
        last = tick
    mid.save(str(path))


# ---- notes <-> performance tokens -------------------------------------------------------------


def encode(notes: Notes) -> np.ndarray:
    """Notes -> performance tokens (int64), starting at time 0 (a leading gap is encoded)."""
    steps_on = np.round(np.asarray(notes.start) * STEPS_PER_SECOND).astype(np.int64)
    steps_off = np.round(np.asarray(notes.end) * STEPS_PER_SECOND).astype(np.int64)
    steps_off = np.maximum(steps_off, steps_on)
    pitch = np.asarray(notes.pitch, dtype=np.int64)
    vbin = velocity_bin(np.asarray(notes.velocity, dtype=np.int64))
    # events (step, kind 0 = off / 1 = on, pitch, velocity bin); offs first at one instant
    steps = np.concatenate([steps_off, steps_on])
    kind = np.concatenate([np.zeros(len(pitch), np.int64), np.ones(len(pitch), np.int64)])
    pitches = np.concatenate([pitch, pitch])
    vels = np.concatenate([vbin, vbin])
    # a note-on and note-off of one pitch at one instant: a zero-length note; keep on before off
    zero = np.concatenate([steps_off == steps_on, np.zeros(len(pitch), bool)])
    order = np.lexsort((pitches, kind + 2 * zero, steps))
    tokens: list[int] = []
    now, vel = 0, -1
    for i in order:
        gap = int(steps[i]) - now
        while gap > 0:
            k = min(gap, NUM_SHIFTS)
            tokens.append(TIME_SHIFT + k - 1)
            gap -= k
        now = int(steps[i])
        if kind[i] == 1:
            if vels[i] != vel:
                vel = int(vels[i])
                tokens.append(VELOCITY + vel)
            tokens.append(NOTE_ON + int(pitches[i]))
        else:
            tokens.append(NOTE_OFF + int(pitches[i]))
    return np.asarray(tokens, dtype=np.int64)


def decode(tokens: np.ndarray | list[int], max_duration_s: float = 5.0, velocity: int = 64) -> Notes:
    """Performance tokens -> notes. A NOTE_OFF with no sounding note is ignored; a note never
    released ends ``max_duration_s`` after its onset, or at the last time shift if sooner.
    Specials are skipped; ``velocity`` is used until the first VELOCITY token."""
    t = 0
    vel = int(velocity)
    sounding: dict[int, tuple[int, int]] = {}
    out: list[tuple[int, int, int, int]] = []
    limit = int(round(max_duration_s * STEPS_PER_SECOND))
    for tok in (int(x) for x in tokens):
        if NOTE_ON <= tok < NOTE_OFF:
            p = tok - NOTE_ON
            if p in sounding:
                s, v = sounding.pop(p)
                out.append((s, t, p, v))
            sounding[p] = (t, vel)
        elif NOTE_OFF <= tok < TIME_SHIFT:
            p = tok - NOTE_OFF
            if p in sounding:
                s, v = sounding.pop(p)
                out.append((s, t, p, v))
        elif TIME_SHIFT <= tok < VELOCITY:
            t += tok - TIME_SHIFT + 1
            for p, (s, v) in list(sounding.items()):
                if t - s >= limit:
                    del sounding[p]
                    out.append((s, s + limit, p, v))
        elif VELOCITY <= tok < PERFORMANCE_VOCAB_SIZE:
            vel = int(bin_velocity(tok - VELOCITY))
    for p, (s, v) in sounding.items():
        out.append((s, min(max(t, s), s + limit), p, v))
    if not out:
        z = np.zeros(0)
        return Notes(z, z.copy(), z.astype(np.int64), z.astype(np.int64))
    a = np.array(out, dtype=np.int64)
    return Notes(a[:, 0] / STEPS_PER_SECOND, a[:, 1] / STEPS_PER_SECOND, a[:, 2], a[:, 3]).sorted()


def tokens_before(tokens: np.ndarray, time_s: float) -> int:
    """The index of the first note or velocity event at or after ``time_s`` (len if none)."""
    target = int(round(time_s * STEPS_PER_SECOND))
    now = 0
    for i, tok in enumerate(np.asarray(tokens).tolist()):
        if TIME_SHIFT <= tok < VELOCITY:
            now += tok - TIME_SHIFT + 1
        elif tok >= NOTE_ON and now >= target:
            return i
    return len(tokens)


def describe(tok: int) -> str:
    """One token as text, e.g. ``ON 60``, ``SHIFT 250ms``, ``VEL 20``."""
    if tok == PAD:
        return "PAD"
    if tok == BOS:
        return "BOS"
    if tok == EOS:
        return "EOS"
    if tok < NOTE_OFF:
        return f"ON {tok - NOTE_ON}"
    if tok < TIME_SHIFT:
        return f"OFF {tok - NOTE_OFF}"
    if tok < VELOCITY:
        return f"SHIFT {(tok - TIME_SHIFT + 1) * 10}ms"
    return f"VEL {tok - VELOCITY}"


# ---- JSB -------------------------------------------------------------------------------------


def jsb_encode(frames: np.ndarray, bos: bool = True) -> np.ndarray:
    """A chorale (T x 4 pitches, NaN = silence) -> BOS + 4T tokens, S A T B per 16th."""
    f = np.asarray(frames, dtype=np.float64)
    tok = np.where(np.isnan(f), JSB_REST, JSB_PITCH + np.nan_to_num(f, nan=0.0)).astype(np.int64).reshape(-1)
    return np.concatenate([[BOS], tok]).astype(np.int64) if bos else tok


def jsb_decode(tokens: np.ndarray) -> np.ndarray:
    """Voice tokens (BOS stripped if present) -> T x 4 float pitches with NaN for rests."""
    t = np.asarray(tokens, dtype=np.int64)
    if len(t) and t[0] == BOS:
        t = t[1:]
    t = t[: len(t) // JSB_VOICES * JSB_VOICES]
    out = np.where(t == JSB_REST, np.nan, (t - JSB_PITCH).astype(np.float64))
    return out.reshape(-1, JSB_VOICES)
