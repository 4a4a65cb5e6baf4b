"""The local keyboard through evdev: true press and release, auto-repeat, quit key, hot-plug and
unplug, through the same device loop as the gamepads; how ``genie run`` picks its keyboards; and
one ``genie run`` on real JACK ports reading a keyboard from a FIFO device.

The parser is fed real ``evdev.InputEvent``s as a keyboard sends them (``EV_MSC MSC_SCAN``, then
``EV_KEY``, then ``SYN_REPORT``); the device path reads ``struct input_event`` bytes from a pipe
(``PipePad`` of test_gamepad) or a FIFO device (``daemon.rigs.fifo_input``).
"""

from __future__ import annotations

import errno
import logging
import os
import pty
import queue
import sys
import termios
import threading
import time

import pytest

evdev = pytest.importorskip("evdev")
from evdev import InputEvent
from evdev import ecodes as e
from test_gamepad import XPAD_360, PipePad, Rig

from daemon.cli import UserError
from daemon.config import ConfigError, parse_config
from daemon.events import now_ns
from daemon.io import evdev_devices
from daemon.io import evdev_keyboard as kb
from daemon.io import gamepad as g
from daemon.io.evdev_devices import EvdevSource
from daemon.rigs.fifo_input import KEYBOARD, XBOX_360, FifoWriter, describe, open_fifo_device
from daemon.io.keyboard import TerminalKeyboard

MS = 1_000_000
AT_KEYBOARD = ("AT Translated Set 2 keyboard", 0x0001, 0x0001,
               set(range(e.KEY_ESC, e.KEY_SPACE + 1)) | {e.KEY_RIGHTCTRL, e.KEY_LEFTMETA}, {})
MOUSE = ("Logitech USB Optical Mouse", 0x046D, 0xC077, {e.BTN_LEFT, e.BTN_RIGHT, e.BTN_MIDDLE}, {})
POWER = ("Power Button", 0, 1, {e.KEY_POWER}, {})


