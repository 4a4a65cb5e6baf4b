"""Game controllers on Linux (evdev) as Genie's 8 buttons.

From pure to I/O (the split of ``daemon.io.keyboard``):

- **Layouts**: for each family of pads, an ordered map of 8 buttons, low → high. Names follow the
  kernel's ``Documentation/input/gamepad.rst`` (``BTN_SOUTH`` is the bottom face button, whatever
  its label). D-pad hats (``ABS_HAT0X/Y``) and analog triggers (``ABS_Z/ABS_RZ`` or
  ``ABS_BRAKE/ABS_GAS``) are buttons too: pressed past a threshold, released below it minus a
  hysteresis; a trigger's depth when it crosses sets the velocity (a quick squeeze is deeper by the
  first report, so it plays louder). ``choose_layout`` picks a pad's layout from the ``[gamepad]``
  settings, a learned map or the pad's ids.
- ``PadParser``: push-fed, no I/O. Fed ``evdev.InputEvent``s (anything with ``sec usec type code
  value``), it emits button changes only at ``SYN_REPORT`` (the kernel's frame boundary) and
  handles ``SYN_DROPPED`` (drop the rest of the frame, then ``resync`` from the device's state).
- ``GamepadKind``: pads as a ``DeviceKind`` of the evdev device loop
  (``daemon.io.evdev_devices``), which also reads local keyboards; ``GamepadSource`` is that loop
  with pads alone.
- ``probe_controllers``: for ``genie doctor``, the pads here and how often they report.

Kernel codes and event records live in ``daemon.io.evdev_events``. The layouts and the parser need
neither python-evdev nor a device.
"""

from __future__ import annotations

import fnmatch
import itertools
import os
import selectors
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from daemon.events import ButtonEvent
from daemon.io.evdev_devices import (
    PERMISSION_HINT,
    DeviceKind,
    EvdevSource,
    GamepadUnavailable,
    PadChange,
    Parser,
    close_quietly,
    evdev_available,
    open_devices,
    open_evdev,
)
from daemon.io.evdev_events import (
    ABS_CODES_BY_NAME,
    ABS_NAMES,
    DPAD_KEYS,
    EV_ABS,
    EV_KEY,
    EV_SYN,
    EVENT,
    GAMEPAD_KEYS,
    HATS,
    JOYSTICK_KEYS,
    KEY_CODES_BY_NAME,
    KEY_NAMES,
    READ_EVENTS,
    SYN_DROPPED,
    SYN_REPORT,
    TRIGGER_HAPPY_KEYS,
    decode_events,
    event_time_ns,
)

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
    if base in KEY_CODES_BY_NAME and not sign:
        return Control("key", KEY_CODES_BY_NAME[base])
    if base in ABS_CODES_BY_NAME:
        return Control("axis", ABS_CODES_BY_NAME[base], sign)
    for prefix, kind in (("KEY_0x", "key"), ("ABS_0x", "axis")):
        if base.startswith(prefix):
            try:
                return Control(kind, int(base[4:], 16), sign if kind == "axis" else 0)
            except ValueError:
                break
    raise ValueError(f"unknown control {name!r} (use names like BTN_SOUTH, ABS_HAT0X-, ABS_Z)")


def _k(*names: str, fallback: bool = False) -> tuple[Control, ...]:
    return tuple(Control("key", KEY_CODES_BY_NAME[n], fallback=fallback) for n in names)


def _hat(axis: str, sign: int) -> tuple[Control, ...]:
    return (Control("axis", ABS_CODES_BY_NAME[axis], sign),)


def _trig(*axes: str) -> tuple[Control, ...]:
    return tuple(Control("axis", ABS_CODES_BY_NAME[a], 0) for a in axes)


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

VELOCITY_FLOOR = 32  # a trigger that just crosses the threshold; a full squeeze is 127


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


# ---- pads in the device loop ------------------------------------------------------------------

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


# ---- report rate (genie doctor) ---------------------------------------------------------------

def report_interval_ms(times_ns: list[int]) -> float | None:
    """Median time between successive reports (SYN_REPORT stamps); None under 4 reports."""
    gaps = sorted(b - a for a, b in itertools.pairwise(times_ns) if b > a)
    if len(gaps) < 3:
        return None
    return gaps[len(gaps) // 2] / 1e6


def open_controllers(dev_dir: str = "/dev/input", opener: Callable[[str], Any] | None = None
                     ) -> tuple[list[tuple[Any, str, set[int], dict]], list[str]]:
    """Open every controller in ``dev_dir`` now (``open_devices``)."""
    return open_devices(lambda keys, axes: is_controller(keys), dev_dir, opener)


def probe_controllers(listen_s: float = 1.0, dev_dir: str = "/dev/input",
                      opener: Callable[[str], Any] | None = None) -> list[tuple[str, str, str]]:
    """For ``genie doctor``: (level, what, fix) about the controllers here and their report rate."""
    if opener is None:
        why = evdev_available()
        if why:
            return [("warn", "gamepads: python-evdev is not installed",
                     ("pip install 'genie-midi[evdev]' (needs gcc and the kernel headers: apt install "
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
        close_quietly(dev)
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

