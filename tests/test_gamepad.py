"""Gamepads through the real input code: layouts, frames, hats, triggers, hot-plug, unplug.

This machine has no /dev/input, so the kernel device cannot exist here. The parser is fed real
``evdev.InputEvent``s (codes and values as the kernel drivers send them, per gamepad.rst); the
device path reads ``struct input_event`` bytes from a pipe that stands in for the event node, and
an inotify watch of a temporary directory stands in for /dev/input.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import random
import struct
import time

import pytest

evdev = pytest.importorskip("evdev")
from evdev import InputEvent
from evdev import ecodes as e
from evdev.device import AbsInfo, DeviceInfo

from daemon.events import ButtonEvent, now_ns
from daemon.io import evdev_events as kernel
from daemon.io import gamepad as g
from daemon.io.evdev_devices import EvdevSource, PadChange
from daemon.io.evdev_events import encode_event
from daemon.io.gamepad import (
    GamepadSettings,
    GamepadSource,
    PadParser,
    choose_layout,
    detect_layout,
    parse_control,
)

MS = 1_000_000


def frame(t_ns: int, *events: tuple[int, int, int]) -> list[InputEvent]:
    """One kernel report: the events, then SYN_REPORT, all with the report's time stamp."""
    sec, usec = divmod(t_ns // 1000, 1_000_000)
    return [InputEvent(sec, usec, *ev) for ev in events] + [InputEvent(sec, usec, e.EV_SYN,
                                                                       e.SYN_REPORT, 0)]


def feed(parser: PadParser, events: list[InputEvent]) -> list[tuple[int, bool, int | None]]:
    out = []
    for ev in events:
        out += [(c.button, c.pressed, c.velocity) for c in parser.feed(ev)]
    return out


def key(code, value=1):
    return (e.EV_KEY, code, value)


def ab(code, value):
    return (e.EV_ABS, code, value)


# Capabilities as the kernel drivers report them (keys, axes with (value, min, max)).
XPAD_360 = ("Microsoft X-Box 360 pad", 0x045E, 0x028E,
            {e.BTN_SOUTH, e.BTN_EAST, e.BTN_NORTH, e.BTN_WEST, e.BTN_TL, e.BTN_TR, e.BTN_SELECT,
             e.BTN_START, e.BTN_MODE, e.BTN_THUMBL, e.BTN_THUMBR},
            {e.ABS_X: (0, -32768, 32767), e.ABS_Y: (0, -32768, 32767), e.ABS_Z: (0, 0, 255),
             e.ABS_RX: (0, -32768, 32767), e.ABS_RY: (0, -32768, 32767), e.ABS_RZ: (0, 0, 255),
             e.ABS_HAT0X: (0, -1, 1), e.ABS_HAT0Y: (0, -1, 1)})
XBOX_BT = ("Xbox Wireless Controller", 0x045E, 0x0B13,
           {e.BTN_SOUTH, e.BTN_EAST, e.BTN_NORTH, e.BTN_WEST, e.BTN_TL, e.BTN_TR, e.BTN_SELECT,
            e.BTN_START, e.BTN_MODE},
           {e.ABS_X: (32768, 0, 65535), e.ABS_Y: (32768, 0, 65535), e.ABS_BRAKE: (0, 0, 1023),
            e.ABS_GAS: (0, 0, 1023), e.ABS_HAT0X: (0, -1, 1), e.ABS_HAT0Y: (0, -1, 1)})
DUALSENSE = ("Sony Interactive Entertainment DualSense Wireless Controller", 0x054C, 0x0CE6,
             {e.BTN_SOUTH, e.BTN_EAST, e.BTN_NORTH, e.BTN_WEST, e.BTN_TL, e.BTN_TR, e.BTN_TL2,
              e.BTN_TR2, e.BTN_SELECT, e.BTN_START, e.BTN_MODE, e.BTN_THUMBL, e.BTN_THUMBR},
             {e.ABS_X: (128, 0, 255), e.ABS_Y: (128, 0, 255), e.ABS_Z: (0, 0, 255),
              e.ABS_RX: (128, 0, 255), e.ABS_RY: (128, 0, 255), e.ABS_RZ: (0, 0, 255),
              e.ABS_HAT0X: (0, -1, 1), e.ABS_HAT0Y: (0, -1, 1)})
SWITCH_PRO = ("Nintendo Switch Pro Controller", 0x057E, 0x2009,
              {e.BTN_SOUTH, e.BTN_EAST, e.BTN_NORTH, e.BTN_WEST, e.BTN_TL, e.BTN_TR, e.BTN_TL2,
               e.BTN_TR2, e.BTN_SELECT, e.BTN_START, e.BTN_MODE, e.BTN_THUMBL, e.BTN_THUMBR,
               e.BTN_Z, e.BTN_DPAD_UP, e.BTN_DPAD_DOWN, e.BTN_DPAD_LEFT, e.BTN_DPAD_RIGHT},
              {e.ABS_X: (0, -32767, 32767), e.ABS_Y: (0, -32767, 32767),
               e.ABS_RX: (0, -32767, 32767), e.ABS_RY: (0, -32767, 32767),
               e.ABS_HAT0X: (0, -1, 1), e.ABS_HAT0Y: (0, -1, 1)})
EIGHTBITDO_D = ("8BitDo SN30 Pro", 0x2DC8, 0x6001,
                {0x130, 0x131, 0x133, 0x134, e.BTN_TL, e.BTN_TR, e.BTN_TL2, e.BTN_TR2, e.BTN_SELECT,
                 e.BTN_START},
                {e.ABS_X: (128, 0, 255), e.ABS_Y: (128, 0, 255), e.ABS_BRAKE: (0, 0, 255),
                 e.ABS_GAS: (0, 0, 255), e.ABS_HAT0X: (0, -1, 1), e.ABS_HAT0Y: (0, -1, 1)})
GENERIC = ("USB Gamepad ", 0x0810, 0x0001,
           set(range(e.BTN_TRIGGER, e.BTN_TRIGGER + 10)),
           {e.ABS_X: (127, 0, 255), e.ABS_Y: (127, 0, 255)})
SNES_USB = ("USB Gamepad", 0x0810, 0xE501, {e.BTN_TRIGGER, e.BTN_THUMB, e.BTN_THUMB2, e.BTN_TOP},
            {e.ABS_X: (127, 0, 255), e.ABS_Y: (127, 0, 255)})
ZERO_DELAY = ("Xin-Mo Xin-Mo Dual Arcade", 0x16C0, 0x05E1,
              set(range(e.BTN_TRIGGER, e.BTN_TRIGGER + 12)),
              {e.ABS_X: (0, -1, 1), e.ABS_Y: (0, -1, 1)})


def parser_for(pad, **kw) -> PadParser:
    name, vendor, product, keys, axes = pad
    lay = choose_layout(name, vendor, product, keys, axes, kw.pop("cfg", None), kw.pop("learned", {}))
    return PadParser(lay, ranges={c: (lo, hi) for c, (_, lo, hi) in axes.items()}, **kw)


# ---- codes, clocks, names ----------------------------------------------------------------------

def test_kernel_codes_match_evdev_and_the_clock_ioctl_number():
    for name, code in {**kernel.KEY_CODES_BY_NAME, **kernel.ABS_CODES_BY_NAME}.items():
        assert e.ecodes[name] == code, name
    assert (kernel.EV_SYN, kernel.EV_KEY, kernel.EV_ABS, kernel.SYN_REPORT,
            kernel.SYN_DROPPED) == (e.EV_SYN, e.EV_KEY, e.EV_ABS, e.SYN_REPORT, e.SYN_DROPPED)
    assert kernel.EVIOCSCLOCKID == 0x400445A0
    assert kernel.EVENT.size == (24 if struct.calcsize("l") == 8 else 16)  # struct input_event
    raw = encode_event(12, 345, e.EV_KEY, e.BTN_SOUTH, 1)
    (ev,) = kernel.decode_events(raw)
    assert isinstance(ev, InputEvent) and (ev.sec, ev.usec, ev.type, ev.code, ev.value) == (
        12, 345, e.EV_KEY, e.BTN_SOUTH, 1)


def test_perf_counter_is_clock_monotonic():
    # The daemon's clock and the clock the kernel stamps events with (after EVIOCSCLOCKID).
    assert abs(kernel.clock_offset_ns(time.CLOCK_MONOTONIC)) < 1 * MS
    assert abs(kernel.clock_offset_ns(time.CLOCK_REALTIME)) > 1_000_000 * MS  # the wall clock is not


def test_control_names_round_trip():
    for lay in [*g.LAYOUTS.values(), g.generic_layout(*GENERIC[3:])]:
        for controls in lay.buttons:
            for c in controls:
                assert parse_control(c.name) == c
    assert parse_control("BTN_A") == parse_control("BTN_SOUTH")
    assert parse_control("ABS_HAT0Y-") == g.Control("axis", e.ABS_HAT0Y, -1)
    assert parse_control("ABS_Z").is_trigger
    with pytest.raises(ValueError, match="unknown control"):
        parse_control("BTN_NOPE")


# ---- layouts, one kernel event sequence each ---------------------------------------------------

def test_xbox_360_pad_triggers_bumpers_dpad_face():
    p = parser_for(XPAD_360)
    assert p.layout.name == "xbox"
    # Nothing comes out until the report ends.
    assert p.feed(InputEvent(1, 0, e.EV_KEY, e.BTN_TL, 1)) == []
    assert feed(p, frame(1_000 * MS)) == [(1, True, None)]
    # Left trigger: 0-255; pressed past half, velocity from depth; hysteresis on the way back.
    assert feed(p, frame(1_008 * MS, ab(e.ABS_Z, 100))) == []
    assert feed(p, frame(1_016 * MS, ab(e.ABS_Z, 200))) == [(0, True, 86)]
    assert feed(p, frame(1_024 * MS, ab(e.ABS_Z, 100))) == []  # 0.39: still above 0.35
    assert feed(p, frame(1_032 * MS, ab(e.ABS_Z, 80))) == [(0, False, None)]
    assert feed(p, frame(1_040 * MS, ab(e.ABS_Z, 120))) == []  # 0.47: not yet pressed again
    assert feed(p, frame(1_048 * MS, ab(e.ABS_RZ, 255))) == [(7, True, 127)]
    # D-pad hat: left, then straight to right within one report.
    assert feed(p, frame(1_056 * MS, ab(e.ABS_HAT0X, -1))) == [(2, True, None)]
    assert feed(p, frame(1_064 * MS, ab(e.ABS_HAT0X, 1))) == [(2, False, None), (3, True, None)]
    assert feed(p, frame(1_072 * MS, ab(e.ABS_HAT0Y, -1))) == []  # up is not a button
    # xpad reports X (the left face button) as BTN_X = 0x133, B as BTN_EAST; A and Y are free.
    assert feed(p, frame(1_080 * MS, key(e.BTN_X), key(e.BTN_EAST), key(e.BTN_TR), key(e.BTN_A),
                         key(e.BTN_Y))) == [(4, True, None), (5, True, None), (6, True, None)]
    assert p.held == {1, 3, 4, 5, 6, 7}
    assert [c.time_ns for c in p.feed(frame(1_088 * MS, key(e.BTN_X, 0))[0])] == []
    changes = [c for ev in frame(1_088 * MS, key(e.BTN_X, 0)) for c in p.feed(ev)]
    assert changes == [PadChange(4, False, None, 1_088 * MS)]  # the event's own time


def test_xbox_over_bluetooth_triggers_are_brake_and_gas_0_to_1023():
    p = parser_for(XBOX_BT)
    assert p.layout.name == "xbox"
    assert p.layout.names()[0] == "ABS_BRAKE" and p.layout.names()[7] == "ABS_GAS"
    assert feed(p, frame(0, ab(e.ABS_BRAKE, 1023))) == [(0, True, 127)]
    assert feed(p, frame(MS, ab(e.ABS_GAS, 520))) == [(7, True, 34)]  # just past half: soft


def test_dualsense_l2_key_and_axis_are_one_button_with_velocity():
    p = parser_for(DUALSENSE)
    assert p.layout.name == "playstation"
    # hid-playstation sends BTN_TL2 as soon as L2 moves, and ABS_Z with its depth.
    assert feed(p, frame(0, key(e.BTN_TL2), ab(e.ABS_Z, 30))) == []
    assert feed(p, frame(4 * MS, ab(e.ABS_Z, 250))) == [(0, True, 123)]
    assert feed(p, frame(8 * MS, key(e.BTN_WEST), key(e.BTN_SOUTH), key(e.BTN_NORTH))) == [
        (4, True, None)]  # square; cross and triangle are not in the default map
    assert feed(p, frame(12 * MS, key(e.BTN_EAST), key(e.BTN_TL), key(e.BTN_TR))) == [
        (1, True, None), (5, True, None), (6, True, None)]
    assert feed(p, frame(16 * MS, ab(e.ABS_Z, 0), key(e.BTN_TL2, 0))) == [(0, False, None)]


def test_switch_pro_digital_triggers_and_dpad_reported_twice():
    p = parser_for(SWITCH_PRO)
    assert p.layout.name == "switch"
    assert feed(p, frame(0, key(e.BTN_TL2), key(e.BTN_TR2))) == [(0, True, None), (7, True, None)]
    assert feed(p, frame(MS, key(e.BTN_WEST), key(e.BTN_EAST), key(e.BTN_SOUTH))) == [
        (4, True, None), (5, True, None)]
    # The D-pad as a hat and as BTN_DPAD_*: one button, held while either says so.
    assert feed(p, frame(2 * MS, ab(e.ABS_HAT0X, -1), key(e.BTN_DPAD_LEFT))) == [(2, True, None)]
    assert feed(p, frame(3 * MS, ab(e.ABS_HAT0X, 0))) == []
    assert feed(p, frame(4 * MS, key(e.BTN_DPAD_LEFT, 0))) == [(2, False, None)]


@pytest.mark.parametrize("vendor, product, expect", [
    (0x045E, 0x028E, "xbox"),       # X-input mode: an Xbox 360 pad to the kernel (xpad)
    (0x057E, 0x2009, "switch"),     # Switch mode: a Pro Controller (hid-nintendo)
    (0x2DC8, 0x6001, "8bitdo"),     # D-input mode: hid-generic
])
def test_8bitdo_is_detected_by_mode(vendor, product, expect):
    name, _, _, keys, axes = EIGHTBITDO_D
    assert detect_layout(name, vendor, product, keys, axes).name == expect


def test_8bitdo_dinput_nintendo_labels_and_analog_triggers():
    p = parser_for(EIGHTBITDO_D)
    # HID button 1 (A, right face) is 0x130, HID button 5 (Y, left face) 0x134.
    assert feed(p, frame(0, key(0x134), key(0x130), key(0x131))) == [(4, True, None), (5, True, None)]
    assert feed(p, frame(MS, ab(e.ABS_BRAKE, 255), key(e.BTN_TL2))) == [(0, True, 127)]


def test_generic_hid_pad_takes_its_first_8_buttons():
    p = parser_for(GENERIC)
    assert p.layout.name == "generic"
    assert p.layout.names() == ["BTN_TRIGGER", "BTN_THUMB", "BTN_THUMB2", "BTN_TOP", "BTN_TOP2",
                                "BTN_PINKIE", "BTN_BASE", "BTN_BASE2"]
    assert feed(p, frame(0, key(e.BTN_BASE2), key(e.BTN_BASE3))) == [(7, True, None)]


def test_generic_pad_with_4_buttons_uses_its_dpad_axes():
    p = parser_for(SNES_USB)
    assert p.layout.names()[4:] == ["ABS_X-", "ABS_Y+", "ABS_Y-", "ABS_X+"]
    assert feed(p, frame(0, ab(e.ABS_X, 0))) == [(4, True, None)]
    assert feed(p, frame(MS, ab(e.ABS_X, 127))) == [(4, False, None)]
    assert feed(p, frame(2 * MS, ab(e.ABS_Y, 255), key(e.BTN_TOP))) == [(3, True, None),
                                                                         (5, True, None)]


def test_arcade_encoder_inputs_1_to_8():
    p = parser_for(ZERO_DELAY)
    assert p.layout.name == "arcade"
    assert feed(p, frame(0, key(e.BTN_TRIGGER), key(e.BTN_BASE2), ab(e.ABS_X, -1))) == [
        (0, True, None), (7, True, None)]
    assert detect_layout("DragonRise Inc.   Generic   USB  Joystick  ", 0x0079, 0x0006,
                         set(range(0x120, 0x12C)), {}).name == "generic"


def test_non_controllers_are_not_opened():
    assert not g.is_controller({e.KEY_A, e.KEY_SPACE, e.BTN_LEFT, e.BTN_TOUCH})  # keyboard, mouse
    assert g.is_controller({e.BTN_SOUTH}) and g.is_controller({e.BTN_TRIGGER})


# ---- frames, repeat, SYN_DROPPED, fuzz ---------------------------------------------------------

def test_press_and_release_within_one_report_and_autorepeat():
    p = parser_for(XPAD_360)
    assert feed(p, frame(0, key(e.BTN_TL, 1), key(e.BTN_TL, 0))) == []
    assert feed(p, frame(MS, key(e.BTN_TL, 1))) == [(1, True, None)]
    assert feed(p, frame(2 * MS, key(e.BTN_TL, 2))) == []  # auto-repeat: still the same press
    assert feed(p, frame(3 * MS, key(e.BTN_TL, 0), key(e.BTN_TL, 1))) == []  # up and down: held


def test_syn_dropped_discards_the_frame_then_resyncs_from_device_state():
    p = parser_for(XPAD_360)
    assert feed(p, frame(0, key(e.BTN_TL), key(e.BTN_TR))) == [(1, True, None), (6, True, None)]
    events = [InputEvent(0, 1000, e.EV_SYN, e.SYN_DROPPED, 0),
              InputEvent(0, 1000, e.EV_KEY, e.BTN_EAST, 1)] + frame(MS)
    assert feed(p, events) == [] and p.needs_resync
    # The device now: TL still down (no re-strike), TR up, B down, left trigger deep.
    out = p.resync({e.BTN_TL, e.BTN_EAST}, {e.ABS_Z: 255, e.ABS_HAT0X: 0}, 5 * MS)
    assert [(c.button, c.pressed, c.velocity) for c in out] == [(6, False, None), (0, True, 127),
                                                                 (5, True, None)]
    assert not p.needs_resync and p.held == {0, 1, 5}
    assert [(c.button, c.pressed) for c in p.release_all(6 * MS)] == [(0, False), (1, False),
                                                                       (5, False)]


def test_random_events_never_crash_and_every_press_is_released():
    rng = random.Random(7)
    for pad in (XPAD_360, DUALSENSE, SWITCH_PRO, SNES_USB):
        p = parser_for(pad)
        held: set[int] = set()
        codes = [(e.EV_KEY, k, (0, 1)) for k in pad[3]] + [
            (e.EV_ABS, a, (lo, hi)) for a, (_, lo, hi) in pad[4].items()]
        for i in range(2500):
            r = rng.random()
            if r < 0.15:
                ev = InputEvent(0, i, e.EV_SYN, e.SYN_REPORT, 0)
            elif r < 0.16:
                ev = InputEvent(0, i, e.EV_SYN, e.SYN_DROPPED, 0)
            else:
                t, c, (lo, hi) = rng.choice(codes)
                ev = InputEvent(0, i, t, c, rng.randint(lo, hi))
            for ch in p.feed(ev):
                assert 0 <= ch.button < 8
                assert ch.pressed != (ch.button in held)  # strictly alternating per button
                (held.add if ch.pressed else held.discard)(ch.button)
                assert ch.velocity is None or 1 <= ch.velocity <= 127
            if p.needs_resync:
                for ch in p.release_all(i):
                    held.discard(ch.button)
        assert held == p.held
        p.release_all(0)
        assert p.held == set()


# ---- maps: learned and configured --------------------------------------------------------------

def test_learned_map_wins_then_config_by_name_then_by_layout():
    name, vendor, product, keys, axes = XPAD_360
    learned = {name: ["BTN_SOUTH", "BTN_EAST", "BTN_WEST", "BTN_NORTH", "ABS_HAT0Y+", "ABS_HAT0Y-",
                      "ABS_Z", "ABS_RZ"]}
    cfg = GamepadSettings(maps={"xbox": ["BTN_TL"] * 8, "*360*": ["BTN_TR"] * 8})
    assert choose_layout(name, vendor, product, keys, axes, cfg, learned).name == f"learned:{name}"
    assert choose_layout(name, vendor, product, keys, axes, cfg, {}).name == "config:*360*"
    assert choose_layout("Other X-Box pad", vendor, product, keys, axes, cfg).name == "config:xbox"
    assert choose_layout(name, vendor, product, keys, axes,
                         GamepadSettings(layout="arcade")).name == "arcade"
    p = parser_for(XPAD_360, learned=learned)
    assert feed(p, frame(0, ab(e.ABS_HAT0Y, 1), key(e.BTN_SOUTH))) == [(0, True, None),
                                                                        (4, True, None)]


def test_check_maps_names_the_bad_key():
    assert g.check_maps({"xbox": ["BTN_SOUTH"] * 8}) is None
    assert g.check_maps({"xbox": ["BTN_SOUTH|ABS_HAT0X-"] * 8}) is None
    assert "gamepad.maps.xbox: must list 8" in g.check_maps({"xbox": ["BTN_SOUTH"] * 7})
    assert "unknown control 'BTN_FOO'" in g.check_maps({"pad*": ["BTN_FOO"] * 8})


# ---- the device path: a pipe for the event node, inotify on a temporary directory ---------------

class PipePad:
    """Stands in for ``evdev.InputDevice``: metadata and ioctl-backed queries as attributes, the
    event stream on a pipe (the kernel writes the same ``struct input_event`` bytes)."""

    def __init__(self, pad, path: str = "") -> None:
        self.name, vendor, product, self.keys, self.axes = pad
        self.info = DeviceInfo(3, vendor, product, 0x111)
        self.path = path
        self.r, self.w = os.pipe()
        self.down: set[int] = set()
        self.values = {c: v for c, (v, _, _) in self.axes.items()}
        self.grabbed = False
        self.closed = False

    def fileno(self) -> int:
        return self.r

    def capabilities(self, absinfo=True):
        return {e.EV_SYN: [0, 1, 3], e.EV_KEY: sorted(self.keys),
                e.EV_ABS: [(c, AbsInfo(self.values[c], lo, hi, 0, 0, 0))
                           for c, (_, lo, hi) in sorted(self.axes.items())]}

    def active_keys(self):
        return sorted(self.down)

    def absinfo(self, code):
        _, lo, hi = self.axes[code]
        return AbsInfo(self.values[code], lo, hi, 0, 0, 0)

    def grab(self):
        self.grabbed = True

    def ungrab(self):
        self.grabbed = False

    def close(self):
        if not self.closed:
            self.closed = True
            os.close(self.r)

    def send(self, *events, t_ns: int | None = None) -> None:
        """One report, stamped like the kernel does (wall clock: a pipe takes no clock ioctl)."""
        t = time.clock_gettime_ns(time.CLOCK_REALTIME) if t_ns is None else t_ns
        sec, usec = divmod(t // 1000, 1_000_000)
        for type_, code, value in events:
            if type_ == e.EV_KEY:
                (self.down.add if value else self.down.discard)(code)
            elif type_ == e.EV_ABS:
                self.values[code] = value
        os.write(self.w, b"".join(encode_event(sec, usec, *ev) for ev in
                                   [*events, (e.EV_SYN, e.SYN_REPORT, 0)]))

    def unplug(self) -> None:
        os.close(self.w)  # the reader sees the stream end, as read() fails with ENODEV on a node


class Rig:
    """A temporary directory for /dev/input and the real device loop on it: pads only (a
    ``GamepadSource``), or the given device ``kinds`` (``EvdevSource``)."""

    def __init__(self, tmp_path, cfg=None, learned=None, kinds=None) -> None:
        self.dir = tmp_path / "input"
        self.dir.mkdir()
        self.pads: dict[str, PipePad] = {}
        self.kinds: dict[str, tuple] = {}
        self.events: queue.Queue = queue.Queue()
        self.lost: queue.Queue = queue.Queue()
        self.refuse: set[str] = set()
        self.prepared: dict[str, PipePad] = {}  # a pad to hand out for that node, state set up
        self.opened: queue.Queue = queue.Queue()
        if kinds is None:
            self.src = GamepadSource(self.events.put, self.lost.put, cfg or GamepadSettings(),
                                     dev_dir=str(self.dir), opener=self.open,
                                     learned=learned or {})
        else:
            self.src = EvdevSource(self.events.put, self.lost.put, kinds,
                                     dev_dir=str(self.dir), opener=self.open)

    def plug(self, name: str, pad) -> None:
        self.kinds[name] = pad
        (self.dir / name).touch()

    def open(self, path: str) -> PipePad:
        name = os.path.basename(path)
        if name in self.refuse:
            raise PermissionError(errno.EACCES, "Permission denied", path)
        if name not in self.kinds:
            raise OSError(errno.ENODEV, "No such device", path)
        pad = self.prepared.pop(name, None) or PipePad(self.kinds[name], path)
        self.pads[name] = pad
        self.opened.put(name)
        return pad

    def next(self, timeout: float = 5.0) -> ButtonEvent:
        return self.events.get(timeout=timeout)

    def wait_open(self, name: str) -> PipePad:
        """The pad the source opened for that node (events sent to it wait in its pipe)."""
        while self.opened.get(timeout=5) != name:
            pass
        return self.pads[name]


def test_device_thread_posts_presses_with_event_times_and_releases_on_unplug(tmp_path):
    rig = Rig(tmp_path)
    rig.plug("event3", XPAD_360)
    rig.src.start()
    try:
        pad = rig.wait_open("event3")
        assert rig.src.sources() == ["gamepad:Microsoft X-Box 360 pad"]
        before = now_ns()
        pad.send(key(e.BTN_TL), ab(e.ABS_RZ, 255))
        lb, rt = rig.next(), rig.next()
        assert (lb.source, lb.button, lb.pressed, lb.velocity) == (
            "gamepad:Microsoft X-Box 360 pad", 1, True, None)
        assert (rt.button, rt.pressed, rt.velocity) == (7, True, 127)
        assert before - 2 * MS <= lb.time_ns <= now_ns()  # the kernel's stamp, on our clock
        # A stamp from a second ago (a clock gone wrong) is replaced by the arrival time.
        pad.send(key(e.BTN_TR), t_ns=time.clock_gettime_ns(time.CLOCK_REALTIME) - 5_000 * MS)
        assert rig.next().time_ns >= before
        # Unplugged mid-press: the node goes, reading fails; every held button is released, then
        # the source is reported lost.
        os.unlink(rig.dir / "event3")
        pad.unplug()
        released = {(ev.button, ev.pressed) for ev in (rig.next(), rig.next(), rig.next())}
        assert released == {(1, False), (6, False), (7, False)}
        assert rig.lost.get(timeout=5) == "gamepad:Microsoft X-Box 360 pad"
        assert pad.closed and rig.src.sources() == []
        # Plugged in again (a new node): picked up through the directory watch, no restart.
        rig.plug("event4", XPAD_360)
        pad2 = rig.wait_open("event4")
        pad2.send(ab(e.ABS_HAT0X, 1))
        ev = rig.next()
        assert (ev.source, ev.button, ev.pressed) == ("gamepad:Microsoft X-Box 360 pad", 3, True)
    finally:
        rig.src.stop()
    ev = rig.next()  # stop releases what is still held
    assert (ev.button, ev.pressed) == (3, False)
    rig.src.stop()  # idempotent


def test_two_pads_of_one_name_buttons_held_at_open_and_grab(tmp_path):
    rig = Rig(tmp_path, cfg=GamepadSettings(grab=True))
    rig.plug("event0", DUALSENSE)
    rig.src.start()
    try:
        first = rig.wait_open("event0")
        assert first.grabbed
        held = rig.prepared["event1"] = PipePad(DUALSENSE)
        held.down.add(e.BTN_WEST)  # square is already down when the second pad appears
        rig.plug("event1", DUALSENSE)
        ev = rig.next()
        name = "gamepad:Sony Interactive Entertainment DualSense Wireless Controller"
        assert (ev.source, ev.button, ev.pressed) == (name + " #2", 4, True)
        assert rig.src.sources() == [name, name + " #2"]
    finally:
        rig.src.stop()
    assert rig.next().source.endswith("#2")  # released at stop
    assert not first.grabbed


def test_syn_dropped_on_the_device_path_rereads_the_state(tmp_path):
    rig = Rig(tmp_path)
    rig.plug("event0", SWITCH_PRO)
    rig.src.start()
    try:
        pad = rig.wait_open("event0")
        pad.send(key(e.BTN_TL), key(e.BTN_TR))
        assert {rig.next().button, rig.next().button} == {1, 6}
        # The kernel dropped events: during the gap TR went up and ZL went down.
        pad.down = {e.BTN_TL, e.BTN_TL2}
        os.write(pad.w, encode_event(0, 0, e.EV_SYN, e.SYN_DROPPED, 0)
                 + encode_event(0, 0, e.EV_KEY, e.BTN_TR, 0)
                 + encode_event(0, 0, e.EV_SYN, e.SYN_REPORT, 0))
        got = {(ev.button, ev.pressed) for ev in (rig.next(), rig.next())}
        assert got == {(6, False), (0, True)}
        assert rig.events.empty()
    finally:
        rig.src.stop()


def test_missing_permission_is_one_line_about_the_input_group(tmp_path, caplog):
    rig = Rig(tmp_path)
    rig.refuse.add("event9")
    (rig.dir / "event9").touch()
    with caplog.at_level(logging.DEBUG, logger="genie.gamepad"):
        rig.src.start()
        rig.src.stop()
    lines = [r.getMessage() for r in caplog.records if "permission" in r.getMessage()]
    assert len(lines) == 1 and "event9" in lines[0] and "input group" in lines[0]


def test_devices_glob_and_non_controllers_are_skipped(tmp_path):
    keyboard = ("AT Translated Set 2 keyboard", 1, 1, {e.KEY_A, e.KEY_B}, {})
    rig = Rig(tmp_path, cfg=GamepadSettings(devices=["*Pro Controller*"]))
    rig.plug("event0", keyboard)
    rig.plug("event1", XPAD_360)
    rig.plug("event2", SWITCH_PRO)
    rig.src.start()
    try:
        rig.wait_open("event2")
        assert rig.src.sources() == ["gamepad:Nintendo Switch Pro Controller"]
        assert rig.pads["event0"].closed and rig.pads["event1"].closed
    finally:
        rig.src.stop()


# ---- genie doctor's report rate ----------------------------------------------------------------

def test_report_interval_and_doctor_probe(tmp_path):
    assert g.report_interval_ms([0, 8 * MS, 16 * MS]) is None
    assert g.report_interval_ms([0, 8 * MS, 16 * MS, 24 * MS, 33 * MS]) == 8.0
    rig = Rig(tmp_path)
    rig.plug("event0", DUALSENSE)
    rig.refuse.add("event5")
    (rig.dir / "event5").touch()

    def opener(path):
        pad = rig.open(path)
        for i in range(10):  # a stick moving: one report every 8 ms
            pad.send(ab(e.ABS_X, 100 + i), t_ns=1_000_000 * MS + i * 8 * MS)
        return pad

    found = g.probe_controllers(0.2, str(rig.dir), opener)
    text = "\n".join(" | ".join(f) for f in found)
    assert "no permission to read" in text and "event5" in text and "input group" in text
    assert "layout playstation; reports every 8.0 ms (125 Hz)" in text and "jspoll=1" in text
    assert g.probe_controllers(0.1, str(tmp_path / "nothing"), opener)[0][1].startswith(
        "gamepads: no ")


def test_unplugged_and_back_on_the_same_node_before_the_read_noticed(tmp_path):
    rig = Rig(tmp_path)
    rig.plug("event0", SWITCH_PRO)
    rig.src.start()
    try:
        pad = rig.wait_open("event0")
        pad.send(key(e.BTN_TL))
        assert rig.next().pressed
        pad.unplug()  # the node is already back (a new device) when the old read fails
        assert not rig.next().pressed
        assert rig.lost.get(timeout=5) == "gamepad:Nintendo Switch Pro Controller"
        pad2 = rig.wait_open("event0")
        pad2.send(key(e.BTN_TR))
        ev = rig.next()
        assert (ev.source, ev.button, ev.pressed) == ("gamepad:Nintendo Switch Pro Controller", 6,
                                                      True)
    finally:
        rig.src.stop()


def test_unplug_mid_chord_leaves_no_note_sounding_in_the_engine(tmp_path):
    """The gamepad thread's events and its lost source, through EngineCore as the engine thread
    applies them (events, then lost sources), with the thru processor playing."""
    from daemon.config import parse_config
    from daemon.core import EngineCore, Slot
    from daemon.processor import Context
    from daemon.processors.thru import ThruProcessor

    cfg = parse_config({"processor": [{"name": "thru", "inputs": ["gamepad:*"]}]})
    proc = ThruProcessor()
    proc.start(Context("thru", {}))
    core = EngineCore(cfg, [Slot(cfg.processors[0], proc)])
    rig = Rig(tmp_path)
    rig.plug("event0", DUALSENSE)
    rig.src.start()
    try:
        pad = rig.wait_open("event0")
        pad.send(key(e.BTN_WEST), key(e.BTN_TL), ab(e.ABS_RZ, 255))
        events = [rig.next() for _ in range(3)]
        pad.unplug()
        events += [rig.next() for _ in range(3)]
        lost = rig.lost.get(timeout=5)
    finally:
        rig.src.stop()
    sent = []
    for ev in events:
        core.feed(ev, ev.time_ns)
        sent += core.tick(ev.time_ns)
    core.source_lost(lost, now_ns())
    sent += core.tick(now_ns() + 1_000 * MS)
    on = [m for _, m in sent if m[0] & 0xF0 == 0x90 and m[2] > 0]
    off = [m for _, m in sent if m[0] & 0xF0 == 0x80 or (m[0] & 0xF0 == 0x90 and m[2] == 0)]
    assert len(on) == 3 and sorted(m[1] for m in on) == sorted(m[1] for m in off)
