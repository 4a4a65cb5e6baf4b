"""Game controllers on Linux (evdev) as Genie's 8 buttons, and the device loop that also reads
local keyboards (``daemon.io.evdev_keyboard``).

Three parts, from pure to I/O (the split of ``daemon.io.keyboard``):

- **Layouts**: for each family of pads, an ordered map of 8 buttons, low → high. Names follow the
  kernel's ``Documentation/input/gamepad.rst`` (``BTN_SOUTH`` is the bottom face button, whatever
  its label). D-pad hats (``ABS_HAT0X/Y``) and analog triggers (``ABS_Z/ABS_RZ`` or
  ``ABS_BRAKE/ABS_GAS``) are buttons too: pressed past a threshold, released below it minus a
  hysteresis; a trigger's depth when it crosses sets the velocity (a quick squeeze is deeper by the
  first report, so it plays louder).
- ``PadParser``: push-fed, no I/O. Fed ``evdev.InputEvent``s (anything with ``sec usec type code
  value``), it emits button changes only at ``SYN_REPORT`` (the kernel's frame boundary) and
  handles ``SYN_DROPPED`` (drop the rest of the frame, then ``resync`` from the device's state).
- ``EvdevSource``: one thread, ``genie-evdev``, waits in ``select`` on every open device, an
  inotify watch of ``/dev/input`` (hot-plug) and a stop pipe; no polling sleeps. Each node is
  offered to the configured ``DeviceKind``s (``GamepadKind`` here, ``KeyboardKind`` in
  ``daemon.io.evdev_keyboard``); the first that takes it names its source and builds its parser.
  A device whose read fails (``ENODEV``: unplugged) releases its held buttons and is reported
  lost; when it comes back it is opened again. ``GamepadSource`` is the loop with pads alone.

The kernel stamps every event. Genie asks for CLOCK_MONOTONIC stamps (``EVIOCSCLOCKID``: evdev's
default is wall-clock time, which jumps with NTP); CPython's ``perf_counter_ns`` is the same clock
on Linux, and an offset measured at open covers any difference (and the wall-clock fallback).

python-evdev is an optional extra (``pip install 'genie[evdev]'``), imported only when a device is
opened: the layouts and the parser need nothing but this module.
"""

from __future__ import annotations

import ctypes
import errno
import fnmatch
import itertools
import logging
import os
import re
import selectors
import struct
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from daemon.events import ButtonEvent, now_ns

log = logging.getLogger("genie.gamepad")

# ---- kernel codes (include/uapi/linux/input-event-codes.h; a stable ABI) ------------------------

EV_SYN, EV_KEY, EV_ABS = 0x00, 0x01, 0x03
SYN_REPORT, SYN_DROPPED = 0, 3

KEY_NAMES = {  # code -> the name used in maps; gamepad.rst names first
    0x120: "BTN_TRIGGER", 0x121: "BTN_THUMB", 0x122: "BTN_THUMB2", 0x123: "BTN_TOP",
    0x124: "BTN_TOP2", 0x125: "BTN_PINKIE", 0x126: "BTN_BASE", 0x127: "BTN_BASE2",
    0x128: "BTN_BASE3", 0x129: "BTN_BASE4", 0x12A: "BTN_BASE5", 0x12B: "BTN_BASE6",
    0x12F: "BTN_DEAD",
    0x130: "BTN_SOUTH", 0x131: "BTN_EAST", 0x132: "BTN_C", 0x133: "BTN_NORTH", 0x134: "BTN_WEST",
    0x135: "BTN_Z", 0x136: "BTN_TL", 0x137: "BTN_TR", 0x138: "BTN_TL2", 0x139: "BTN_TR2",
    0x13A: "BTN_SELECT", 0x13B: "BTN_START", 0x13C: "BTN_MODE", 0x13D: "BTN_THUMBL",
    0x13E: "BTN_THUMBR",
    0x220: "BTN_DPAD_UP", 0x221: "BTN_DPAD_DOWN", 0x222: "BTN_DPAD_LEFT", 0x223: "BTN_DPAD_RIGHT",
    **{0x2C0 + i: f"BTN_TRIGGER_HAPPY{i + 1}" for i in range(40)},
}
KEY_ALIASES = {"BTN_JOYSTICK": 0x120, "BTN_GAMEPAD": 0x130, "BTN_A": 0x130, "BTN_B": 0x131,
               "BTN_X": 0x133, "BTN_Y": 0x134}
ABS_NAMES = {0x00: "ABS_X", 0x01: "ABS_Y", 0x02: "ABS_Z", 0x03: "ABS_RX", 0x04: "ABS_RY",
             0x05: "ABS_RZ", 0x06: "ABS_THROTTLE", 0x07: "ABS_RUDDER", 0x09: "ABS_GAS",
             0x0A: "ABS_BRAKE", 0x10: "ABS_HAT0X", 0x11: "ABS_HAT0Y", 0x12: "ABS_HAT1X",
             0x13: "ABS_HAT1Y"}
_CODES = {**{v: k for k, v in KEY_NAMES.items()}, **KEY_ALIASES}
_ABS_CODES = {v: k for k, v in ABS_NAMES.items()}
for _n, _c in list(_CODES.items()) + list(_ABS_CODES.items()):
    globals()[_n] = _c  # BTN_SOUTH, ABS_HAT0X, ... as module constants
del _n, _c

JOYSTICK_KEYS = range(0x120, 0x130)  # BTN_JOYSTICK block: generic HID joysticks, arcade encoders
GAMEPAD_KEYS = range(0x130, 0x13F)  # BTN_GAMEPAD block: pads that follow gamepad.rst
HATS = frozenset({0x10, 0x11, 0x12, 0x13})
TRIGGER_AXES = frozenset({0x02, 0x05, 0x09, 0x0A})  # ABS_Z ABS_RZ ABS_GAS ABS_BRAKE (on pads)

# EVIOCSCLOCKID = _IOW('E', 0xa0, int): direction write (1) << 30 | sizeof(int) << 16 | 'E' << 8 | nr
EVIOCSCLOCKID = (1 << 30) | (4 << 16) | (ord("E") << 8) | 0xA0  # 0x400445a0
# struct input_event: struct timeval (two kernel longs: 8+8 bytes on 64-bit, 4+4 on 32-bit ARM
# even with a 64-bit time_t, where the kernel sends __kernel_ulong_t), __u16 type, __u16 code,
# __s32 value.
EVENT = struct.Struct("@LLHHi")
READ_EVENTS = 64  # events per read(); a pad sends a handful per report


# ---- controls and layouts -----------------------------------------------------------------------

