"""Learned button maps: ``genie learn`` writes them, the gamepad source reads them.

The map lives in Genie's *state* directory, not beside the config: on an appliance the config may
be read-only, and a learned map is something the musician did, not something they configured.
``$STATE_DIRECTORY`` (set by systemd's ``StateDirectory=``; the first entry when it lists several),
else ``$XDG_STATE_HOME/genie``, else ``~/.local/state/genie``; the file is ``buttons.json``::

    {"version": 1,
     "gamepads": {"Xbox Wireless Controller": ["ABS_Z", "BTN_TL", ...8 control names]},
     "midi": {"port": "nanoPAD2:nanoPAD2 MIDI 1", "buttons": ["note:36", "cc:20", ...8]}}

Control names are those of ``daemon.io.gamepad`` (``BTN_SOUTH``, ``ABS_HAT0X-``, ``ABS_Z``).
A learned map wins over the default layout for a device of that name.

The ``midi`` map (``genie learn --midi PORT``; controls as in ``daemon.io.midi_buttons``) is one
map for every MIDI input: ALSA port names carry client numbers that change between boots, so the
port is kept for information only. It replaces the *default* ``buttons`` of every
``[[processor]]``, never a ``buttons`` the config sets: an explicit value is a decision, a learned
map is a convenience.

``Learner`` is the pure logic of ``genie learn``: fed presses and releases of controls, it collects
8 distinct controls of one device, one per button, low to high.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger("genie.learn")

FILE_NAME = "buttons.json"
VERSION = 1
N_BUTTONS = 8


def state_dir() -> Path:
    """Genie's state directory (not created here)."""
    systemd = os.environ.get("STATE_DIRECTORY", "")
    if systemd:
        return Path(systemd.split(":")[0])
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "genie"


def learned_path() -> Path:
    return state_dir() / FILE_NAME


def load_learned(path: Path | None = None) -> dict[str, list[str]]:
    """Learned gamepad maps by device name; {} when there is none.

    A damaged file is logged and ignored (the default layouts still play): it is state written by
    Genie, and a gig must not stop over it."""
    path = path or learned_path()
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("learned button map %s is unreadable (%s); using the default layouts", path, exc)
        return {}
    pads = raw.get("gamepads") if isinstance(raw, dict) else None
    if isinstance(raw, dict) and "gamepads" not in raw:  # only a MIDI map learned so far
        return {}
    if not isinstance(pads, dict):
        log.warning("learned button map %s has no 'gamepads' table; ignored", path)
        return {}
    out = {}
    for name, controls in pads.items():
        if (isinstance(controls, list) and len(controls) == N_BUTTONS
                and all(isinstance(c, str) for c in controls)):
            out[name] = controls
        else:
            log.warning("learned button map %s: entry %r is not 8 control names; ignored", path, name)
    return out


def save_learned(device_name: str, controls: list[str], path: Path | None = None) -> Path:
    """Add or replace one device's map; written atomically (a crash leaves the old file)."""
    if len(controls) != N_BUTTONS:
        raise ValueError(f"a map has {N_BUTTONS} controls, got {len(controls)}")

    def update(raw: dict) -> None:
        if not isinstance(raw.get("gamepads"), dict):
            raw["gamepads"] = {}
        raw["gamepads"][device_name] = list(controls)

    return _update(path or learned_path(), update)


def load_learned_midi(path: Path | None = None) -> tuple[str, list[int | str]] | None:
    """The learned MIDI map: (port it was learned on, 8 parsed controls), or None.

    A damaged entry is logged and ignored, like a damaged gamepad map."""
    from daemon.io.midi_buttons import parse_buttons

    path = path or learned_path()
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("learned button map %s is unreadable (%s); using the configured buttons",
                    path, exc)
        return None
    midi = raw.get("midi") if isinstance(raw, dict) else None
    if midi is None:
        return None
    try:
        return str(midi.get("port", "")), parse_buttons(midi.get("buttons"))
    except (AttributeError, ValueError) as exc:  # not a table, or not 8 controls
        log.warning("learned button map %s: the midi map is damaged (%s); ignored", path, exc)
        return None


def save_learned_midi(port: str, controls: list[int | str], path: Path | None = None) -> Path:
    """Replace the learned MIDI map (8 controls, as ``parse_buttons`` takes them)."""
    from daemon.io.midi_buttons import parse_buttons, to_names

    names = to_names(parse_buttons(list(controls)))  # raises ValueError for a bad map

    def update(raw: dict) -> None:
        raw["midi"] = {"port": port, "buttons": names}

    return _update(path or learned_path(), update)


def _update(path: Path, change) -> Path:
    """Read the file (a damaged one counts as empty), apply ``change``, write it atomically
    (a crash leaves the old file); other entries are kept."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        raw = json.loads(path.read_text())
        if not isinstance(raw, dict):
            raw = {}
    except (OSError, ValueError):
        raw = {}
    change(raw)
    raw["version"] = VERSION
    fd, tmp = tempfile.mkstemp(prefix=".buttons.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(raw, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class Learner:
    """Collects one control per button, low to high, from one device.

    ``press``/``release`` take a device name and a control name. A press counts only when nothing
    is held, so a control that reports twice (the PlayStation L2 is both ``BTN_TL2`` and the axis
    ``ABS_Z``) is learned once; while that press is still held, an analog trigger axis replaces the
    digital key it came with, so trigger depth can set velocity.
    """

    def __init__(self, n: int = N_BUTTONS) -> None:
        self.n = n
        self.device: str | None = None
        self.controls: list[str] = []
        self._held: set[str] = set()
        self._upgradable = False  # the last learned control may still become its trigger axis

    @property
    def done(self) -> bool:
        return len(self.controls) == self.n and not self._held

    @property
    def holding(self) -> bool:
        """Something of the learned device is still pressed."""
        return bool(self._held)

    @property
    def button(self) -> int:
        """The button being learned now."""
        return len(self.controls)

    def press(self, device: str, control: str) -> str:
        """'learned', 'upgraded', 'ignored', 'other device' or 'used' (already a button)."""
        if self.device is not None and device != self.device:
            return "other device"
        was_held = bool(self._held)
        self._held.add(control)
        if was_held:
            if self._upgradable and is_trigger_name(control) and control not in self.controls:
                self.controls[-1] = control
                self._upgradable = False
                return "upgraded"
            return "ignored"
        if len(self.controls) >= self.n:
            return "ignored"
        if control in self.controls:
            return "used"
        self.device = device
        self.controls.append(control)
        self._upgradable = not is_trigger_name(control)
        return "learned"

    def release(self, device: str, control: str) -> None:
        if device == self.device:
            self._held.discard(control)
            if not self._held:
                self._upgradable = False


def is_trigger_name(control: str) -> bool:
    """A trigger axis (``ABS_Z``), as opposed to a key or half of a centred axis."""
    return control.startswith("ABS_") and not control.endswith(("+", "-"))
