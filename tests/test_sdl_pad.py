"""SDL game controllers: the parser on its own, then SDL's virtual joystick (headless, inside this
process) read by the real SDL source and played through an EngineCore: press -> note-on,
release -> note-off, detach -> note-offs."""

from __future__ import annotations

import os

import pytest

from daemon.config import parse_config
from daemon.core import EngineCore, Slot
from daemon.events import now_ns
from daemon.io import sdl_pad as sp
from daemon.processor import Context
from daemon.processors.thru import ThruProcessor


def test_parser_buttons_and_triggers_with_hysteresis():
    p = sp.SdlPadParser(threshold=0.5, hysteresis=0.15)
    assert p.button(sp.BUTTON_X, True, 1) == [sp.PadChange(4, True, None, 1)]
    assert p.button(sp.BUTTON_X, True, 2) == []  # no change
    assert p.button(0, True, 3) == []  # A (bottom face) is no button of the map
    t = sp.AXIS_MAX_VALUE
    assert p.axis(sp.AXIS_TRIGGERRIGHT, int(0.4 * t), 4) == []
    on = p.axis(sp.AXIS_TRIGGERRIGHT, t, 5)
    assert on == [sp.PadChange(7, True, 127, 5)]  # a full squeeze: loudest
    assert p.axis(sp.AXIS_TRIGGERRIGHT, int(0.4 * t), 6) == []  # inside the hysteresis
    assert p.axis(sp.AXIS_TRIGGERRIGHT, int(0.3 * t), 7) == [sp.PadChange(7, False, None, 7)]
    assert p.axis(sp.AXIS_TRIGGERLEFT, int(0.55 * t), 8)[0].velocity < 64  # a light one: soft
    assert p.axis(0, t, 9) == []  # a stick: no button
    assert p.release_all(10) == [sp.PadChange(0, False, None, 10), sp.PadChange(4, False, None, 10)]
    assert p.held == set()


def test_config_gamepad_sdl_is_auto_on_or_off():
    from daemon.config import ConfigError

    assert parse_config({}).gamepad.sdl == "auto"
    assert parse_config({"gamepad": {"sdl": "off"}}).gamepad.sdl == "off"
    with pytest.raises(ConfigError, match="gamepad.sdl"):
        parse_config({"gamepad": {"sdl": "maybe"}})


sdl2 = pytest.importorskip("sdl2", exc_type=ImportError)
from sdl_helpers import VirtualPad  # noqa: E402  (needs sdl2)


@pytest.fixture
def engine_and_source():
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    cfg = parse_config({"processor": [{"name": "thru", "inputs": ["sdl:*"]}]})
    proc = ThruProcessor()
    proc.start(Context("thru", {}))
    core = EngineCore(cfg, [Slot(cfg.processors[0], proc)])
    lost = []

    def on_lost(source):
        lost.append(source)
        core.source_lost(source, now_ns())

    src = sp.SdlGamepadSource(lambda ev: core.feed(ev, ev.time_ns), on_lost)
    src.open()
    try:
        yield core, src, lost
    finally:
        src.close()


def out(core):
    return [m for _, m in core.tick(now_ns())]


def test_virtual_controller_press_release_and_detach(engine_and_source):
    core, src, lost = engine_and_source
    pad = VirtualPad(src)

    def press(button=None, axis=None, value=1):
        pad.press(button, axis, value)
        return out(core)

    assert press(sdl2.SDL_CONTROLLER_BUTTON_X) == [(0x90, 67, 100)]  # button 4
    assert press(sdl2.SDL_CONTROLLER_BUTTON_X, value=0) == [(0x80, 67, 0)]
    assert press(axis=sdl2.SDL_CONTROLLER_AXIS_TRIGGERLEFT, value=32767) == [(0x90, 60, 127)]
    assert press(sdl2.SDL_CONTROLLER_BUTTON_DPAD_RIGHT) == [(0x90, 65, 100)]  # button 3
    assert press(sdl2.SDL_CONTROLLER_BUTTON_A) == []  # not one of the 8
    # unplugged mid-chord: both held buttons end, and the engine hears the source is gone
    pad.detach()
    assert sorted(out(core)) == [(0x80, 60, 0), (0x80, 65, 0)]
    assert lost == ["sdl:Virtual Controller"] and src.sources() == []


def test_the_source_thread_starts_and_stops():
    import threading

    posted = []
    src = sp.SdlGamepadSource(posted.append)
    src.start()
    assert any(t.name == "genie-sdl" and t.is_alive() for t in threading.enumerate())
    src.stop()
    assert not any(t.name == "genie-sdl" for t in threading.enumerate())
    src.stop()  # idempotent
    assert posted == []
