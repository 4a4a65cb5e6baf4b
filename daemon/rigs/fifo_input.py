"""evdev devices on FIFOs: a stand-in for ``/dev/input`` for tests and benchmarks only.

``genie run --evdev-fifo-dir DIR`` (a hidden option) reads its evdev devices from ``DIR`` instead
of ``/dev/input``. Each device is a FIFO named like a kernel node (``event0``) that carries the
kernel's ``struct input_event`` records, and ``event0.json`` beside it answers what the kernel's
ioctls would (name, bus ids, key and axis capabilities, keys held at open). Only the bytes come
from elsewhere: the kinds' classification (gamepad or keyboard), layout detection, the parsers and
their ``SYN_REPORT`` framing, hot-plug through inotify, unplug (the end of the stream), the clock
offset and the posts to the engine are the code that reads real devices. This machine and CI have
no ``/dev/input``, so this is how a benchmark times the gamepad path of a running ``genie run``.

- ``FifoDevice`` / ``open_fifo_device``: the daemon's side, an ``evdev.InputDevice`` look-alike
  (``fileno``, ``name``, ``info``, ``capabilities``, ``active_keys``, ``absinfo``, ``grab``).
- ``FifoWriter``: the test's side. ``plug`` opens the FIFO for writing *before* giving it its
  node name (so the reader never sees an early end of stream), ``send`` writes one report (the
  events, then ``SYN_REPORT``) stamped with CLOCK_MONOTONIC, the clock Genie switches real nodes
  to (``EVIOCSCLOCKID``), and returns that stamp; ``unplug`` removes the node, then ends the
  stream, as the kernel removes a node and fails its reads.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import time
from pathlib import Path
from typing import Any, NamedTuple

from daemon.io.evdev_events import EV_ABS, EV_KEY, EV_SYN, SYN_REPORT, encode_event


class Info(NamedTuple):  # evdev.DeviceInfo's fields
    bustype: int
    vendor: int
    product: int
    version: int


class Absinfo(NamedTuple):  # evdev.AbsInfo's fields
    value: int
    min: int
    max: int
    fuzz: int = 0
    flat: int = 0
    resolution: int = 0


def describe(name: str, vendor: int, product: int, keys: set[int] | list[int],
             axes: dict[int, tuple[int, int, int]] | None = None, *, bustype: int = 3,
             down: set[int] | list[int] = ()) -> dict[str, Any]:
    """A device description as ``eventN.json`` holds it (axes: code -> (value, min, max))."""
    return {"name": name, "bustype": bustype, "vendor": vendor, "product": product, "version": 1,
            "keys": sorted(keys), "axes": {str(c): list(v) for c, v in (axes or {}).items()},
            "down": sorted(down)}


# An Xbox 360 pad as xpad describes it (the benchmark's gamepad), and a PC keyboard's letters,
# digits and punctuation (KEY_ESC .. KEY_SPACE, and the Ctrl keys).
XBOX_360 = describe("Microsoft X-Box 360 pad", 0x045E, 0x028E,
                    {0x130, 0x131, 0x133, 0x134, 0x136, 0x137, 0x13A, 0x13B, 0x13C, 0x13D, 0x13E},
                    {0x00: (0, -32768, 32767), 0x01: (0, -32768, 32767), 0x02: (0, 0, 255),
                     0x03: (0, -32768, 32767), 0x04: (0, -32768, 32767), 0x05: (0, 0, 255),
                     0x10: (0, -1, 1), 0x11: (0, -1, 1)})
KEYBOARD = describe("AT Translated Set 2 keyboard", 0x0001, 0x0001, set(range(1, 58)) | {97},
                    bustype=0x11)


class FifoDevice:
    """One device on a FIFO, as the device loop uses an ``evdev.InputDevice``.

    State queries (``active_keys``, ``absinfo``) answer from the description: the state when the
    device appeared (a FIFO never drops events, so the loop asks only at open)."""

    clock_id = time.CLOCK_MONOTONIC  # what the writer stamps with (no EVIOCSCLOCKID on a FIFO)

    def __init__(self, path: str) -> None:
        try:
            if not stat.S_ISFIFO(os.stat(path).st_mode):
                raise OSError(errno.ENODEV, "not a FIFO device", path)
            desc = json.loads(Path(path + ".json").read_text())
        except FileNotFoundError:
            raise OSError(errno.ENODEV, "no such FIFO device (or no description)", path) from None
        except ValueError as exc:
            raise OSError(errno.EINVAL, f"bad device description: {exc}", path) from None
        self.path = path
        self.name = str(desc["name"])
        self.info = Info(desc["bustype"], desc["vendor"], desc["product"], desc["version"])
        self.keys = [int(k) for k in desc["keys"]]
        self.axes = {int(c): Absinfo(*v) for c, v in desc["axes"].items()}
        self.down = [int(k) for k in desc.get("down", [])]
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)

    def fileno(self) -> int:
        return self.fd

    def capabilities(self, absinfo: bool = True) -> dict[int, list]:
        caps: dict[int, list] = {EV_SYN: [0, 1, 3], EV_KEY: list(self.keys)}
        if self.axes:
            caps[EV_ABS] = [(c, a) if absinfo else c for c, a in sorted(self.axes.items())]
        return caps

    def active_keys(self) -> list[int]:
        return list(self.down)

    def absinfo(self, code: int) -> Absinfo:
        return self.axes[code]

    def grab(self) -> None:
        """Nothing else reads a FIFO: it is Genie's already."""

    def ungrab(self) -> None:
        """See ``grab``."""

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def open_fifo_device(path: str) -> FifoDevice:
    """The opener ``EvdevSource`` takes for a directory of FIFO devices."""
    return FifoDevice(path)


