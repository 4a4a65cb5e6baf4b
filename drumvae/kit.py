"""The drum kit: GrooVAE's 9 classes, the MIDI pitches that play into each (every pitch of the
Groove MIDI Dataset's Roland TD-11 included) and the General MIDI pitch each class plays on.

Plain constants, shared by the data pipeline and the live processor (which must not import the
training code)."""

from __future__ import annotations

# the encoder's input transforms (GrooVAE's reconstruction, hits-only humanize, tap2drum and
# tap2drum without velocity): ids the exported artefact takes, names the spread tables use
RECONSTRUCT, HUMANIZE, TAP, TAP_FIXED = 0, 1, 2, 3
TRANSFORM_NAMES = ("reconstruction", "humanize", "tap2drum", "tap2drum-fixed-velocity")
TAP_LANE = 3  # GrooVAE's tapify puts the taps on the open hi-hat channel

CLASS_NAMES = ("kick", "snare", "closed hi-hat", "open hi-hat", "low tom", "mid tom", "high tom",
               "crash", "ride")
# GrooVAE's training table (Magenta music_vae/data.py ROLAND_DRUM_PITCH_CLASSES): every pitch in GMD.
ROLAND_CLASSES: tuple[tuple[int, ...], ...] = (
    (36,), (38, 37, 40), (42, 22, 44), (46, 26), (43, 58), (47, 45), (50, 48), (49, 52, 55, 57), (51, 53, 59))
# Output: one General MIDI pitch per class (channel 10); a user's kit passes its own.
GM_OUTPUT_PITCHES: tuple[int, ...] = (36, 38, 42, 46, 45, 48, 50, 49, 51)
GM_DRUM_CHANNEL = 10


def pitch_to_class(classes: tuple[tuple[int, ...], ...] = ROLAND_CLASSES) -> dict[int, int]:
    """MIDI pitch -> class index."""
    return {p: c for c, pitches in enumerate(classes) for p in pitches}