@dataclass(frozen=True)
class Control:
    """One physical control that can act as a button.

    A key (``EV_KEY`` code), half of a centred axis (``sign`` ±1: a hat direction, or a stick used
    as a D-pad) or a trigger axis (``sign`` 0: rests at its minimum). ``fallback`` marks a digital
    trigger key used only when the pad lacks the analog axis of the same button (the PlayStation
    L2 reports both; the key would fire first and lose the velocity)."""

    kind: str  # "key" | "axis"
    code: int
    sign: int = 0
    fallback: bool = field(default=False, compare=False)

    @property
    def name(self) -> str:
        if self.kind == "key":
            return KEY_NAMES.get(self.code, f"KEY_{self.code:#x}")
        base = ABS_NAMES.get(self.code, f"ABS_{self.code:#x}")
        return base + {1: "+", -1: "-", 0: ""}[self.sign]

    @property
    def is_trigger(self) -> bool:
        return self.kind == "axis" and self.sign == 0


def parse_control(name: str) -> Control:
    """``BTN_SOUTH``, ``ABS_HAT0X-`` (a hat or stick direction), ``ABS_Z`` (a trigger)."""
    sign = {"+": 1, "-": -1}.get(name[-1:], 0)
    base = name[:-1] if sign else name
    if base in _CODES and not sign:
        return Control("key", _CODES[base])
    if base in _ABS_CODES:
        return Control("axis", _ABS_CODES[base], sign)
    for prefix, kind in (("KEY_0x", "key"), ("ABS_0x", "axis")):
        if base.startswith(prefix):
            try:
                return Control(kind, int(base[4:], 16), sign if kind == "axis" else 0)
            except ValueError:
                break
    raise ValueError(f"unknown control {name!r} (use names like BTN_SOUTH, ABS_HAT0X-, ABS_Z)")


def _k(*names: str, fallback: bool = False) -> tuple[Control, ...]:
    return tuple(Control("key", _CODES[n], fallback=fallback) for n in names)


def _hat(axis: str, sign: int) -> tuple[Control, ...]:
    return (Control("axis", _ABS_CODES[axis], sign),)


def _trig(*axes: str) -> tuple[Control, ...]:
    return tuple(Control("axis", _ABS_CODES[a], 0) for a in axes)


@dataclass(frozen=True)
class Layout:
    """Button i (0 = lowest) is pressed while any of ``buttons[i]``'s controls is."""

    name: str
    buttons: tuple[tuple[Control, ...], ...]

    def for_device(self, keys: Iterable[int], axes: Iterable[int]) -> Layout:
        """Only the controls this device has; fallbacks only where the analog axis is missing."""
        keys, axes = set(keys), set(axes)
        out = []
        for controls in self.buttons:
            have = [c for c in controls if c.code in (keys if c.kind == "key" else axes)]
            main = [c for c in have if not c.fallback]
            out.append(tuple(main if any(c.kind == "axis" for c in main) else have))
        return Layout(self.name, tuple(out))

    def names(self) -> list[str]:
        return ["|".join(c.name for c in controls) or "-" for controls in self.buttons]


def layout_from_names(name: str, controls: list[str]) -> Layout:
    """A layout from 8 control names (a learned or configured map); '|' separates alternatives."""
    return Layout(name, tuple(tuple(parse_control(c) for c in entry.split("|")) for entry in controls))


# The Xbox-style pads below share one idea of where the hands sit: thumbs on the D-pad and the
# face buttons, index fingers on the bumpers, middle fingers on the triggers. The 8 buttons run
# across the pad from left to right, mirror-symmetric: the left hand plays 0-3 from the outside in
# (trigger, bumper, D-pad left, D-pad right), the right hand 4-7 from the inside out (left face
# button, right face button, bumper, trigger). So the lowest note is the left middle finger, the
# highest the right one, each thumb rocks between two neighbouring buttons, and up to six buttons
# can be held at once (a chord of three per hand). Up/down and the top/bottom face buttons stay
# free (Piano Genie's contour is left/right; a learned map can use them).

LEFT = _hat("ABS_HAT0X", -1) + _k("BTN_DPAD_LEFT")
RIGHT = _hat("ABS_HAT0X", 1) + _k("BTN_DPAD_RIGHT")

# Xbox / XInput (xpad; also Xbox One/Series over USB, 8BitDo and most third-party pads in X-input
# mode, which enumerate as 045e:028e). xpad reports the face buttons by *label*: X (left) is
# BTN_X = 0x133, which input-event-codes.h also names BTN_NORTH, and Y (top) is BTN_Y = BTN_WEST;
# so the left face button here is code 0x133. Triggers: ABS_Z/ABS_RZ (0-255 on a 360 pad, 0-1023
# on an Xbox One), ABS_BRAKE/ABS_GAS over Bluetooth (hid-microsoft/xpadneo), or BTN_TL2/BTN_TR2
# with xpad's triggers_to_buttons; D-pad: the hat, or BTN_TRIGGER_HAPPY1-4 (left, right, up, down)
# with dpad_to_buttons.
XBOX = Layout("xbox", (
    _trig("ABS_Z", "ABS_BRAKE") + _k("BTN_TL2", fallback=True),   # 0 LT
    _k("BTN_TL"),                                                 # 1 LB
    LEFT + _k("BTN_TRIGGER_HAPPY1"),                              # 2 D-pad left
    RIGHT + _k("BTN_TRIGGER_HAPPY2"),                             # 3 D-pad right
    _k("BTN_X"),                                                  # 4 X (left face, code 0x133)
    _k("BTN_EAST"),                                               # 5 B (right face)
    _k("BTN_TR"),                                                 # 6 RB
    _trig("ABS_RZ", "ABS_GAS") + _k("BTN_TR2", fallback=True),    # 7 RT
))

# PlayStation: DualShock 4 / DualSense via hid-playstation (and hid-sony for DualShock 3/4 on older
# kernels): positional codes as gamepad.rst says: square BTN_WEST, cross BTN_SOUTH, circle
# BTN_EAST, triangle BTN_NORTH; L2/R2 are ABS_Z/ABS_RZ 0-255 *and* BTN_TL2/BTN_TR2 (the key is a
# fallback only); D-pad the hat (DualShock 3: BTN_DPAD_*). Same hand positions as Xbox.
PLAYSTATION = Layout("playstation", (
    _trig("ABS_Z") + _k("BTN_TL2", fallback=True),                # 0 L2
    _k("BTN_TL"),                                                 # 1 L1
    LEFT,                                                         # 2 D-pad left
    RIGHT,                                                        # 3 D-pad right
    _k("BTN_WEST"),                                               # 4 square
    _k("BTN_EAST"),                                               # 5 circle
    _k("BTN_TR"),                                                 # 6 R1
    _trig("ABS_RZ") + _k("BTN_TR2", fallback=True),               # 7 R2
))

