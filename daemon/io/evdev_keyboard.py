"""The local keyboard through evdev: the 8 keys with true press and release.

A terminal reports presses only (``daemon.io.keyboard`` gives each a gate length); a keyboard read
through its event node (``/dev/input/event*``) reports each key going down (value 1), auto-repeat
while held (2) and up (0), stamped by the kernel. So here a key sounds exactly as long as it is
held.

- ``key_code``: the configured ``[keyboard] keys`` characters as evdev key codes. evdev codes are
  key *positions*, named after the US layout (``KEY_A`` … ``KEY_SEMICOLON``): on another layout
  the same positions play (the home row, whatever its labels say).
- ``KeyboardParser``: a ``PadParser`` over 8 keys (frames end at ``SYN_REPORT``, ``SYN_DROPPED``
  re-reads the state) that ignores auto-repeat and calls ``on_quit`` when the quit key goes down
  (and on Ctrl+C when the keyboard is grabbed: no terminal sees it then).
- ``KeyboardKind``: a ``DeviceKind`` of ``daemon.io.evdev_devices.EvdevSource``: a node whose keys
  include the letters ``KEY_A``..``KEY_Z`` and no game-controller button is a keyboard. The device
  loop (hot-plug, unplug releases, grab, the monotonic event clock) is the one gamepads go
  through; sources are ``keyboard:<device name>``.
- ``why_no_evdev_keyboard``: ``genie run``'s rule for reading keyboards through evdev at all (not
  under a desktop session unless asked); ``probe_keyboards`` reports it and the keyboards found
  for ``genie doctor``.
"""

from __future__ import annotations

import logging
import os
import string
from collections.abc import Callable
from typing import Any

from daemon.io.evdev_devices import (
    PERMISSION_HINT,
    DeviceKind,
    PadChange,
    close_quietly,
    evdev_available,
    open_devices,
)
from daemon.io.evdev_events import EV_KEY, EV_SYN, SYN_DROPPED, SYN_REPORT
from daemon.io.gamepad import Control, Layout, PadParser, is_controller

log = logging.getLogger("genie.keyboard")

# include/uapi/linux/input-event-codes.h: the US layout's characters at their key positions
_ROWS = {"1234567890-=": 2, "qwertyuiop[]": 16, "asdfghjkl;'`": 30, "zxcvbnm,./": 44}
KEY_CODES = {ch: first + i for row, first in _ROWS.items() for i, ch in enumerate(row)}
KEY_CODES |= {"\\": 43, " ": 57}
KEY_NAMES = {"-": "MINUS", "=": "EQUAL", "[": "LEFTBRACE", "]": "RIGHTBRACE", ";": "SEMICOLON",
             "'": "APOSTROPHE", "`": "GRAVE", "\\": "BACKSLASH", ",": "COMMA", ".": "DOT",
             "/": "SLASH", " ": "SPACE"}
LETTERS = frozenset(KEY_CODES[c] for c in string.ascii_lowercase)  # KEY_A .. KEY_Z
KEY_C = KEY_CODES["c"]
CTRL_KEYS = frozenset({29, 97})  # KEY_LEFTCTRL, KEY_RIGHTCTRL


def key_code(char: str) -> int | None:
    """The evdev code of the key that types ``char`` on a US layout (letters in either case)."""
    return KEY_CODES.get(char.lower()) if len(char) == 1 else None


def key_name(char: str) -> str:
    """``KEY_A``, ``KEY_SEMICOLON``: the kernel's name for that key."""
    return "KEY_" + KEY_NAMES.get(char, char.upper())


def check_keys(keys: str, quit_key: str) -> str | None:
    """Why these ``[keyboard]`` characters have no key positions for evdev, or None."""
    for where, chars in (("keyboard.keys", keys), ("keyboard.quit_key", quit_key)):
        for ch in chars:
            if key_code(ch) is None:
                return (f"{where}: {ch!r} has no key position for the local keyboard (use "
                        "letters, digits or punctuation of a US layout, or source = \"terminal\")")
    return None


def is_keyboard(keys: set[int]) -> bool:
    """A keyboard: it has every letter key, and no game-controller button (a pad in keyboard
    mode with letters is still a pad)."""
    return LETTERS <= keys and not is_controller(keys)


class KeyboardParser(PadParser):
    """Button ``i`` is held while key ``codes[i]`` is; the quit key calls ``on_quit``.

    Auto-repeat (value 2) is dropped before the frame logic: a repeat never presses, even for a
    key whose press was missed. The quit key acts at the end of its frame, like a button."""

    def __init__(self, codes: list[int], quit_code: int | None,
                 on_quit: Callable[[], None] | None, *, ctrl_c_quits: bool = False,
                 offset_ns: int = 0) -> None:
        super().__init__(Layout("keyboard", tuple((Control("key", c),) for c in codes)),
                         offset_ns=offset_ns)
        self.quit_code = quit_code
        self.on_quit = on_quit
        self.ctrl_c_quits = ctrl_c_quits
        self._ctrl: set[int] = set()
        self._quit = False

    def feed(self, ev: Any) -> list[PadChange]:
        if ev.type == EV_KEY:
            if ev.value == 2:
                return []
            if ev.code in CTRL_KEYS:
                (self._ctrl.add if ev.value else self._ctrl.discard)(ev.code)
            elif ev.value == 1 and (ev.code == self.quit_code or (
                    self.ctrl_c_quits and ev.code == KEY_C and self._ctrl)):
                self._quit = True
        elif ev.type == EV_SYN and ev.code == SYN_DROPPED:
            self._quit = False  # that frame is incomplete: its keys do not count
            self._ctrl.clear()
        dropping = self._dropping
        out = super().feed(ev)
        if ev.type == EV_SYN and ev.code == SYN_REPORT and self._quit:
            self._quit = False
            if not dropping and self.on_quit is not None:
                self.on_quit()
        return out


