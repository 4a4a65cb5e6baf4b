"""An SDL game controller through real JACK ports: press -> note-on, release -> note-off,
detach mid-chord -> note-offs.

SDL's virtual joystick exists only inside the process that creates it, so this test runs the real
``daemon.engine.Engine`` in its own process: the thru processor, a real ``MidiOutput`` on the
session's JACK dummy server, and the real ``SdlGamepadSource`` fed by a virtual controller; a
second JACK client listens to Genie's output port. (``SdlGamepadSource`` is polled from the test's
thread, as its own ``genie-sdl`` thread would: SDL delivers a virtual joystick's events to the
thread that pumps them.)
"""

from __future__ import annotations

import os

import pytest

from daemon.io.sdl_pad import sdl_available

why = sdl_available()
if why:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{why}; CI installs the dev extra, so the SDL test must run", pytrace=False)
    pytest.skip(why, allow_module_level=True)

import sdl2
from sdl_helpers import VirtualPad

from daemon.config import parse_config
from daemon.core import Slot
from daemon.processor import Context
from daemon.processors.thru import ThruProcessor

OUT = "Genie sdl out"
NOTE_ON, NOTE_OFF = 0x90, 0x80


@pytest.mark.jack
def test_virtual_sdl_controller_plays_through_the_engine_on_real_jack_ports(live_jack):
    from jack_helpers import Client

    from daemon.engine import Engine
    from daemon.io.midi import MidiOutput
    from daemon.io.sdl_pad import SdlGamepadSource

    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    cfg = parse_config({"midi": {"api": "jack", "input_port": ""},
                        "processor": [{"name": "thru", "inputs": ["sdl:*"], "output": OUT}]})
    proc = ThruProcessor()
    proc.start(Context("thru", {}))
    out = MidiOutput.open("jack", OUT)
    from daemon.core import EngineCore
    from daemon.workers import ThreadedWorkers

    engine = Engine(cfg, EngineCore(cfg, [Slot(cfg.processors[0], proc)], workers=ThreadedWorkers()), [], {OUT: out})
    listen = src = pad = None
    started = False
    try:
        listen = Client("gt-sdl", target_in=None, target_out=f"{OUT}:{OUT}")
        engine.start()
        started = True
        assert listen.take(2) == [(0xB0, 64, 0), (0xB0, 123, 0)]  # start-up: the channel cleared
        src = SdlGamepadSource(engine.post, engine.source_lost)
        src.open()
        pad = VirtualPad(src)
        press = pad.press
        press(sdl2.SDL_CONTROLLER_BUTTON_X)  # button 4
        assert listen.take(1) == [(NOTE_ON, 67, 100)]
        press(sdl2.SDL_CONTROLLER_BUTTON_X, value=0)
        assert listen.take(1) == [(NOTE_OFF, 67, 0)]
        press(axis=sdl2.SDL_CONTROLLER_AXIS_TRIGGERLEFT, value=32767)  # button 0, squeezed fully
        assert listen.take(1) == [(NOTE_ON, 60, 127)]
        press(sdl2.SDL_CONTROLLER_BUTTON_DPAD_RIGHT)  # button 3
        assert listen.take(1) == [(NOTE_ON, 65, 100)]
        # Unplugged mid-chord: both held notes end on the output port.
        pad.detach()
        assert sorted(listen.take(2)) == [(NOTE_OFF, 60, 0), (NOTE_OFF, 65, 0)]
        assert src.sources() == []
        assert [m for _, m in listen.collect(quiet_s=0.2, timeout_s=2)] == []  # nothing else
    finally:
        if pad is not None:
            pad.detach()
        if src is not None:
            src.close()
        if started:
            engine.stop()  # all notes off, then closes Genie's output port
        else:
            out.close()
        if listen is not None:
            listen.close()