# Switch Pro Controller via hid-nintendo (and 8BitDo pads in Switch mode, which enumerate as
# 057e:2009): since the driver follows gamepad.rst, Y (left) is BTN_WEST and A (right) BTN_EAST
# (older kernels mapped by label: A was BTN_SOUTH there; `genie learn` fixes such a pad). ZL/ZR
# are digital (BTN_TL2/BTN_TR2): no velocity. D-pad: the hat, or BTN_DPAD_*.
SWITCH = Layout("switch", (
    _k("BTN_TL2"),                                                # 0 ZL
    _k("BTN_TL"),                                                 # 1 L
    LEFT,                                                         # 2 D-pad left
    RIGHT,                                                        # 3 D-pad right
    _k("BTN_WEST"),                                               # 4 Y (left face)
    _k("BTN_EAST"),                                               # 5 A (right face)
    _k("BTN_TR"),                                                 # 6 R
    _k("BTN_TR2"),                                                # 7 ZR
))

# 8BitDo in D-input (Android/macOS) mode: hid-generic reports HID buttons 1, 2, 4, 5 as 0x130,
# 0x131, 0x133, 0x134, and 8BitDo numbers them A, B, X, Y (Nintendo labels: A right, B bottom,
# X top, Y left); so Y (left) is 0x134 and A (right) 0x130. Analog L2/R2 where present are
# ABS_BRAKE/ABS_GAS, else BTN_TL2/BTN_TR2. (In X-input mode the pad is an Xbox pad, in Switch
# mode a Pro Controller: detected as those.) From SDL's mapping database convention; not checked
# on hardware here.
EIGHTBITDO = Layout("8bitdo", (
    _trig("ABS_BRAKE") + _k("BTN_TL2", fallback=True),            # 0 L2
    _k("BTN_TL"),                                                 # 1 L
    LEFT,                                                         # 2 D-pad left
    RIGHT,                                                        # 3 D-pad right
    _k("BTN_WEST"),                                               # 4 Y (left face, HID button 5)
    _k("BTN_SOUTH"),                                              # 5 A (right face, HID button 1)
    _k("BTN_TR"),                                                 # 6 R
    _trig("ABS_GAS") + _k("BTN_TR2", fallback=True),              # 7 R2
))

# Arcade-button encoders (Zero Delay / DragonRise, Xin-Mo, ...): inputs 1-8 of the encoder are
# buttons 0-7 (BTN_TRIGGER .. BTN_BASE2 in hid-generic's order). Wire the panel low → high: left
# to right, bottom row first. The joystick is not a button.
ARCADE = Layout("arcade", tuple(_k(n) for n in (
    "BTN_TRIGGER", "BTN_THUMB", "BTN_THUMB2", "BTN_TOP", "BTN_TOP2", "BTN_PINKIE", "BTN_BASE",
    "BTN_BASE2")))

LAYOUTS = {lay.name: lay for lay in (XBOX, PLAYSTATION, SWITCH, EIGHTBITDO, ARCADE)}
LAYOUT_NAMES = (*LAYOUTS, "generic")

ARCADE_IDS = {(0x16C0, 0x05E1), (0xD209, 0x0501), (0xD209, 0x0511)}  # Xin-Mo, Ultimarc U-HID
ARCADE_WORDS = ("arcade", "encoder", "zero delay", "xin-mo", "xinmotek", "ultimarc")


def generic_layout(keys: Iterable[int], axes: Iterable[int]) -> Layout:
    """A generic USB HID pad: its first 8 buttons in HID order (the numbers most such pads print
    beside their buttons), topped up with D-pad directions when it has fewer than 8."""
    keys = sorted(k for k in set(keys) if k in JOYSTICK_KEYS or k in GAMEPAD_KEYS)
    buttons: list[tuple[Control, ...]] = [(Control("key", k),) for k in keys[:8]]
    axes = set(axes)
    # A hat is the D-pad; a pad without one often reports its D-pad on ABS_X/ABS_Y.
    dx, dy = (0x10, 0x11) if 0x10 in axes else (0x00, 0x01)
    # left, down, up, right: low to high as they read (hat and stick Y are negative upwards)
    extra = [Control("axis", code, sign) for code, sign in ((dx, -1), (dy, 1), (dy, -1), (dx, 1))
             if code in axes]
    for c in extra:
        if len(buttons) == 8:
            break
        buttons.append((c,))
    while len(buttons) < 8:
        buttons.append(())
    return Layout("generic", tuple(buttons))


DPAD_KEYS = range(0x220, 0x224)
TRIGGER_HAPPY_KEYS = range(0x2C0, 0x2E8)


def all_controls_layout(keys: Iterable[int], axes: dict[int, tuple[int, int, int]]) -> Layout:
    """Every control of a pad, one "button" each (for ``genie learn``).

    ``axes`` maps each axis code to its (value, min, max) now, while nothing is pressed: an axis
    resting at its minimum is a trigger; any other axis (hat, stick) gives two controls, one per
    direction."""
    controls = [Control("key", k) for k in sorted(set(keys)) if k in JOYSTICK_KEYS
                or k in GAMEPAD_KEYS or k in DPAD_KEYS or k in TRIGGER_HAPPY_KEYS]
    for code, (value, lo, hi) in sorted(axes.items()):
        if code in HATS or value - lo > 0.1 * (hi - lo):
            controls += [Control("axis", code, -1), Control("axis", code, 1)]
        else:
            controls.append(Control("axis", code, 0))
    return Layout("learn", tuple((c,) for c in controls))


def is_controller(keys: Iterable[int]) -> bool:
    """A game controller: it has a key in the BTN_JOYSTICK or BTN_GAMEPAD block (BTN_TRIGGER,
    BTN_SOUTH ...). Keyboards, mice and a DualSense's touchpad and motion nodes do not."""
    return any(k in JOYSTICK_KEYS or k in GAMEPAD_KEYS for k in keys)


def detect_layout(name: str, vendor: int, product: int, keys: Iterable[int],
                  axes: Iterable[int]) -> Layout:
    """The default layout for a device, from its ids and name, then its capabilities; generic last.

    Returned already fitted to the device (``Layout.for_device``)."""
    keys, axes = set(keys), set(axes)
    low = name.lower()
    if vendor == 0x045E or "xbox" in low or "x-box" in low or "xinput" in low:
        lay = XBOX  # includes 8BitDo and third-party pads in X-input mode (045e:028e)
    elif vendor == 0x054C or any(w in low for w in ("dualsense", "dualshock", "playstation")):
        lay = PLAYSTATION
    elif vendor == 0x057E or "pro controller" in low:
        lay = SWITCH  # includes 8BitDo in Switch mode (057e:2009)
    elif vendor == 0x2DC8 or "8bitdo" in low:
        lay = EIGHTBITDO
    elif (vendor, product) in ARCADE_IDS or any(w in low for w in ARCADE_WORDS):
        lay = ARCADE
    elif {0x130, 0x133, 0x134, 0x136, 0x137} <= keys and (0x10 in axes or 0x222 in keys):
        lay = XBOX  # follows gamepad.rst with bumpers and a D-pad: most xpad-driven pads
    else:
        return generic_layout(keys, axes)
    return lay.for_device(keys, axes)


# ---- the parser --------------------------------------------------------------------------------

