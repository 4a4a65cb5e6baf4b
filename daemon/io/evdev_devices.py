"""The evdev device loop: every ``/dev/input`` event node Genie plays from goes through it.

- Opening: ``evdev_available`` and ``open_evdev`` (python-evdev is an optional extra,
  ``pip install 'genie-midi[evdev]'``, imported only when a device is opened), ``is_event_node``,
  ``device_caps``, and the sysfs reads that tell what a node is without permission to open it.
- ``DeviceKind``: one kind of device (``GamepadKind`` in ``daemon.io.gamepad``, ``KeyboardKind``
  in ``daemon.io.evdev_keyboard``): the nodes it takes, and the ``Parser`` that turns their events
  into ``PadChange``s.
- ``EvdevSource``: one thread, ``genie-evdev``, waits in ``select`` on every open device, an
  inotify watch of ``/dev/input`` (hot-plug: ``Inotify``) and a stop pipe; no polling sleeps. Each
  node is offered to the configured kinds; the first that takes it names its source and builds
  its parser. A device whose read fails (``ENODEV``: unplugged) releases its held buttons and is
  reported lost; when it comes back it is opened again.
"""

from __future__ import annotations

import ctypes
import errno
import fnmatch
import logging
import os
import re
import selectors
import struct
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from daemon.events import ButtonEvent, now_ns
from daemon.io.evdev_events import (
    EV_ABS,
    EV_KEY,
    EVENT,
    READ_EVENTS,
    clock_offset_ns,
    decode_events,
    use_monotonic_clock,
)

log = logging.getLogger("genie.gamepad")  # the device loop's log, as before these modules split


# ---- opening event nodes ------------------------------------------------------------------------

class GamepadUnavailable(Exception):
    """No evdev devices possible here: python-evdev missing or not Linux; the message says which."""


PERMISSION_HINT = ("add yourself to the input group (sudo usermod -aG input $USER, then log in "
                   "again) or run genie service install (it writes the udev rule)")


def evdev_available() -> str | None:
    """None when python-evdev imports; else why not."""
    try:
        import evdev  # noqa: F401
    except ImportError as exc:
        return (f"python-evdev is not installed ({exc}): pip install 'genie-midi[evdev]' (builds with "
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


def sysfs_name(path: str) -> str | None:
    """The kernel's name for an event device, readable without permission to open it."""
    try:
        return Path(f"/sys/class/input/{Path(path).name}/device/name").read_text().strip()
    except OSError:
        return None


def event_clock_offset(dev: Any) -> int:
    """What to add to this device's event stamps to put them on the daemon's clock.

    A kernel node is asked for CLOCK_MONOTONIC stamps (``EVIOCSCLOCKID``); a device that stamps
    its events itself (``daemon.rigs.fifo_input``, for tests and benchmarks) names its clock in
    ``clock_id``."""
    clock = getattr(dev, "clock_id", None)
    if clock is not None:
        return clock_offset_ns(clock)
    return use_monotonic_clock(dev.fileno())


def close_quietly(dev: Any) -> None:
    try:
        dev.close()
    except OSError:
        pass


def open_devices(accepts: Callable[[set[int], dict[int, tuple[int, int, int]]], bool],
                 dev_dir: str = "/dev/input", opener: Callable[[str], Any] | None = None
                 ) -> tuple[list[tuple[Any, str, set[int], dict]], list[str]]:
    """Open every device in ``dev_dir`` that ``accepts(keys, axes)`` takes, now:
    ([(device, path, keys, axes)], refused paths).

    Raises FileNotFoundError when the directory does not exist. Refused paths are the nodes we may
    not open whose sysfs key list ``accepts`` (with no axes) does not rule out."""
    opener = opener or open_evdev
    found, refused = [], []
    for name in sorted(p for p in os.listdir(dev_dir) if is_event_node(p)):
        path = os.path.join(dev_dir, name)
        try:
            dev = opener(path)
        except PermissionError:
            keys = sysfs_keys(path)
            if keys is None or accepts(keys, {}):
                refused.append(path)
            continue
        except OSError:
            continue
        try:
            keys, axes = device_caps(dev)
        except OSError:
            close_quietly(dev)
            continue
        if accepts(keys, axes):
            found.append((dev, path, keys, axes))
        else:
            close_quietly(dev)
    return found, refused


# ---- device kinds and their parsers -------------------------------------------------------------

class PadChange(NamedTuple):
    """One button pressed or released, as a parser emits it (``velocity`` None: the processor's
    default velocity)."""

    button: int
    pressed: bool
    velocity: int | None
    time_ns: int


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


# ---- the device loop: every evdev node Genie plays from -----------------------------------------

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
            close_quietly(dev)

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
            close_quietly(dev)
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
        close_quietly(device.dev)

    def _close_all(self) -> None:
        for device in list(self._devices.values()):
            self._drop(device)


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


