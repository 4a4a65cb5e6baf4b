"""Terminal keys as buttons: gates, auto-repeat, quit key; and a real pseudo-terminal."""

import os
import pty
import queue
import termios
import threading

from daemon.events import ButtonEvent
from daemon.io.keyboard import KeyMapper, TerminalKeyboard

MS = 1_000_000


def test_press_then_release_after_gate_and_repeat_extends_it():
    k = KeyMapper("asdfjkl;", 100 * MS, "q")
    evs, quit_ = k.key("d", 0)
    assert evs == [ButtonEvent(0, "keyboard", 2, True)] and not quit_
    assert k.key("d", 50 * MS) == ([], False)  # auto-repeat while held: no re-strike
    assert k.due(120 * MS) == []  # gate extended to 150 ms
    assert k.due(150 * MS) == [ButtonEvent(150 * MS, "keyboard", 2, False)]
    assert k.key(";", 0)[0][0].button == 7
    assert k.key("z", 0) == ([], False)
    assert k.key("q", 0) == ([], True)


def test_terminal_is_restored_and_held_buttons_released_on_stop():
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    got: queue.Queue = queue.Queue()
    quit_asked = threading.Event()
    kb = TerminalKeyboard(got.put, quit_asked.set, "asdfjkl;", 10_000, "q", fd=slave)
    kb.start()
    os.write(master, b"aj")
    first = got.get(timeout=5)
    second = got.get(timeout=5)
    assert (first.button, first.pressed, second.button, second.pressed) == (0, True, 4, True)
    os.write(master, b"q")
    assert quit_asked.wait(5)
    kb.stop()
    releases = []
    while not got.empty():
        ev = got.get_nowait()
        releases.append((ev.button, ev.pressed))
    assert (0, False) in releases and (4, False) in releases
    assert termios.tcgetattr(slave) == before
    os.close(master)
    os.close(slave)
