"""evdev's kernel interface: its codes, the ``struct input_event`` record and the event clock.

- Kernel codes (``include/uapi/linux/input-event-codes.h``, a stable ABI): event types, ``SYN_*``,
  the controller key and axis names that button maps use (``BTN_SOUTH``, ``ABS_HAT0X``, module
  constants too), and the blocks of codes that tell what a device is.
- ``RawEvent``, ``decode_events``, ``encode_event``: ``struct input_event`` bytes to and from
  events with ``evdev.InputEvent``'s fields (python-evdev's own class where it is installed).
- Clocks: the kernel stamps every event. Genie asks for CLOCK_MONOTONIC stamps
  (``EVIOCSCLOCKID``: evdev's default is wall-clock time, which jumps with NTP); CPython's
  ``perf_counter_ns`` is the same clock on Linux, and an offset measured at open
  (``clock_offset_ns``) covers any difference (and the wall-clock fallback).

Nothing here needs python-evdev or a device (config checks load the code tables).
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from daemon.events import now_ns

log = logging.getLogger("genie.gamepad")  # the device loop's log, as before these modules split

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
KEY_CODES_BY_NAME = {**{v: k for k, v in KEY_NAMES.items()}, **KEY_ALIASES}
ABS_CODES_BY_NAME = {v: k for k, v in ABS_NAMES.items()}
for _n, _c in list(KEY_CODES_BY_NAME.items()) + list(ABS_CODES_BY_NAME.items()):
    globals()[_n] = _c  # BTN_SOUTH, ABS_HAT0X, ... as module constants
del _n, _c

JOYSTICK_KEYS = range(0x120, 0x130)  # BTN_JOYSTICK block: generic HID joysticks, arcade encoders
GAMEPAD_KEYS = range(0x130, 0x13F)  # BTN_GAMEPAD block: pads that follow gamepad.rst
HATS = frozenset({0x10, 0x11, 0x12, 0x13})
TRIGGER_AXES = frozenset({0x02, 0x05, 0x09, 0x0A})  # ABS_Z ABS_RZ ABS_GAS ABS_BRAKE (on pads)
DPAD_KEYS = range(0x220, 0x224)
TRIGGER_HAPPY_KEYS = range(0x2C0, 0x2E8)

# EVIOCSCLOCKID = _IOW('E', 0xa0, int): direction write (1) << 30 | sizeof(int) << 16 | 'E' << 8 | nr
EVIOCSCLOCKID = (1 << 30) | (4 << 16) | (ord("E") << 8) | 0xA0  # 0x400445a0
# struct input_event: struct timeval (two kernel longs: 8+8 bytes on 64-bit, 4+4 on 32-bit ARM
# even with a 64-bit time_t, where the kernel sends __kernel_ulong_t), __u16 type, __u16 code,
# __s32 value.
EVENT = struct.Struct("@LLHHi")
READ_EVENTS = 64  # events per read(); a pad sends a handful per report


# ---- events ------------------------------------------------------------------------------------

def event_time_ns(ev: Any) -> int:
    return ev.sec * 1_000_000_000 + ev.usec * 1_000


class RawEvent(NamedTuple):
    """An input event with the fields of ``evdev.InputEvent``, where python-evdev is missing (the
    FIFO devices of ``daemon.rigs.fifo_input`` need no python-evdev)."""

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