class KeyboardKind(DeviceKind):
    """Local keyboards for the device loop: 8 keys as buttons 0-7, a quit key.

    ``refused_level``: a keyboard we may not read is news when the config asks for evdev, and only
    a hint when the terminal is the fallback (``source = "auto"``)."""

    name = "keyboard"

    def __init__(self, keys: str, quit_key: str, on_quit: Callable[[], None] | None, *,
                 grab: bool = False, refused_level: int = logging.ERROR) -> None:
        why = check_keys(keys, quit_key)
        if why:
            raise ValueError(why)
        self.keys = keys
        self.quit_key = quit_key
        self.codes = [key_code(c) for c in keys]
        self.quit_code = key_code(quit_key) if quit_key else None
        self.on_quit = on_quit
        self.grab = grab
        self.refused_level = refused_level

    def accepts(self, keys: set[int], axes: dict[int, tuple[int, int, int]]) -> bool:
        return is_keyboard(keys) and set(self.codes) <= keys

    def parser(self, name: str, vendor: int, product: int, keys: set[int],
               axes: dict[int, tuple[int, int, int]], offset_ns: int) -> tuple[KeyboardParser, str]:
        parser = KeyboardParser(self.codes, self.quit_code, self.on_quit, ctrl_c_quits=self.grab,
                                offset_ns=offset_ns)
        described = " ".join(f"{i}={key_name(c)}" for i, c in enumerate(self.keys))
        if self.quit_key:
            described += f", {key_name(self.quit_key)} quits"
        if self.grab:
            described += " (grabbed: Ctrl+C quits too; nothing else sees this keyboard)"
        return parser, f"keys {described}"


# ---- whether genie run reads keyboards through evdev (genie run, genie doctor) -----------------

def desktop_session() -> str | None:
    """The variable that says a graphical session runs (``$DISPLAY``, ``$WAYLAND_DISPLAY``), or
    None. There a keyboard read through evdev would play whatever window has focus."""
    return next((f"${v}" for v in ("DISPLAY", "WAYLAND_DISPLAY") if os.environ.get(v)), None)


def why_no_evdev_keyboard(source: str, keys: str, quit_key: str,
                          evdev_missing: str | None) -> str | None:
    """Why ``genie run`` reads no local keyboard through evdev with these ``[keyboard]`` settings
    (``evdev_missing``: why python-evdev is unusable, or None), or None when it reads them."""
    why = evdev_missing or check_keys(keys, quit_key)
    desktop = desktop_session()
    if source == "auto" and not why and desktop:
        why = (f"a desktop session runs ({desktop}), where evdev would read the keys whatever "
               "window has focus (set [keyboard] source = \"evdev\" to read it anyway)")
    return why


def probe_keyboards(kb: Any, dev_dir: str = "/dev/input",
                    opener: Callable[[str], Any] | None = None) -> list[tuple[str, str, str]]:
    """For ``genie doctor``: (level, what, fix) about the local keyboards ``genie run`` would read
    through evdev with the ``[keyboard]`` settings ``kb``, and whether it reads them at all."""
    if kb.enabled == "off" or kb.source == "terminal":
        setting = "enabled = off" if kb.enabled == "off" else "source = terminal"
        return [("ok", f"keyboards: keyboard.{setting}: no keyboard is read through evdev", "")]
    if not os.path.isdir(dev_dir):
        return [("warn" if kb.source == "evdev" else "ok",
                 f"keyboards: no {dev_dir} on this machine", "")]
    missing = None if opener else evdev_available()
    why = why_no_evdev_keyboard(kb.source, kb.keys, kb.quit_key, missing)
    if why:
        out = [("warn" if kb.source == "evdev" else "ok",
                f"keyboards: `genie run` reads none through evdev: {why}", "")]
    else:
        desktop = desktop_session()
        out = [("ok", f"keyboards: keyboard.source = {kb.source}: `genie run` reads local "
                      f"keyboards through evdev (keys {kb.keys})"
                      + (f"; a desktop session runs ({desktop}): they play whatever window has "
                         "focus" if desktop else ""), "")]
    if missing:
        return out
    def any_keyboard(keys: set[int], axes: dict) -> bool:
        return is_keyboard(keys)

    try:
        accepts = KeyboardKind(kb.keys, kb.quit_key, None).accepts
    except ValueError:  # keys without a position: still say which keyboards are here
        accepts = any_keyboard
    try:
        found, refused = open_devices(accepts, dev_dir, opener)
    except FileNotFoundError:  # gone since the check above
        return out + [("ok", f"keyboards: no {dev_dir} on this machine", "")]
    for dev, path, _, _ in found:
        out.append(("ok", f"keyboard {dev.name} ({path}): readable", ""))
        close_quietly(dev)
    if refused:
        out.append(("ok" if why else "warn",
                    f"keyboards: no permission to read {', '.join(refused)}", PERMISSION_HINT))
    elif not found:
        out.append(("ok", f"keyboards: none found in {dev_dir}", ""))
    return out