class PadChange(NamedTuple):
    button: int
    pressed: bool
    velocity: int | None
    time_ns: int


VELOCITY_FLOOR = 32  # a trigger that just crosses the threshold; a full squeeze is 127


def event_time_ns(ev: Any) -> int:
    return ev.sec * 1_000_000_000 + ev.usec * 1_000


class PadParser:
    """Turns one pad's input events into button presses and releases, frame by frame.

    ``ranges`` gives each axis's (min, max) (from the device's absinfo); by default a hat spans
    -1..1 and any other axis 0..255. ``offset_ns`` is added to each event's own time to put it on
    the daemon's clock."""

    def __init__(self, layout: Layout, *, offset_ns: int = 0,
                 ranges: dict[int, tuple[int, int]] | None = None, threshold: float = 0.5,
                 hysteresis: float = 0.15) -> None:
        if not 0 < threshold <= 1 or not 0 <= hysteresis < threshold:
            raise ValueError("need 0 < threshold <= 1 and 0 <= hysteresis < threshold")
        self.layout = layout
        self.offset_ns = offset_ns
        self.ranges = dict(ranges or {})
        self.press_at = threshold
        self.release_below = threshold - hysteresis
        self._keys: dict[int, list[tuple[Control, int]]] = {}
        self._axes: dict[int, list[tuple[Control, int]]] = {}
        for button, controls in enumerate(layout.buttons):
            for c in controls:
                (self._keys if c.kind == "key" else self._axes).setdefault(c.code, []).append(
                    (c, button))
        self._active: set[Control] = set()
        self._by_button: dict[int, set[Control]] = {}
        self._frame_keys: dict[int, int] = {}
        self._frame_axes: dict[int, int] = {}
        self._dropping = False
        self.needs_resync = False

    @property
    def held(self) -> set[int]:
        return set(self._by_button)

    def wants(self) -> tuple[set[int], set[int]]:
        """The key and axis codes this parser reads."""
        return set(self._keys), set(self._axes)

    def feed(self, ev: Any) -> list[PadChange]:
        """One input event; changes come out at the end of its frame (``SYN_REPORT``)."""
        if ev.type == EV_SYN:
            if ev.code == SYN_REPORT:
                if self._dropping:  # the frame a SYN_DROPPED ended: its events are incomplete
                    self._dropping = False
                    self.needs_resync = True
                    return []
                keys, axes = self._frame_keys, self._frame_axes
                self._frame_keys, self._frame_axes = {}, {}
                return self._apply(keys, axes, event_time_ns(ev) + self.offset_ns)
            if ev.code == SYN_DROPPED:
                # The kernel's buffer overflowed: events were lost. Drop everything up to and
                # including the next SYN_REPORT, then the owner re-reads the device's state.
                self._dropping = True
                self._frame_keys.clear()
                self._frame_axes.clear()
            return []
        if self._dropping:
            return []
        if ev.type == EV_KEY and ev.code in self._keys:
            self._frame_keys[ev.code] = ev.value  # 2 (auto-repeat) counts as held
        elif ev.type == EV_ABS and ev.code in self._axes:
            self._frame_axes[ev.code] = ev.value
        return []

    def resync(self, keys_down: Iterable[int], axis_values: dict[int, int],
               t_ns: int) -> list[PadChange]:
        """After ``SYN_DROPPED``: the device's state as it is now (``EVIOCGKEY``/``EVIOCGABS``).

        Buttons still held stay held (no re-strike); the rest are released, and a button pressed
        during the gap is pressed now."""
        self.needs_resync = False
        self._dropping = False
        down = set(keys_down)
        keys = {code: int(code in down) for code in self._keys}
        axes = {code: v for code, v in axis_values.items() if code in self._axes}
        return self._apply(keys, axes, t_ns)

    def release_all(self, t_ns: int) -> list[PadChange]:
        """Everything held is let go (the pad is gone, or its state is unknown)."""
        out = [PadChange(b, False, None, t_ns) for b in sorted(self._by_button)]
        self._active.clear()
        self._by_button.clear()
        self._frame_keys.clear()
        self._frame_axes.clear()
        self.needs_resync = False
        return out

    # ---- internals -----------------------------------------------------------------------------

    def _norm(self, c: Control, value: int) -> float:
        lo, hi = self.ranges.get(c.code) or ((-1, 1) if c.code in HATS else (0, 255))
        span = (hi - lo) or 1
        if c.sign == 0:  # a trigger: 0 at rest .. 1 fully pressed
            return (value - lo) / span
        return c.sign * (2.0 * (value - lo) / span - 1.0)  # this half of a centred axis

    def _apply(self, keys: dict[int, int], axes: dict[int, int], t_ns: int) -> list[PadChange]:
        presses: dict[int, int | None] = {}
        released: set[int] = set()
        for code, value in keys.items():
            for c, button in self._keys[code]:
                self._set(c, button, value != 0, None, presses, released)
        for code, value in axes.items():
            for c, button in self._axes[code]:
                x = self._norm(c, value)
                on = x >= (self.release_below if c in self._active else self.press_at)
                vel = _velocity(x, self.press_at) if c.is_trigger else None
                self._set(c, button, on, vel, presses, released)
        out = [PadChange(b, False, None, t_ns) for b in sorted(released - set(presses))]
        out += [PadChange(b, True, v, t_ns) for b, v in sorted(presses.items())
                if b not in released]
        return out

    def _set(self, c: Control, button: int, on: bool, velocity: int | None,
             presses: dict[int, int | None], released: set[int]) -> None:
        if on == (c in self._active):
            return
        holders = self._by_button.setdefault(button, set())
        if on:
            self._active.add(c)
            if not holders:
                if button in released:  # released and pressed again within one frame: held on
                    released.discard(button)
                else:
                    presses[button] = velocity
            holders.add(c)
        else:
            self._active.discard(c)
            holders.discard(c)
            if not holders:
                del self._by_button[button]
                if button in presses:  # pressed and released within one frame: nothing happened
                    del presses[button]
                else:
                    released.add(button)


def _velocity(depth: float, threshold: float) -> int:
    frac = 1.0 if threshold >= 1 else (min(depth, 1.0) - threshold) / (1.0 - threshold)
    return max(1, min(127, round(VELOCITY_FLOOR + (127 - VELOCITY_FLOOR) * max(0.0, frac))))


class RawEvent(NamedTuple):
    """An input event with the fields of ``evdev.InputEvent``, where python-evdev is missing (the
    FIFO devices of ``daemon.io.fifo_input`` need no python-evdev)."""

    sec: int
    usec: int
    type: int
    code: int
    value: int


def decode_events(data: bytes, make: Callable[..., Any] | None = None) -> list[Any]:
    """``struct input_event`` records, as read from an event device, into InputEvents."""
    if make is None:
        try:
            from evdev import InputEvent as make
        except ImportError:
            make = RawEvent
    n = len(data) // EVENT.size
    return [make(*EVENT.unpack_from(data, i * EVENT.size)) for i in range(n)]


