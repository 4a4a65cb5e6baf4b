"""``genie learn``: where the map lives, the learning logic, and a whole session fed through the
real reading and parsing code (kernel event bytes on a pipe, as in test_gamepad)."""

from __future__ import annotations

import json
import logging

import pytest

evdev = pytest.importorskip("evdev")
from click.testing import CliRunner
from evdev import ecodes as e
from test_gamepad import DUALSENSE, PipePad, ab, feed, frame, key

from daemon.cli import UserError
from daemon.commands.learn import learn, learn_buttons
from daemon.io import gamepad as g
from daemon.io.learn import Learner, learned_path, load_learned, save_learned, state_dir

MS = 1_000_000


def test_state_directory_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert state_dir() == tmp_path / ".local" / "state" / "genie"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert state_dir() == tmp_path / "xdg" / "genie"
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path}/sd:{tmp_path}/other")  # systemd may list several
    assert learned_path() == tmp_path / "sd" / "buttons.json"


def test_save_keeps_other_devices_and_a_damaged_file_is_ignored(tmp_path, caplog):
    path = tmp_path / "state" / "buttons.json"
    a = ["BTN_SOUTH", "BTN_EAST", "BTN_WEST", "BTN_NORTH", "BTN_TL", "BTN_TR", "ABS_Z", "ABS_RZ"]
    b = ["ABS_HAT0X-", "ABS_HAT0X+", *a[2:]]
    save_learned("Pad A", a, path)
    save_learned("Pad B", b, path)
    save_learned("Pad A", list(reversed(a)), path)
    assert load_learned(path) == {"Pad A": list(reversed(a)), "Pad B": b}
    assert json.loads(path.read_text())["version"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["buttons.json"]  # no temporary left behind
    with pytest.raises(ValueError):
        save_learned("Pad C", a[:7], path)
    assert load_learned(tmp_path / "none.json") == {}
    path.write_text('{"gamepads": {"Pad A": ["BTN_SOUTH"], "Pad B": ' + json.dumps(b) + "}}")
    with caplog.at_level(logging.WARNING, logger="genie.learn"):
        assert load_learned(path) == {"Pad B": b}
        path.write_text("{not json")
        assert load_learned(path) == {}
    assert "Pad A" in caplog.text and "unreadable" in caplog.text


def test_learner_one_device_distinct_controls_and_trigger_upgrade():
    lr = Learner(3)
    assert lr.press("pad", "BTN_TL2") == "learned"
    assert lr.press("pad", "ABS_Z") == "upgraded"  # the same squeeze, as an analog axis
    lr.release("pad", "BTN_TL2")
    lr.release("pad", "ABS_Z")
    assert lr.press("other pad", "BTN_SOUTH") == "other device"
    assert lr.press("pad", "ABS_Z") == "used"
    lr.release("pad", "ABS_Z")
    assert lr.press("pad", "ABS_HAT0X-") == "learned"
    assert lr.press("pad", "BTN_SOUTH") == "ignored"  # one at a time
    lr.release("pad", "BTN_SOUTH")
    lr.release("pad", "ABS_HAT0X-")
    assert lr.press("pad", "BTN_SOUTH") == "learned"
    assert not lr.done and lr.holding
    lr.release("pad", "BTN_SOUTH")
    assert lr.done and lr.controls == ["ABS_Z", "ABS_HAT0X-", "BTN_SOUTH"]


def test_all_controls_layout_tells_triggers_from_centred_axes():
    _, _, _, keys, axes = DUALSENSE
    names = g.all_controls_layout(keys, axes).names()
    assert {"ABS_Z", "ABS_RZ", "ABS_X-", "ABS_X+", "ABS_HAT0Y-", "BTN_SOUTH", "BTN_MODE"} <= set(names)
    assert "ABS_Z+" not in names and "ABS_X" not in names


def test_a_learn_session_through_the_device_path_then_genie_run_uses_it(tmp_path, monkeypatch):
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    pad = PipePad(DUALSENSE, "/dev/input/event7")
    _, _, _, keys, axes = DUALSENSE
    t = 1_000 * MS
    # button 0: L2 (its key fires first, then its depth), 1: cross, 2: cross again (already used),
    # then D-pad left, stick left, square, circle, triangle, R2.
    presses = [[key(e.BTN_TL2), ab(e.ABS_Z, 40)], [ab(e.ABS_Z, 255)]]
    pad.send(*presses[0], t_ns=t)
    pad.send(*presses[1], t_ns=t + 4 * MS)
    pad.send(key(e.BTN_TL2, 0), ab(e.ABS_Z, 0), t_ns=t + 8 * MS)
    steps = [(key(e.BTN_SOUTH), key(e.BTN_SOUTH, 0)), (key(e.BTN_SOUTH), key(e.BTN_SOUTH, 0)),
             (ab(e.ABS_HAT0X, -1), ab(e.ABS_HAT0X, 0)), (ab(e.ABS_X, 0), ab(e.ABS_X, 128)),
             (key(e.BTN_WEST), key(e.BTN_WEST, 0)), (key(e.BTN_EAST), key(e.BTN_EAST, 0)),
             (key(e.BTN_NORTH), key(e.BTN_NORTH, 0)), (ab(e.ABS_RZ, 255), ab(e.ABS_RZ, 0))]
    for i, (down, up) in enumerate(steps):
        pad.send(down, t_ns=t + (20 + 8 * i) * MS)
        pad.send(up, t_ns=t + (24 + 8 * i) * MS)
    said: list[str] = []
    name, controls = learn_buttons([(pad, pad.path, keys, axes)], said.append, timeout_s=5)
    assert name == DUALSENSE[0]
    assert controls == ["ABS_Z", "BTN_SOUTH", "ABS_HAT0X-", "ABS_X-", "BTN_WEST", "BTN_EAST",
                        "BTN_NORTH", "ABS_RZ"]
    assert any("already button 1" in s for s in said) and any("velocity" in s for s in said)
    save_learned(name, controls)
    # From now on this pad plays the learned map: the loader finds it in the state directory.
    src = g.GamepadSource(lambda ev: None, None, None, dev_dir=str(tmp_path), opener=lambda p: pad)
    assert src.learned == {name: controls}
    src.stop()
    lay = g.choose_layout(name, 0x054C, 0x0CE6, keys, axes, None, src.learned)
    parser = g.PadParser(lay, ranges={c: (lo, hi) for c, (_, lo, hi) in axes.items()})
    assert feed(parser, frame(0, ab(e.ABS_X, 10), ab(e.ABS_Z, 255))) == [(0, True, 127),
                                                                        (3, True, None)]
    pad.unplug()
    pad.close()


def test_learn_times_out_and_says_so():
    pad = PipePad(DUALSENSE)
    with pytest.raises(UserError, match="no new button within"):
        learn_buttons([(pad, "", DUALSENSE[3], DUALSENSE[4])], lambda s: None, timeout_s=0.05)
    pad.unplug()
    pad.close()


def test_learn_command_without_controllers_is_one_line(tmp_path):
    r = CliRunner().invoke(learn, ["--dev-dir", str(tmp_path)])
    assert isinstance(r.exception, UserError) and "no game controller found" in str(r.exception)
    r = CliRunner().invoke(learn, ["--dev-dir", str(tmp_path / "missing")])
    assert isinstance(r.exception, UserError) and "no game controllers" in str(r.exception)
