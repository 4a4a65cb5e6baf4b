"""The computer keyboard as 8 buttons, in a terminal.

Keys ``a s d f j k l ;`` are buttons 0-7 (configurable). A terminal reports presses but no
releases, so each press lasts a gate length; the terminal's auto-repeat while a key is held
extends that gate instead of re-striking. The quit key stops Genie. The terminal's settings are
restored on every way out (quit key, SIGTERM, exception), by the reading thread itself.

Where the same keyboard is also read through evdev (``daemon.io.evdev_keyboard``, true press and
release), the terminal would play every key twice: ``muted`` then makes the terminal swallow the
button keys (it stays in cbreak mode without echo, so they neither show nor pile up for the shell)
and still honour the quit key and Ctrl-C.
"""

from __future__ import annotations

import logging
import os
import select
import sys
import termios
import threading
import tty
from collections.abc import Callable

from daemon.events import ButtonEvent, Event, now_ns

log = logging.getLogger("genie.keyboard")

SOURCE = "keyboard"


class KeyMapper:
    """Pure key → button logic with gates; feed it characters and clock readings."""

    def __init__(self, keys: str, gate_ns: int, quit_key: str) -> None:
        self.keys = keys
        self.gate_ns = gate_ns
        self.quit_key = quit_key
        self.release_due: dict[int, int] = {}  # button -> when its release is due

    def quits(self, char: str) -> bool:
        """The quit key, or Ctrl-C (which arrives as a character in cbreak mode)."""
        return char == self.quit_key or char == "\x03"

    def key(self, char: str, t_ns: int) -> tuple[list[Event], bool]:
        """Events for one typed character, and whether it asks to quit."""
        if self.quits(char):
            return [], True
        button = self.keys.find(char)
        if button < 0:
            return [], False
        held = button in self.release_due
        self.release_due[button] = t_ns + self.gate_ns
        return ([] if held else [ButtonEvent(t_ns, SOURCE, button, True)]), False

    def due(self, t_ns: int) -> list[Event]:
        """Releases whose gate has run out."""
        out = []
        for button, due in sorted(self.release_due.items()):
            if due <= t_ns:
                out.append(ButtonEvent(t_ns, SOURCE, button, False))
                del self.release_due[button]
        return out

    def next_due_ns(self) -> int | None:
        return min(self.release_due.values(), default=None)

    def release_all(self, t_ns: int) -> list[Event]:
        out = [ButtonEvent(t_ns, SOURCE, b, False) for b in sorted(self.release_due)]
        self.release_due.clear()
        return out


class TerminalKeyboard:
    """Reads the terminal on the thread ``genie-keyboard`` and posts button events."""

    def __init__(self, post: Callable[[Event], None], on_quit: Callable[[], None], keys: str,
                 gate_ms: float, quit_key: str, fd: int | None = None,
                 muted: Callable[[], bool] | None = None) -> None:
        self.post = post
        self.on_quit = on_quit
        self.muted = muted  # while it returns True, button keys are swallowed (evdev plays them)
        self.mapper = KeyMapper(keys, int(gate_ms * 1e6), quit_key)
        self.fd = sys.stdin.fileno() if fd is None else fd
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="genie-keyboard", daemon=True)

    def start(self) -> None:
        # Switch to cbreak before returning, so no key typed after start-up is lost; the reading
        # thread restores the saved settings on every way out.
        self._saved = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd, termios.TCSANOW)
        self._thread.start()
        if self.muted is None:
            log.info("keyboard: keys %r are buttons 0-7, %r quits", self.mapper.keys,
                     self.mapper.quit_key)
        else:
            log.info("keyboard: the terminal's keys are swallowed while a local keyboard plays "
                     "through evdev; %r quits", self.mapper.quit_key)

    def _run(self) -> None:
        try:
            while True:
                due = self.mapper.next_due_ns()
                timeout = None if due is None else max(0.0, (due - now_ns()) / 1e9)
                ready, _, _ = select.select([self.fd, self._stop_r], [], [], timeout)
                if self._stop_r in ready:
                    break
                for ev in self.mapper.due(now_ns()):
                    self.post(ev)
                if self.fd in ready:
                    data = os.read(self.fd, 64).decode(errors="ignore")
                    if not data:  # end of input: the terminal went away
                        break
                    muted = self.muted is not None and self.muted()
                    for char in data:
                        if muted and not self.mapper.quits(char):
                            continue  # evdev plays this key (gates already running still end)
                        events, quit_ = self.mapper.key(char, now_ns())
                        for ev in events:
                            self.post(ev)
                        if quit_:
                            self.on_quit()
        finally:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            for ev in self.mapper.release_all(now_ns()):
                self.post(ev)

    def stop(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(timeout=2)
        os.close(self._stop_r)
        os.close(self._stop_w)