class FifoWriter:
    """The writing end of one FIFO device (the kernel's part, played by a test or a benchmark)."""

    def __init__(self, node: Path, fd: int) -> None:
        self.node = node
        self.fd = fd

    @classmethod
    def plug(cls, directory: str | Path, node: str, description: dict[str, Any]) -> FifoWriter:
        """Create ``directory/node`` (e.g. ``event0``) with its description; the daemon's
        directory watch sees it appear (or its start-up scan finds it)."""
        directory = Path(directory)
        final = directory / node
        tmp = directory / f".{node}.tmp"
        os.mkfifo(tmp)
        # Read-write: the open does not wait for a reader, and the daemon's end never sees the
        # stream end before unplug (a FIFO ends when its last writer goes).
        fd = os.open(tmp, os.O_RDWR)
        desc_tmp = directory / f".{node}.json.tmp"
        desc_tmp.write_text(json.dumps(description))
        os.replace(desc_tmp, directory / f"{node}.json")
        os.replace(tmp, final)
        return cls(final, fd)

    def send(self, events: list[tuple[int, int, int]], t_ns: int | None = None) -> int:
        """One report: ``events`` ((type, code, value)), then ``SYN_REPORT``, all stamped with
        ``t_ns`` (default: CLOCK_MONOTONIC now, as the kernel stamps). Returns the stamp as the
        records carry it (microseconds)."""
        t = time.clock_gettime_ns(time.CLOCK_MONOTONIC) if t_ns is None else t_ns
        sec, usec = divmod(t // 1000, 1_000_000)
        data = b"".join(encode_event(sec, usec, *ev) for ev in [*events, (EV_SYN, SYN_REPORT, 0)])
        os.write(self.fd, data)
        return sec * 1_000_000_000 + usec * 1_000

    def unplug(self) -> None:
        """The node goes, then the stream ends (the daemon's read sees it: its buttons are
        released); idempotent."""
        if self.fd < 0:
            return
        for path in (self.node, self.node.with_name(self.node.name + ".json")):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        os.close(self.fd)
        self.fd = -1