def encode_event(sec: int, usec: int, type_: int, code: int, value: int) -> bytes:
    """The bytes the kernel writes for one event (tests feed these through a pipe)."""
    return EVENT.pack(sec, usec, type_, code, value)


# ---- clocks ------------------------------------------------------------------------------------

def clock_offset_ns(clock_id: int) -> int:
    """``now_ns() - clock_gettime_ns(clock_id)``, read between two daemon-clock readings.

    About 0 for CLOCK_MONOTONIC on Linux (perf_counter_ns *is* CLOCK_MONOTONIC there); for the
    wall clock it is whatever the two differ by now, and goes stale when NTP steps the clock."""
    best = None
    for _ in range(5):
        a = now_ns()
        c = time.clock_gettime_ns(clock_id)
        b = now_ns()
        if best is None or b - a < best[0]:
            best = (b - a, (a + b) // 2 - c)
    return best[1]


def use_monotonic_clock(fd: int) -> int:
    """Ask the kernel to stamp this device's events with CLOCK_MONOTONIC; the offset to add.

    Falls back to the wall clock (the default) when the ioctl fails."""
    import fcntl  # POSIX only; the tables above also load where there is none (config checks)

    try:
        fcntl.ioctl(fd, EVIOCSCLOCKID, struct.pack("i", time.CLOCK_MONOTONIC))
        return clock_offset_ns(time.CLOCK_MONOTONIC)
    except OSError as exc:
        log.warning("evdev: cannot set the monotonic event clock (%s); using wall-clock times, "
                    "which jump when NTP steps the clock", exc)
        return clock_offset_ns(time.CLOCK_REALTIME)


# ---- settings ----------------------------------------------------------------------------------

@dataclass
class GamepadSettings:
    """What ``[gamepad]`` in the config holds (``daemon.config.GamepadConfig`` mirrors it)."""

    enabled: str = "auto"  # auto (when python-evdev and /dev/input exist) | on | off
    grab: bool = False  # exclusive access: presses do not reach the console or other programs
    devices: list[str] = field(default_factory=lambda: ["*"])  # name or path globs to open
    layout: str = "auto"  # auto | xbox | playstation | switch | 8bitdo | generic | arcade
    trigger_threshold: float = 0.5  # a trigger or stick is a pressed button past this depth
    trigger_hysteresis: float = 0.15  # ... and released below threshold - hysteresis
    maps: dict[str, Any] = field(default_factory=dict)  # layout name or device-name glob -> 8 controls


def _setting(cfg: Any, name: str) -> Any:
    """``cfg.name`` (a ``[gamepad]`` config section or GamepadSettings), else the default."""
    return getattr(cfg, name) if hasattr(cfg, name) else getattr(GamepadSettings(), name)


def choose_layout(name: str, vendor: int, product: int, keys: Iterable[int], axes: Iterable[int],
                  cfg: Any = None, learned: dict[str, list[str]] | None = None) -> Layout:
    """Learned map for this device name, else a configured map (device-name glob, then layout
    name), else the forced or detected default layout."""
    keys, axes = set(keys), set(axes)
    if learned and name in learned:
        return layout_from_names(f"learned:{name}", learned[name])
    forced = _setting(cfg, "layout")
    if forced in LAYOUTS:
        lay = LAYOUTS[forced].for_device(keys, axes)
    elif forced == "generic":
        lay = generic_layout(keys, axes)
    else:
        lay = detect_layout(name, vendor, product, keys, axes)
    maps = _setting(cfg, "maps") or {}
    for pattern, controls in maps.items():
        if pattern != lay.name and fnmatch.fnmatchcase(name, pattern):
            return layout_from_names(f"config:{pattern}", controls)
    if lay.name in maps:
        return layout_from_names(f"config:{lay.name}", maps[lay.name])
    return lay


def check_maps(maps: dict[str, Any]) -> str | None:
    """Why a ``[gamepad.maps]`` table is wrong, or None."""
    for key, controls in maps.items():
        if not isinstance(controls, list) or len(controls) != 8 or not all(
                isinstance(c, str) for c in controls):
            return f"gamepad.maps.{key}: must list 8 control names"
        for entry in controls:
            for c in entry.split("|"):
                try:
                    parse_control(c)
                except ValueError as exc:
                    return f"gamepad.maps.{key}: {exc}"
    return None


# ---- the device loop: every evdev node Genie plays from -----------------------------------------

class GamepadUnavailable(Exception):
    """No evdev devices possible here: python-evdev missing or not Linux; the message says which."""


PERMISSION_HINT = ("add yourself to the input group (sudo usermod -aG input $USER, then log in "
                   "again) or install systemd/99-genie-input.rules")


def evdev_available() -> str | None:
    """None when python-evdev imports; else why not."""
    try:
        import evdev  # noqa: F401
    except ImportError as exc:
        return (f"python-evdev is not installed ({exc}): pip install 'genie[evdev]' (builds with "
                "gcc and the kernel headers) or apt install python3-evdev")
    return None


def open_evdev(path: str) -> Any:
    """The real device: an ``evdev.InputDevice`` (opened non-blocking)."""
    from evdev import InputDevice

    return InputDevice(path)


def is_event_node(name: str) -> bool:
    """``event7``: an evdev node's name in /dev/input (not ``js0``, ``mice``, ``by-id``)."""
    return re.fullmatch(r"event\d+", name) is not None


def device_caps(dev: Any) -> tuple[set[int], dict[int, tuple[int, int, int]]]:
    """(key codes, {axis code: (value, min, max)}) from an evdev-style ``capabilities()``."""
    caps = dev.capabilities(absinfo=True)
    keys = set(caps.get(EV_KEY, []))
    axes = {}
    for item in caps.get(EV_ABS, []):
        code, info = item
        axes[code] = (info.value, info.min, info.max)
    return keys, axes


def sysfs_keys(path: str) -> set[int] | None:
    """The key codes the kernel lists for an event node, readable without permission to open it
    (None: sysfs unreadable).

    The bitmap is printed as kernel-``long`` words, most significant first; the word size is the
    kernel's (a 32-bit userland on a 64-bit Raspberry Pi kernel still gets 64-bit words)."""
    try:
        text = Path(f"/sys/class/input/{Path(path).name}/device/capabilities/key").read_text()
    except OSError:
        return None
    bits = 64 if "64" in os.uname().machine else 32
    value = 0
    try:
        for word in text.split():
            value = (value << bits) | int(word, 16)
    except ValueError:
        return None
    return {c for c in range(value.bit_length()) if value >> c & 1}


def sysfs_is_controller(path: str) -> bool | None:
    """Whether the kernel lists controller keys for this node (None: sysfs unreadable)."""
    keys = sysfs_keys(path)
    return None if keys is None else is_controller(keys)


def sysfs_name(path: str) -> str | None:
    """The kernel's name for an event device, readable without permission to open it."""
    try:
        return Path(f"/sys/class/input/{Path(path).name}/device/name").read_text().strip()
    except OSError:
        return None


def event_clock_offset(dev: Any) -> int:
    """What to add to this device's event stamps to put them on the daemon's clock.

    A kernel node is asked for CLOCK_MONOTONIC stamps (``EVIOCSCLOCKID``); a device that stamps
    its events itself (``daemon.io.fifo_input``, for tests and benchmarks) names its clock in
    ``clock_id``."""
    clock = getattr(dev, "clock_id", None)
    if clock is not None:
        return clock_offset_ns(clock)
    return use_monotonic_clock(dev.fileno())


class Parser(Protocol):
    """What the device loop needs of a kind's parser (``PadParser`` is one)."""

    needs_resync: bool

    def feed(self, ev: Any) -> list[PadChange]: ...
    def wants(self) -> tuple[set[int], set[int]]: ...
    def resync(self, keys_down: Iterable[int], axis_values: dict[int, int],
               t_ns: int) -> list[PadChange]: ...
    def release_all(self, t_ns: int) -> list[PadChange]: ...


class DeviceKind(ABC):
    """One kind of evdev device Genie plays from: game controllers, keyboards.

    The device loop (``EvdevSource``) opens each event node, reads its capabilities and asks the
    kinds in turn; the first that ``accepts`` it (and whose ``patterns`` match its name or path)
    names its source (``<name>:<device name>``) and builds its parser. ``grab`` takes the device
    for Genie alone; ``refused_level`` is how loudly a node of this kind that we may not read is
    logged."""

    name = "device"
    grab = False
    refused_level = logging.ERROR
    patterns: tuple[str, ...] | list[str] = ("*",)

    @abstractmethod
    def accepts(self, keys: set[int], axes: dict[int, tuple[int, int, int]]) -> bool:
        """Whether a device with these key codes (and axes: absent when only sysfs was read) is
        of this kind."""

    @abstractmethod
    def parser(self, name: str, vendor: int, product: int, keys: set[int],
               axes: dict[int, tuple[int, int, int]], offset_ns: int) -> tuple[Parser, str]:
        """The device's parser, and what its buttons are (for the log)."""

    def wanted(self, name: str, path: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(path, p)
                   for p in self.patterns)


class GamepadKind(DeviceKind):
    """Game controllers: a key in the BTN_JOYSTICK or BTN_GAMEPAD block; a layout each."""

    name = "gamepad"

    def __init__(self, cfg: Any = None, learned: dict[str, list[str]] | None = None) -> None:
        if learned is None:
            from daemon.io.learn import load_learned

            learned = load_learned()
        self.cfg = cfg
        self.learned = learned
        self.grab = bool(_setting(cfg, "grab"))
        self.patterns = list(_setting(cfg, "devices") or ["*"])
        self.threshold = float(_setting(cfg, "trigger_threshold"))
        self.hysteresis = float(_setting(cfg, "trigger_hysteresis"))

    def accepts(self, keys: set[int], axes: dict[int, tuple[int, int, int]]) -> bool:
        return is_controller(keys)

    def parser(self, name: str, vendor: int, product: int, keys: set[int],
               axes: dict[int, tuple[int, int, int]], offset_ns: int) -> tuple[Parser, str]:
        layout = choose_layout(name, vendor, product, keys, axes, self.cfg, self.learned)
        parser = PadParser(layout, offset_ns=offset_ns,
                           ranges={c: (lo, hi) for c, (_, lo, hi) in axes.items()},
                           threshold=self.threshold, hysteresis=self.hysteresis)
        missing = [i for i, controls in enumerate(layout.buttons) if not controls]
        return parser, (f"layout {layout.name}: "
                        + " ".join(f"{i}={n}" for i, n in enumerate(layout.names()))
                        + (f"; buttons {missing} have no control on this pad (genie learn)"
                           if missing else ""))


@dataclass
class _Device:
    dev: Any
    fd: int
    path: str
    name: str
    source: str
    kind: DeviceKind
    parser: Parser
    buf: bytes = b""


def _read_node(fd: int) -> bytes:
    """One read of an event node: whole ``struct input_event``s (an evdev node never splits one;
    a FIFO may)."""
    return os.read(fd, EVENT.size * READ_EVENTS)


class EvdevSource:
    """Opens evdev devices of the given kinds as they appear and posts their buttons as
    ``ButtonEvent``s.

    One thread, ``genie-evdev``, waits in ``select`` on every open device, an inotify watch of
    ``dev_dir`` (hot-plug) and a stop pipe; no polling sleeps. ``post(ButtonEvent)`` hands an
    event to the engine; ``on_lost(source)`` tells it a device went away (after its releases were
    posted) so it ends whatever that device's notes left sounding.

    ``opener`` and ``dev_dir`` exist for tests and benchmarks: this machine has no /dev/input, so
    they open a directory of their own with an opener that builds a device on a pipe or a FIFO;
    the parsers, the reading, the hot-plug watch and the release logic are the real ones.
    """

    def __init__(self, post: Callable[[ButtonEvent], None],
                 on_lost: Callable[[str], None] | None, kinds: list[DeviceKind], *,
                 dev_dir: str = "/dev/input", opener: Callable[[str], Any] | None = None) -> None:
        if opener is None:
            why = evdev_available()
            if why:
                raise GamepadUnavailable(why)
        if not kinds:
            raise ValueError("EvdevSource needs at least one device kind")
        self.post = post
        self.on_lost = on_lost
        self.kinds = list(kinds)
        self.dev_dir = dev_dir
        self.opener = opener or open_evdev
        self._devices: dict[int, _Device] = {}  # by fd; touched by the device thread only
        self._refused: set[str] = set()  # paths whose permission error was logged
        self._skipped: set[str] = set()  # paths of no kind here (or not wanted)
        self._lock = threading.Lock()
        self._sources: dict[str, str] = {}  # path -> source, for sources()
        self._stop_r, self._stop_w = os.pipe()
        self._sel = selectors.DefaultSelector()
        self._watch = None
        self._thread = threading.Thread(target=self._run, name="genie-evdev", daemon=True)

    # ---- public --------------------------------------------------------------------------------

    def start(self) -> None:
        """Open the devices present now, then follow hot-plug on the ``genie-evdev`` thread."""
        self._sel.register(self._stop_r, selectors.EVENT_READ, "stop")
        # Hot-plug: inotify on the device directory (its fd waits in the same select as the
        # devices); where inotify is unavailable, the select times out every second and the
        # directory is scanned again.
        self._watch = Inotify.open(self.dev_dir)
        if self._watch is not None:
            self._sel.register(self._watch.fd, selectors.EVENT_READ, "watch")
        else:
            log.info("%s: no inotify on %s; looking for new devices every second",
                     self._what(), self.dev_dir)
        self._scan()
        self._thread.start()

    def stop(self) -> None:
        """Release every held button, close the devices; idempotent."""
        if self._stop_w < 0:
            return
        os.write(self._stop_w, b"x")
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        else:
            self._close_all()
        self._sel.close()
        if self._watch is not None:
            self._watch.close()
        os.close(self._stop_r)
        os.close(self._stop_w)
        self._stop_w = -1

    def sources(self, kind: str | None = None) -> list[str]:
        """The sources open now (of one kind: ``"gamepad"``, ``"keyboard"``)."""
        with self._lock:
            return sorted(s for s in self._sources.values()
                          if kind is None or s.startswith(kind + ":"))

    # ---- the device thread ---------------------------------------------------------------------

    def _what(self) -> str:
        return "/".join(k.name for k in self.kinds)

    def _run(self) -> None:
        try:
            while True:
                ready = self._sel.select(None if self._watch is not None else 1.0)
                if not ready and self._watch is None:
                    self._scan()
                for key, _ in ready:
                    if key.data == "stop":
                        return
                    if key.data == "watch":
                        for name in self._watch.read():
                            if is_event_node(name):
                                self._try_open(os.path.join(self.dev_dir, name), retry=True)
                    else:
                        device = self._devices.get(key.fd)
                        if device is not None:
                            self._read(device)
        except Exception:
            log.exception("%s thread failed; its buttons are released", self._what())
        finally:
            self._close_all()

    def _scan(self) -> None:
        try:
            names = sorted(os.listdir(self.dev_dir))
        except OSError:
            return
        for name in names:
            if is_event_node(name):
                self._try_open(os.path.join(self.dev_dir, name))

    def _try_open(self, path: str, retry: bool = False) -> None:
        """Open ``path`` if it is a wanted device and not open yet.

        ``retry``: the node was just created or its permissions changed (udev sets the group and
        ACLs a moment after the kernel creates the node), so earlier refusals do not count."""
        if any(d.path == path for d in self._devices.values()):
            return
        if retry:
            self._refused.discard(path)
            self._skipped.discard(path)
        if path in self._skipped or (path in self._refused and not retry):
            return
        try:
            dev = self.opener(path)
        except PermissionError:
            if path not in self._refused:
                self._refused.add(path)
                self._log_refused(path)
            return
        except OSError as exc:  # gone already, or not an input device
            log.debug("%s: cannot open %s: %s", self._what(), path, exc)
            return
        try:
            self._add(dev, path)
        except OSError as exc:
            log.warning("%s: %s: %s", self._what(), path, exc)
            _close_quietly(dev)

    def _log_refused(self, path: str) -> None:
        # sysfs tells what the node is without opening it: a mouse we may not read is no news,
        # a device of one of our kinds is a line at that kind's level (one line, once).
        keys = sysfs_keys(path)
        if keys is None:  # unknown: as loud as the loudest kind
            kind = max(self.kinds, key=lambda k: k.refused_level)
        else:
            kind = next((k for k in self.kinds if k.accepts(keys, {})), None)
        name = sysfs_name(path)
        log.log(logging.DEBUG if kind is None else kind.refused_level,
                "%s: no permission to read %s%s: %s",
                kind.name if kind is not None else self._what(), path,
                f" ({name})" if name else "", PERMISSION_HINT)

    def _add(self, dev: Any, path: str) -> None:
        keys, axes = device_caps(dev)
        name = str(getattr(dev, "name", "") or path)
        kind = next((k for k in self.kinds if k.accepts(keys, axes) and k.wanted(name, path)),
                    None)
        if kind is None:
            self._skipped.add(path)
            _close_quietly(dev)
            return
        info = getattr(dev, "info", None)
        vendor, product = (getattr(info, "vendor", 0), getattr(info, "product", 0))
        fd = dev.fileno()
        parser, described = kind.parser(name, vendor, product, keys, axes,
                                        event_clock_offset(dev))
        if kind.grab:
            try:
                dev.grab()
            except OSError as exc:
                log.warning("%s: cannot grab %s (%s): another program has it", kind.name, name,
                            exc)
        with self._lock:
            taken = set(self._sources.values())
            source = f"{kind.name}:{name}"
            n = 2
            while source in taken:
                source, n = f"{kind.name}:{name} #{n}", n + 1
            self._sources[path] = source
        os.set_blocking(fd, False)
        device = _Device(dev, fd, path, name, source, kind, parser)
        self._devices[fd] = device
        self._sel.register(fd, selectors.EVENT_READ, "device")
        # Buttons already held when the device opens are pressed now (as after SYN_DROPPED).
        self._resync(device)
        log.info("%s: %s (%s) is %s, %s", kind.name, name, path, source, described)

    def _read(self, device: _Device) -> None:
        try:
            data = _read_node(device.fd)
        except BlockingIOError:
            return
        except OSError as exc:  # ENODEV: unplugged
            self._lose(device, exc)
            return
        if not data:
            self._lose(device, None)
            return
        data = device.buf + data
        whole = len(data) - len(data) % EVENT.size
        device.buf = data[whole:]
        for ev in decode_events(data[:whole]):
            self._emit(device, device.parser.feed(ev))
            if device.parser.needs_resync:
                self._resync(device)

    def _resync(self, device: _Device) -> None:
        """Re-read the device's state (``EVIOCGKEY``, ``EVIOCGABS``); release all when that fails."""
        t = now_ns()
        keys, axes = device.parser.wants()
        try:
            down = set(device.dev.active_keys())
            values = {code: device.dev.absinfo(code).value for code in axes}
        except OSError:
            self._emit(device, device.parser.release_all(t))
            return
        self._emit(device, device.parser.resync(down & keys, values, t))

    def _emit(self, device: _Device, changes: list[PadChange]) -> None:
        if not changes:
            return
        now = now_ns()
        for ch in changes:
            # The kernel's stamp is when the report arrived; it cannot be later than now, and a
            # stamp a second old means the clock conversion is wrong: use now then.
            t = ch.time_ns if now - 1_000_000_000 <= ch.time_ns <= now else now
            self.post(ButtonEvent(t, device.source, ch.button, ch.pressed, ch.velocity))

    def _lose(self, device: _Device, exc: OSError | None) -> None:
        if exc is None or exc.errno == errno.ENODEV:
            log.warning("%s: %s unplugged; its buttons are released", device.kind.name,
                        device.name)
        else:
            log.warning("%s: %s failed (%s); its buttons are released", device.kind.name,
                        device.name, exc)
        self._drop(device)
        if self.on_lost is not None:
            self.on_lost(device.source)
        # Unplugged and plugged back faster than this read noticed: the node's creation was
        # already seen while the old device held its path, so look again now.
        if os.path.exists(device.path):
            self._try_open(device.path, retry=True)

    def _drop(self, device: _Device) -> None:
        self._emit(device, device.parser.release_all(now_ns()))
        self._devices.pop(device.fd, None)
        try:
            self._sel.unregister(device.fd)
        except (KeyError, ValueError):
            pass
        with self._lock:
            self._sources.pop(device.path, None)
        if device.kind.grab:
            try:
                device.dev.ungrab()
            except OSError:
                pass
        _close_quietly(device.dev)

    def _close_all(self) -> None:
        for device in list(self._devices.values()):
            self._drop(device)


class GamepadSource(EvdevSource):
    """Game controllers alone (``genie run`` uses ``EvdevSource`` with the kinds it wants).

    Sources are ``gamepad:<device name>`` (``#2`` etc. when two pads share a name)."""

    def __init__(self, post: Callable[[ButtonEvent], None],
                 on_lost: Callable[[str], None] | None = None, cfg: Any = None, *,
                 dev_dir: str = "/dev/input", opener: Callable[[str], Any] | None = None,
                 learned: dict[str, list[str]] | None = None) -> None:
        if opener is None:  # before the learned map is read: say first what is missing
            why = evdev_available()
            if why:
                raise GamepadUnavailable(why)
        kind = GamepadKind(cfg, learned)
        super().__init__(post, on_lost, [kind], dev_dir=dev_dir, opener=opener)
        self.learned = kind.learned


def _close_quietly(dev: Any) -> None:
    try:
        dev.close()
    except OSError:
        pass


# ---- inotify (ctypes; Linux) -------------------------------------------------------------------

IN_ATTRIB, IN_MOVED_TO, IN_CREATE = 0x4, 0x80, 0x100
_INOTIFY_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of name


class Inotify:
    """An inotify watch of one directory for created (and re-permissioned) entries."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    @classmethod
    def open(cls, directory: str) -> Inotify | None:
        """None where inotify is unavailable (not Linux, no such directory)."""
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            init, add = libc.inotify_init1, libc.inotify_add_watch
        except (OSError, AttributeError):
            return None
        fd = init(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            return None
        add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        if add(fd, os.fsencode(directory), IN_CREATE | IN_ATTRIB | IN_MOVED_TO) < 0:
            os.close(fd)
            return None
        return cls(fd)

    def read(self) -> list[str]:
        """Names of the entries that changed since the last read."""
        try:
            data = os.read(self.fd, 4096)
        except BlockingIOError:
            return []
        names, i = [], 0
        while i + _INOTIFY_EVENT.size <= len(data):
            _, _, _, n = _INOTIFY_EVENT.unpack_from(data, i)
            i += _INOTIFY_EVENT.size
            name = data[i:i + n].rstrip(b"\0").decode(errors="replace")
            i += n
            if name and name not in names:
                names.append(name)
        return names

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# ---- report rate (genie doctor) ---------------------------------------------------------------

def report_interval_ms(times_ns: list[int]) -> float | None:
    """Median time between successive reports (SYN_REPORT stamps); None under 4 reports."""
    gaps = sorted(b - a for a, b in itertools.pairwise(times_ns) if b > a)
    if len(gaps) < 3:
        return None
    return gaps[len(gaps) // 2] / 1e6


def open_controllers(dev_dir: str = "/dev/input", opener: Callable[[str], Any] | None = None
                     ) -> tuple[list[tuple[Any, str, set[int], dict]], list[str]]:
    """Open every controller in ``dev_dir`` now: ([(device, path, keys, axes)], refused paths).

    Raises FileNotFoundError when the directory does not exist. Refused paths are those sysfs
    does not rule out as controllers."""
    opener = opener or open_evdev
    found, refused = [], []
    for name in sorted(p for p in os.listdir(dev_dir) if is_event_node(p)):
        path = os.path.join(dev_dir, name)
        try:
            dev = opener(path)
        except PermissionError:
            if sysfs_is_controller(path) is not False:
                refused.append(path)
            continue
        except OSError:
            continue
        try:
            keys, axes = device_caps(dev)
        except OSError:
            _close_quietly(dev)
            continue
        if is_controller(keys):
            found.append((dev, path, keys, axes))
        else:
            _close_quietly(dev)
    return found, refused


def probe_controllers(listen_s: float = 1.0, dev_dir: str = "/dev/input",
                      opener: Callable[[str], Any] | None = None) -> list[tuple[str, str, str]]:
    """For ``genie doctor``: (level, what, fix) about the controllers here and their report rate."""
    if opener is None:
        why = evdev_available()
        if why:
            return [("warn", "gamepads: python-evdev is not installed",
                     ("pip install 'genie[evdev]' (needs gcc and the kernel headers: apt install "
                      "gcc linux-libc-dev) or apt install python3-evdev"))]
    try:
        found, refused = open_controllers(dev_dir, opener or open_evdev)
    except FileNotFoundError:
        return [("ok", f"gamepads: no {dev_dir} on this machine", "")]
    pads = []
    for dev, path, keys, axes in found:
        info = getattr(dev, "info", None)
        pads.append((dev, path, detect_layout(dev.name, getattr(info, "vendor", 0),
                                              getattr(info, "product", 0), keys, axes)))
    out = []
    if refused:
        out.append(("warn", f"gamepads: no permission to read {', '.join(refused)}", PERMISSION_HINT))
    if not pads:
        out.append(("ok", "gamepads: none found", ""))
        return out
    times = _listen(pads, listen_s)
    for dev, path, lay in pads:
        ms = report_interval_ms(times[dev.fileno()])
        what = f"gamepad {dev.name} ({path}): layout {lay.name}"
        if ms is None:
            out.append(("ok", (f"{what}; too few reports in {listen_s:.0f} s to measure its "
                               "rate (move a stick while `genie doctor` runs)"), ""))
        else:
            fix = ("a HID pad whose report descriptor says Joystick polls faster with the usbhid "
                   "option jspoll=1 (see README, Gamepads)") if ms > 4.5 else ""
            out.append(("warn" if fix else "ok",
                        f"{what}; reports every {ms:.1f} ms ({1000 / ms:.0f} Hz)", fix))
        _close_quietly(dev)
    return out


def _listen(pads: list[tuple[Any, str, Layout]], listen_s: float) -> dict[int, list[int]]:
    times: dict[int, list[int]] = {dev.fileno(): [] for dev, _, _ in pads}
    with selectors.DefaultSelector() as sel:
        for dev, _, _ in pads:
            os.set_blocking(dev.fileno(), False)
            sel.register(dev.fileno(), selectors.EVENT_READ)
        end = time.monotonic() + listen_s
        while (left := end - time.monotonic()) > 0:
            for key, _ in sel.select(left):
                try:
                    data = os.read(key.fd, EVENT.size * READ_EVENTS)
                except BlockingIOError:
                    continue
                except OSError:
                    sel.unregister(key.fd)
                    continue
                if not data:
                    sel.unregister(key.fd)
                    continue
                for ev in decode_events(data[:len(data) - len(data) % EVENT.size]):
                    if ev.type == EV_SYN and ev.code == SYN_REPORT:
                        times[key.fd].append(event_time_ns(ev))
    return times
