"""The three models on the ONNX runtime, through real JACK ports, with their shipped ONNX files.

This is the test the torch-free install runs (``make test-onnx``: a fresh venv with the ``onnx``
extra and no torch; see the README's "Without torch"). There the processors' default weights
(``*.pt``) resolve to the ``.onnx`` files beside them; with torch installed the same test names the
``.onnx`` files itself. Either way the daemon is checked from outside: its log names the ONNX
runtime, and its memory map holds ONNX Runtime and no libtorch (the daemon never imported torch).

Nothing here imports torch, so the file runs in both venvs.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest
from jack_helpers import NOTE_OFF, NOTE_ON, config_text, drain, is_on, play_phrase, sounding_after

from daemon.events import CLOCK, START, STOP

jack = pytest.mark.jack
ROOT = Path(__file__).resolve().parents[1]
TORCH = importlib.util.find_spec("torch") is not None
pytestmark = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None,
                                reason="onnxruntime not installed (the onnx extra)")

ONNX = {"pianogenie": ROOT / "pianogenie" / "weights" / "pianogenie_decoder.onnx",
        "drumvae": ROOT / "drumvae" / "weights" / "drumvae.onnx",
        "musiclm": ROOT / "musiclm" / "weights" / "musiclm_maestro.onnx"}


def _processor(name: str, extra: str = "", options: str = "") -> str:
    """The processor's table: without torch its default weights (they resolve to ONNX); with
    torch, the ONNX file named."""
    weights = [] if not TORCH else [f'weights = "{ONNX[name]}"']
    opts = ", ".join(weights + ([options] if options else []))
    return f'name = "{name}"\n{extra}\n' + (f"options = {{ {opts} }}\n" if opts else "")


def _runs_on_onnx(proc, name: str) -> None:
    assert f"{ONNX[name].name} (onnx)" in proc.log or f"{ONNX[name]} (onnx)" in proc.log, proc.log
    maps = Path(f"/proc/{proc.proc.pid}/maps").read_text()
    assert "onnxruntime" in maps
    assert "libtorch" not in maps  # torch was never imported by the daemon


@jack
def test_piano_genie_plays_buttons_on_onnx(rig):
    proc = rig.genie(config_text(_processor("pianogenie"), midi="echo_window_ms = 0"))
    _runs_on_onnx(proc, "pianogenie")
    c = rig.client()
    presses = [60, 62, 64, 65, 67, 69, 71, 72, 71, 69, 67, 65, 64, 62, 60]  # buttons 0-7 and back
    for key in presses:
        c.send((NOTE_ON, key, 90))
        time.sleep(0.06)
        c.send((NOTE_OFF, key, 0))
        time.sleep(0.02)
    got = drain(c, quiet_s=0.4)
    ons = [m for _, m in got if is_on(m)]
    assert len(ons) == len(presses)  # one note per press
    assert all(21 <= m[1] <= 108 for m in ons)
    assert len({m[1] for m in ons}) > 3  # a melody, not one key
    assert sounding_after([m for _, m in got]) == set()


@jack
def test_drums_follow_the_clock_on_onnx(rig):
    proc = rig.genie(config_text(_processor("drumvae", "clock = true"), midi="echo_window_ms = 0"))
    _runs_on_onnx(proc, "drumvae")
    c = rig.client()
    tick_s = 60 / 120 / 24
    c.send((START,))
    t0 = time.monotonic()
    for i in range(24 * 4):  # one bar at 120 BPM
        while time.monotonic() < t0 + i * tick_s:
            time.sleep(0.002)
        c.send((CLOCK,))
    c.send((STOP,))
    got = drain(c, quiet_s=0.5)
    ons = [m for _, m in got if is_on(m)]
    assert len(ons) >= 4  # a bar of drums
    assert all(m[0] == NOTE_ON | 9 for m in ons)  # General MIDI drums, channel 10
    assert sounding_after([m for _, m in got]) == set()


@jack
def test_an_answer_on_onnx(rig):
    proc = rig.genie(config_text(_processor("musiclm", options="silence_ms = 400.0, length_s = 4.0"),
                                 midi="echo_window_ms = 0"))
    _runs_on_onnx(proc, "musiclm")
    c = rig.client()
    play_phrase(c, hold_s=0.1)
    answer = drain(c, quiet_s=1.5, limit_s=12.0)
    ons = [m for _, m in answer if is_on(m)]
    assert ons and all(m[0] & 0x0F == 1 for m in ons)  # an answer, on its own channel (2)
    assert sounding_after([m for _, m in answer]) == set()