def frame(t_ns: int, *keys: tuple[int, int]) -> list[InputEvent]:
    """One keyboard report: a scan code and a key event per key, then SYN_REPORT."""
    sec, usec = divmod(t_ns // 1000, 1_000_000)
    out = []
    for code, value in keys:
        out += [InputEvent(sec, usec, e.EV_MSC, e.MSC_SCAN, 0x70000 + code),
                InputEvent(sec, usec, e.EV_KEY, code, value)]
    return out + [InputEvent(sec, usec, e.EV_SYN, e.SYN_REPORT, 0)]


def feed(parser, events) -> list[tuple[int, bool, int]]:
    return [(c.button, c.pressed, c.time_ns) for ev in events for c in parser.feed(ev)]


def parser(quit_=None, ctrl_c_quits=False):
    kind = kb.KeyboardKind("asdfjkl;", "q", quit_, grab=ctrl_c_quits)
    p, _ = kind.parser(*AT_KEYBOARD[:3], AT_KEYBOARD[3], {}, 0)
    return p


# ---- codes and classification -------------------------------------------------------------------

def test_characters_map_to_the_kernels_key_codes():
    for ch, code in kb.KEY_CODES.items():
        assert e.ecodes[kb.key_name(ch)] == code, ch
    assert [kb.key_code(c) for c in "asdfjkl;"] == [e.KEY_A, e.KEY_S, e.KEY_D, e.KEY_F, e.KEY_J,
                                                    e.KEY_K, e.KEY_L, e.KEY_SEMICOLON]
    assert kb.key_code("Q") == e.KEY_Q and kb.key_code("é") is None and kb.key_code("") is None
    assert kb.check_keys("asdfjkl;", "q") is None
    assert "'é'" in kb.check_keys("asdfjklé", "q")
    assert "keyboard.quit_key" in kb.check_keys("asdfjkl;", "£")


def test_keyboards_are_told_from_pads_mice_and_buttons():
    assert kb.is_keyboard(AT_KEYBOARD[3])
    for other in (MOUSE, POWER, XPAD_360):
        assert not kb.is_keyboard(other[3]), other[0]
    assert not kb.is_keyboard(AT_KEYBOARD[3] | {e.BTN_SOUTH})  # a pad in keyboard mode: a pad
    kind = kb.KeyboardKind("asdfjkl;", "q", None)
    assert kind.accepts(AT_KEYBOARD[3], {}) and not g.GamepadKind(None, {}).accepts(
        AT_KEYBOARD[3], {})
    # A keypad-only keyboard (digits, no letters) has no home row to play.
    assert not kind.accepts(set(range(e.KEY_1, e.KEY_0 + 1)), {})


# ---- the parser: frames, auto-repeat, quit ---------------------------------------------------------

def test_press_autorepeat_release_with_the_events_own_time():
    p = parser()
    # Nothing before the frame ends.
    assert p.feed(InputEvent(1, 0, e.EV_KEY, e.KEY_D, 1)) == []
    assert feed(p, [InputEvent(1, 0, e.EV_SYN, e.SYN_REPORT, 0)]) == [(2, True, 1_000 * MS)]
    # Held: the kernel repeats every 33 ms after 250 ms; no re-strike.
    for i in range(5):
        assert feed(p, frame((1_250 + 33 * i) * MS, (e.KEY_D, 2))) == []
    assert feed(p, frame(1_400 * MS, (e.KEY_D, 0))) == [(2, False, 1_400 * MS)]
    assert p.held == set()
    # A repeat whose press was never seen (the device opened mid-hold) presses nothing.
    assert feed(p, frame(1_500 * MS, (e.KEY_K, 2))) == []
    # A chord in one report; keys that are no button are ignored.
    assert feed(p, frame(2_000 * MS, (e.KEY_A, 1), (e.KEY_G, 1), (e.KEY_SEMICOLON, 1),
                         (e.KEY_J, 1))) == [(0, True, 2_000 * MS), (4, True, 2_000 * MS),
                                            (7, True, 2_000 * MS)]
    assert feed(p, frame(2_100 * MS, (e.KEY_A, 0), (e.KEY_J, 0))) == [(0, False, 2_100 * MS),
                                                                      (4, False, 2_100 * MS)]
    assert [(c.button, c.pressed) for c in p.release_all(3_000 * MS)] == [(7, False)]


def test_quit_key_acts_at_the_end_of_its_frame_and_not_in_a_dropped_one():
    quits = []
    p = parser(lambda: quits.append(1))
    events = frame(0, (e.KEY_Q, 1))
    assert feed(p, events[:-1]) == [] and quits == []
    feed(p, events[-1:])
    assert quits == [1]
    feed(p, frame(MS, (e.KEY_Q, 2)) + frame(2 * MS, (e.KEY_Q, 0)))  # repeat and release: nothing
    assert quits == [1]
    # The kernel dropped events: that frame's quit key does not count, and the state is re-read.
    dropped = [InputEvent(0, 3000, e.EV_SYN, e.SYN_DROPPED, 0)] + frame(3 * MS, (e.KEY_Q, 1))
    assert feed(p, dropped) == [] and quits == [1] and p.needs_resync
    assert [(c.button, c.pressed) for c in p.resync({e.KEY_F}, {}, 4 * MS)] == [(3, True)]


def test_ctrl_c_quits_only_a_grabbed_keyboard():
    quits = []
    plain, grabbed = parser(lambda: quits.append("plain")), parser(lambda: quits.append("grab"), True)
    for p in (plain, grabbed):
        feed(p, frame(0, (e.KEY_LEFTCTRL, 1)) + frame(MS, (e.KEY_C, 1)))
    assert quits == ["grab"]  # not grabbed, the terminal's own Ctrl-C (SIGINT) stops Genie
    feed(grabbed, frame(2 * MS, (e.KEY_C, 0)) + frame(3 * MS, (e.KEY_LEFTCTRL, 0))
         + frame(4 * MS, (e.KEY_C, 1)))
    assert quits == ["grab"]  # C without Ctrl is just a key


def test_configured_keys_follow_the_keys_string():
    kind = kb.KeyboardKind("qwertyui", "p", None)
    p, described = kind.parser(*AT_KEYBOARD[:3], AT_KEYBOARD[3], {}, 0)
    assert "0=KEY_Q" in described and "7=KEY_I" in described and "KEY_P quits" in described
    assert feed(p, frame(0, (e.KEY_I, 1), (e.KEY_A, 1))) == [(7, True, 0)]
    with pytest.raises(ValueError, match="no key position"):
        kb.KeyboardKind("asdfjklö", "q", None)


# ---- the device loop: pipes for event nodes, one loop for keyboards and pads ---------------------

def kinds(quit_=None, grab=False):
    return [g.GamepadKind(g.GamepadSettings(), {}), kb.KeyboardKind("asdfjkl;", "q", quit_,
                                                                     grab=grab)]


def test_one_loop_reads_keyboards_and_pads_with_true_releases(tmp_path):
    quit_asked = threading.Event()
    rig = Rig(tmp_path, kinds=kinds(quit_asked.set))
    rig.plug("event0", AT_KEYBOARD)
    rig.plug("event1", MOUSE)
    rig.plug("event2", XPAD_360)
    rig.src.start()
    try:
        keyboard = rig.wait_open("event0")
        rig.wait_open("event2")
        assert rig.src.sources() == ["gamepad:Microsoft X-Box 360 pad",
                                     "keyboard:AT Translated Set 2 keyboard"]
        assert rig.src.sources("keyboard") == ["keyboard:AT Translated Set 2 keyboard"]
        assert not keyboard.grabbed  # default: the console still gets its keys
        assert rig.pads["event1"].closed  # a mouse is neither
        before = now_ns()
        keyboard.send((e.EV_MSC, e.MSC_SCAN, 0x70007), (e.EV_KEY, e.KEY_F, 1))
        ev = rig.next()
        assert (ev.source, ev.button, ev.pressed) == ("keyboard:AT Translated Set 2 keyboard", 3,
                                                      True)
        assert before - 2 * MS <= ev.time_ns <= now_ns()  # the event's own stamp, on our clock
        for _ in range(3):
            keyboard.send((e.EV_KEY, e.KEY_F, 2))  # auto-repeat
        keyboard.send((e.EV_KEY, e.KEY_F, 0))
        ev = rig.next()
        assert (ev.button, ev.pressed) == (3, False)  # the repeats made nothing
        rig.pads["event2"].send((e.EV_KEY, e.BTN_TL, 1))
        assert (rig.next().source, rig.events.empty()) == ("gamepad:Microsoft X-Box 360 pad", True)
        assert not quit_asked.is_set()
        keyboard.send((e.EV_KEY, e.KEY_Q, 1))
        assert quit_asked.wait(5)
        assert rig.events.empty()  # the quit key is no button
    finally:
        rig.src.stop()
    ev = rig.next()  # stop released the pad's held bumper; no key was left held
    assert (ev.source, ev.button, ev.pressed) == ("gamepad:Microsoft X-Box 360 pad", 1, False)
    assert rig.events.empty()


def test_keyboard_unplugged_mid_press_with_enodev_releases_and_comes_back(tmp_path, monkeypatch):
    rig = Rig(tmp_path, kinds=kinds())
    rig.plug("event4", AT_KEYBOARD)
    rig.src.start()
    try:
        keyboard = rig.wait_open("event4")
        keyboard.send((e.EV_KEY, e.KEY_A, 1), (e.EV_KEY, e.KEY_L, 1))
        assert {(ev.button, ev.pressed) for ev in (rig.next(), rig.next())} == {(0, True),
                                                                               (6, True)}
        # Unplugged: the node goes and the next read of it fails with ENODEV, as the kernel's.
        gone = keyboard.fileno()
        real_read = evdev_devices._read_node

        def read(fd):
            if fd == gone and not keyboard.closed:  # (the fd number is reused after close)
                raise OSError(errno.ENODEV, "No such device")
            return real_read(fd)

        monkeypatch.setattr(evdev_devices, "_read_node", read)
        os.unlink(rig.dir / "event4")
        keyboard.send((e.EV_KEY, e.KEY_S, 1))  # wakes the loop; the read fails
        released = {(ev.button, ev.pressed) for ev in (rig.next(), rig.next())}
        assert released == {(0, False), (6, False)}
        assert rig.lost.get(timeout=5) == "keyboard:AT Translated Set 2 keyboard"
        assert keyboard.closed and rig.src.sources() == []
        # Plugged in again: picked up by the directory watch, plays again.
        rig.plug("event5", AT_KEYBOARD)
        again = rig.wait_open("event5")
        again.send((e.EV_KEY, e.KEY_K, 1))
        ev = rig.next()
        assert (ev.source, ev.button, ev.pressed) == ("keyboard:AT Translated Set 2 keyboard", 5,
                                                      True)
    finally:
        rig.src.stop()
    ev = rig.next()  # released at stop
    assert (ev.button, ev.pressed) == (5, False) and rig.events.empty()
    keyboard.unplug()


def test_grabbed_keyboard_and_keys_held_at_open(tmp_path):
    quit_asked = threading.Event()
    rig = Rig(tmp_path, kinds=kinds(quit_asked.set, grab=True))
    held = rig.prepared["event0"] = PipePad(AT_KEYBOARD)
    held.down = {e.KEY_J, e.KEY_G}  # J is down as the keyboard appears (G is no button)
    rig.plug("event0", AT_KEYBOARD)
    rig.src.start()
    try:
        assert rig.wait_open("event0").grabbed
        ev = rig.next()
        assert (ev.button, ev.pressed) == (4, True)
        held.send((e.EV_KEY, e.KEY_RIGHTCTRL, 1))
        held.send((e.EV_KEY, e.KEY_C, 1))  # grabbed: no terminal sees Ctrl+C, so Genie does
        assert quit_asked.wait(5)
    finally:
        rig.src.stop()
    ev = rig.next()  # released at stop, and the keyboard handed back
    assert (ev.button, ev.pressed, held.grabbed) == (4, False, False)


def test_a_keyboard_we_may_not_read_is_a_hint_when_the_terminal_is_the_fallback(tmp_path, caplog):
    rig = Rig(tmp_path, kinds=[kb.KeyboardKind("asdfjkl;", "q", None,
                                               refused_level=logging.INFO)])
    rig.refuse.add("event3")
    (rig.dir / "event3").touch()
    with caplog.at_level(logging.DEBUG, logger="genie.gamepad"):
        rig.src.start()
        rig.src.stop()
    (line,) = [r for r in caplog.records if "permission" in r.getMessage()]
    assert line.levelno == logging.INFO and "event3" in line.getMessage()
    assert "input group" in line.getMessage()


def test_fifo_devices_play_through_the_same_loop(tmp_path):
    """The test-only byte source of ``genie run --evdev-fifo-dir``: FIFO nodes with descriptions,
    stamped with CLOCK_MONOTONIC."""
    got: queue.Queue = queue.Queue()
    lost: queue.Queue = queue.Queue()
    src = EvdevSource(got.put, lost.put, kinds(), dev_dir=str(tmp_path), opener=open_fifo_device)
    early = FifoWriter.plug(tmp_path, "event0", KEYBOARD)  # found by the scan at start
    (tmp_path / "event7").write_text("not a FIFO")  # skipped
    src.start()
    try:
        pad = FifoWriter.plug(tmp_path, "event1", XBOX_360)  # found by the directory watch
        stamp = early.send([(e.EV_KEY, e.KEY_J, 1)])
        ev = got.get(timeout=5)
        assert (ev.source, ev.button, ev.pressed) == ("keyboard:AT Translated Set 2 keyboard", 4,
                                                      True)
        assert abs(ev.time_ns - stamp) < MS  # the event's own stamp, the daemon's clock
        deadline = time.monotonic() + 5
        while len(src.sources()) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        pad.send([(e.EV_KEY, e.BTN_X, 1)])
        ev = got.get(timeout=5)
        assert (ev.source, ev.button, ev.pressed) == ("gamepad:Microsoft X-Box 360 pad", 4, True)
        early.unplug()
        ev = got.get(timeout=5)
        assert (ev.source, ev.button, ev.pressed) == ("keyboard:AT Translated Set 2 keyboard", 4,
                                                      False)
        assert lost.get(timeout=5) == "keyboard:AT Translated Set 2 keyboard"
    finally:
        src.stop()
        pad.unplug()
    ev = got.get(timeout=5)  # stop released the pad's button
    assert (ev.source, ev.button, ev.pressed) == ("gamepad:Microsoft X-Box 360 pad", 4, False)


# ---- the terminal beside it ------------------------------------------------------------------------

def test_a_muted_terminal_swallows_button_keys_quits_and_is_restored():
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    got: queue.Queue = queue.Queue()
    quit_asked = threading.Event()
    muted = threading.Event()
    term = TerminalKeyboard(got.put, quit_asked.set, "asdfjkl;", 10_000, "q", fd=slave,
                            muted=muted.is_set)
    term.start()
    try:
        os.write(master, b"a")
        assert (got.get(timeout=5).button, got.empty()) == (0, True)  # not muted yet: plays
        muted.set()  # an evdev keyboard opened: the same keys arrive through it
        os.write(master, b"jk")
        os.write(master, b"q")
        assert quit_asked.wait(5)
        assert got.empty()  # j and k were swallowed
        assert not termios.tcgetattr(slave)[3] & termios.ECHO  # nothing echoes meanwhile
    finally:
        term.stop()
    ev = got.get(timeout=5)  # the press from before muting still ends (at stop: its gate is long)
    assert (ev.button, ev.pressed) == (0, False) and got.empty()
    assert termios.tcgetattr(slave) == before
    os.close(master)
    os.close(slave)


# ---- genie run: which keyboards ---------------------------------------------------------------------

class FakeStdin:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty

    def fileno(self) -> int:
        return 0


class FakeEngine:
    def __init__(self) -> None:
        self.posted: list = []
        self.stopped = threading.Event()

    def post(self, ev) -> None:
        self.posted.append(ev)

    def source_lost(self, source) -> None:
        pass

    def request_stop(self) -> None:
        self.stopped.set()


def open_inputs(tmp_path, monkeypatch, keyboard: dict, env: dict | None = None, tty=False,
                gamepad: dict | None = None):
    from daemon.commands import run

    for name in ("DISPLAY", "WAYLAND_DISPLAY", "SSH_CONNECTION", "SSH_TTY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "stdin", FakeStdin(tty))
    cfg = parse_config({"keyboard": keyboard, "gamepad": {"sdl": "off", **(gamepad or {})}})
    inputs = run._open_inputs(cfg, FakeEngine(), str(tmp_path))
    if inputs.evdev is not None:
        inputs.evdev.stop()  # never started: closes its pipe and selector (its kinds remain)
    return inputs


def kind_names(inputs) -> list[str]:
    return [k.name for k in inputs.evdev.kinds] if inputs.evdev else []


def test_run_picks_the_keyboards(tmp_path, monkeypatch):
    assert kind_names(open_inputs(tmp_path, monkeypatch, {})) == ["gamepad", "keyboard"]
    # Under a desktop session auto leaves evdev alone (it would read every window's keys).
    assert kind_names(open_inputs(tmp_path, monkeypatch, {}, {"DISPLAY": ":0"})) == ["gamepad"]
    assert kind_names(open_inputs(tmp_path, monkeypatch, {"source": "evdev"},
                                  {"WAYLAND_DISPLAY": "wayland-0"})) == ["gamepad", "keyboard"]
    assert kind_names(open_inputs(tmp_path, monkeypatch, {"source": "terminal"})) == ["gamepad"]
    assert kind_names(open_inputs(tmp_path, monkeypatch, {"enabled": "off"})) == ["gamepad"]
    # Keys with no evdev position: auto falls back to the terminal; evdev is a config error.
    assert kind_names(open_inputs(tmp_path, monkeypatch, {"keys": "asdfjklö"})) == ["gamepad"]
    with pytest.raises(ConfigError, match="keyboard.keys"):
        parse_config({"keyboard": {"source": "evdev", "keys": "asdfjklö"}})
    # No device directory: auto reads nothing through evdev; "on" and "evdev" wait for devices.
    none = tmp_path / "none"
    assert kind_names(open_inputs(none, monkeypatch, {})) == []
    assert kind_names(open_inputs(none, monkeypatch, {"source": "evdev"},
                                  gamepad={"enabled": "on"})) == ["gamepad", "keyboard"]
    # stdin is no terminal here: asking for the terminal alone is a one-line error.
    with pytest.raises(UserError, match="stdin is not a terminal"):
        open_inputs(tmp_path, monkeypatch, {"enabled": "on", "source": "terminal"})


def test_run_mutes_a_local_terminal_but_not_an_ssh_one(tmp_path, monkeypatch):
    local = open_inputs(tmp_path, monkeypatch, {}, tty=True)
    assert local.terminal.muted is not None and not local.terminal.muted()  # no keyboard open yet
    ssh = open_inputs(tmp_path, monkeypatch, {}, {"SSH_CONNECTION": "10.0.0.2 5 10.0.0.1 22"},
                      tty=True)
    assert ssh.terminal.muted is None  # typed on another keyboard: it plays too
    only = open_inputs(tmp_path, monkeypatch, {"source": "evdev"}, tty=True)
    assert only.terminal.muted()  # it only quits
    plain = open_inputs(tmp_path, monkeypatch, {"source": "terminal"}, tty=True)
    assert plain.terminal.muted is None and plain.evdev.kinds[0].name == "gamepad"


def test_keyboard_config_keys():
    cfg = parse_config({"keyboard": {"source": "evdev", "grab": True},
                        "processor": [{"name": "thru", "inputs": ["keyboard"]}]})
    assert (cfg.keyboard.source, cfg.keyboard.grab) == ("evdev", True)
    assert cfg.processors[0].inputs == ["keyboard", "keyboard:*"]  # every keyboard
    for bad, key in (({"source": "usb"}, "keyboard.source"), ({"keys": "aasdfjkl"}, "keyboard.keys"),
                     ({"quit_key": "a"}, "keyboard.quit_key"), ({"grab": "yes"}, "keyboard.grab")):
        with pytest.raises(ConfigError, match=key):
            parse_config({"keyboard": bad})


# ---- genie doctor: the keyboards genie run would read ---------------------------------------------

def test_doctor_names_readable_keyboards_refused_nodes_and_the_desktop_rule(tmp_path, monkeypatch):
    """``probe_keyboards`` on a directory of FIFO devices; event5 stands for a node we may not
    open (root opens any FIFO, so the opener refuses it as the kernel would a user)."""
    from daemon.commands.doctor import check_keyboards
    from daemon.config import KeyboardConfig

    for name in ("DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    writers = [FifoWriter.plug(tmp_path, "event0", KEYBOARD),
               FifoWriter.plug(tmp_path, "event1", XBOX_360),
               FifoWriter.plug(tmp_path, "event2", describe(*MOUSE[:4]))]
    (tmp_path / "event5").touch()

    def opener(path):
        if path.endswith("event5"):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return open_fifo_device(path)

    def probe(**settings):
        return kb.probe_keyboards(KeyboardConfig(**settings), str(tmp_path), opener)

    try:
        found = probe()
        assert [level for level, _, _ in found] == ["ok", "ok", "warn"]
        assert found[0][1] == ("keyboards: keyboard.source = auto: `genie run` reads local "
                               "keyboards through evdev (keys asdfjkl;)")
        assert found[1][1] == f"keyboard AT Translated Set 2 keyboard ({tmp_path}/event0): readable"
        assert found[2][1] == f"keyboards: no permission to read {tmp_path}/event5"
        assert "input group" in found[2][2]  # the pad and the mouse are no keyboards
        # A desktop session: auto leaves evdev alone, so a node we may not read is no problem.
        monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
        found = probe()
        assert [level for level, _, _ in found] == ["ok", "ok", "ok"]
        assert found[0][1].startswith("keyboards: `genie run` reads none through evdev: a desktop "
                                      "session runs ($WAYLAND_DISPLAY)")
        assert "desktop session runs ($WAYLAND_DISPLAY): they play whatever window has focus" in (
            probe(source="evdev")[0][1])
        assert probe(source="terminal") == [
            ("ok", "keyboards: keyboard.source = terminal: no keyboard is read through evdev", "")]
        for writer in writers:
            writer.unplug()
        assert probe()[-1] == ("ok", f"keyboards: no permission to read {tmp_path}/event5",
                               kb.PERMISSION_HINT)
        (tmp_path / "event5").unlink()
        assert probe()[-1] == ("ok", f"keyboards: none found in {tmp_path}", "")
    finally:
        for writer in writers:
            writer.unplug()
    assert kb.probe_keyboards(KeyboardConfig(), str(tmp_path / "nothing"), opener) == [
        ("ok", f"keyboards: no {tmp_path}/nothing on this machine", "")]
    if not os.path.isdir("/dev/input"):  # genie doctor's own check, on this machine
        assert [f.what for f in check_keyboards(KeyboardConfig())] == [
            "keyboards: no /dev/input on this machine"]


# ---- genie run on real JACK ports, its keyboard a FIFO device ----------------------------------------

@pytest.mark.jack
def test_genie_run_plays_a_local_keyboard_press_release_unplug_and_quit(rig, tmp_path):
    from jack_helpers import NOTE_OFF, NOTE_ON, config_text

    devices = tmp_path / "input"
    devices.mkdir()
    keyboard = FifoWriter.plug(devices, "event0", KEYBOARD)
    try:
        config = config_text(midi="echo_window_ms = 0") + (
            '\n[keyboard]\nsource = "evdev"\n\n[gamepad]\nenabled = "off"\n')
        genie = rig.genie(config, "--keyboard", "--evdev-fifo-dir", str(devices))
        assert "is keyboard:AT Translated Set 2 keyboard" in genie.log
        c = rig.client()
        keyboard.send([(e.EV_KEY, e.KEY_J, 1)])
        assert c.take(1) == [(NOTE_ON, 67, 100)]  # button 4
        keyboard.send([(e.EV_KEY, e.KEY_J, 2)])
        keyboard.send([(e.EV_KEY, e.KEY_J, 0)])
        assert c.take(1) == [(NOTE_OFF, 67, 0)]  # held as long as the key, repeats ignored
        keyboard.send([(e.EV_KEY, e.KEY_A, 1), (e.EV_KEY, e.KEY_SEMICOLON, 1)])
        assert sorted(c.take(2)) == [(NOTE_ON, 60, 100), (NOTE_ON, 72, 100)]
        keyboard.unplug()  # mid-chord
        assert sorted(c.take(2)) == [(NOTE_OFF, 60, 0), (NOTE_OFF, 72, 0)]
        again = FifoWriter.plug(devices, "event1", KEYBOARD)  # back, through the directory watch
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and genie.log.count("is keyboard:") < 2:
                time.sleep(0.01)
            again.send([(e.EV_KEY, e.KEY_Q, 1)])  # the quit key stops the daemon
            assert genie.proc.wait(timeout=15) == 0
        finally:
            again.unplug()
        assert "unplugged; its buttons are released" in genie.log
    finally:
        keyboard.unplug()
