"""8 buttons from a MIDI controller: presets, note and CC buttons, and the learned map.

A ``[[processor]]``'s ``buttons`` names the MIDI controls that act as its buttons 0-7, low to high:

- a preset: ``"white-keys"`` (C4-C5: 60 62 64 65 67 69 71 72, the default) or ``"pads"`` (36-43,
  the General MIDI drum pads most 8-pad controllers send);
- a whole keyboard folded onto the 8 buttons: ``"keyboard"`` (the 88 keys, A0-C8) or
  ``"range:LOW-HIGH"`` (e.g. ``"range:48-72"`` for a 25-key controller): the range is cut into 8
  equal bands, low to high, so a higher key presses a higher or the same button and the melody's
  contour survives; keys below or above the range press button 0 or 7. Each key is a press of
  its own (two keys in one band sound two notes);
- or 8 controls, each a note (``60`` or ``"note:60"``) or a control change (``"cc:20"``). A CC
  button is pressed when its value reaches 64 and released below 64; only the crossing counts, so
  a knob turned past the middle presses once. A note button passes its velocity on; a CC button
  plays at the processor's default velocity (a pad's CC value is a switch, not a dynamic).

Parsed once, at config time, into a list of 8 entries: an ``int`` for a note, ``"cc:N"`` for a
CC. The default list is a ``DefaultButtons`` (a plain list otherwise) so ``genie run`` can tell it
from an explicit value: a map learned with ``genie learn --midi`` replaces the default, never an
explicit ``buttons``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from daemon.events import CONTROL_CHANGE, NOTE_OFF, NOTE_ON

N_BUTTONS = 8
PRESETS: dict[str, list[int]] = {
    "white-keys": [60, 62, 64, 65, 67, 69, 71, 72],  # C4..C5
    "pads": [36, 37, 38, 39, 40, 41, 42, 43],  # General MIDI drum pads (kick .. closed hi-hat)
}
CC_PRESS = 64  # a CC button is down from this value up
MAX_BUTTON_CC = 119  # 120-127 are channel mode messages (all notes off, ...)


class DefaultButtons(list):
    """The ``buttons`` a processor gets when its config says nothing (the white keys)."""


class FoldedButtons(list):
    """A keyboard range folded onto the 8 buttons (``"keyboard"``, ``"range:LOW-HIGH"``); the list
    holds a note of each band (what a recording writes for a button)."""

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high
        super().__init__(self.band_note(b) for b in range(N_BUTTONS))

    def button(self, pitch: int) -> int:
        span = self.high - self.low + 1
        return min(max((pitch - self.low) * N_BUTTONS // span, 0), N_BUTTONS - 1)

    def band_note(self, button: int) -> int:
        span = self.high - self.low + 1
        return self.low + (2 * button + 1) * span // (2 * N_BUTTONS)


def default_buttons() -> DefaultButtons:
    return DefaultButtons(PRESETS["white-keys"])


def is_default(buttons: Any) -> bool:
    """True when ``buttons`` is the untouched default (not set in the config)."""
    return isinstance(buttons, DefaultButtons)


def parse_control(entry: Any) -> int | str:
    """One button's control: ``60`` or ``"note:60"`` -> 60; ``"cc:20"`` -> ``"cc:20"``."""
    if isinstance(entry, int) and not isinstance(entry, bool):
        if not 0 <= entry <= 127:
            raise ValueError(f"note {entry} is not 0-127")
        return entry
    if isinstance(entry, str):
        kind, _, num = entry.strip().lower().partition(":")
        if kind in ("note", "cc") and num.strip().isdigit():
            n = int(num)
            if kind == "note":
                if n > 127:
                    raise ValueError(f"note {n} is not 0-127")
                return n
            if n > MAX_BUTTON_CC:
                raise ValueError(f"cc {n} is not 0-{MAX_BUTTON_CC} (120-127 are channel mode "
                                 "messages)")
            return f"cc:{n}"
    raise ValueError(f"{entry!r} is not a control (use a note 0-127, \"note:60\" or \"cc:20\")")


def parse_buttons(value: Any) -> list[int | str]:
    """A preset name or 8 controls, as the config gives them, to 8 normalized entries.

    Raises ValueError with the reason (the config adds file and key)."""
    if value == "none":
        return []
    if value == "keyboard":
        return FoldedButtons(21, 108)
    if isinstance(value, str) and value.startswith("range:"):
        lo, _, hi = value[6:].partition("-")
        if not (lo.strip().isdigit() and hi.strip().isdigit()) or not 0 <= int(lo) < int(hi) <= 127 \
                or int(hi) - int(lo) + 1 < N_BUTTONS:
            raise ValueError(f"{value!r}: use \"range:LOW-HIGH\" with notes 0-127, at least 8 keys")
        return FoldedButtons(int(lo), int(hi))
    if isinstance(value, str):
        if value not in PRESETS:
            raise ValueError(f"unknown preset {value!r} (know {', '.join(PRESETS)}, keyboard, "
                             f"range:LOW-HIGH, none; or list 8 "
                             "notes or \"cc:N\" controls)")
        return list(PRESETS[value])
    if not isinstance(value, list) or len(value) != N_BUTTONS:
        raise ValueError(f"must be a preset ({', '.join(PRESETS)}) or list {N_BUTTONS} controls "
                         "(notes 0-127 or \"cc:N\")")
    out = [parse_control(v) for v in value]
    if len(set(out)) != N_BUTTONS:
        raise ValueError("lists one control twice")
    return out


def lookup(buttons: Sequence[int | str]) -> tuple[dict[int, int], dict[int, int]]:
    """(note -> button, cc number -> button) for a parsed button list."""
    if isinstance(buttons, FoldedButtons):
        return {p: buttons.button(p) for p in range(128)}, {}
    notes, ccs = {}, {}
    for i, c in enumerate(buttons):
        if isinstance(c, str):
            ccs[int(c.split(":")[1])] = i
        else:
            notes[c] = i
    return notes, ccs


def cc_numbers(buttons: Sequence[int | str]) -> set[int]:
    return set(lookup(buttons)[1])


def note_for(buttons: Sequence[int | str], button: int) -> int:
    """A note that stands for ``button`` (in recordings): its note, else 60 + button."""
    c = buttons[button] if 0 <= button < len(buttons) else None
    return c if isinstance(c, int) else 60 + button


def control_of(msg: Sequence[int]) -> tuple[int | str, bool] | None:
    """What ``genie learn --midi`` learns from a message: (control, pressed), or None."""
    if len(msg) != 3 or msg[0] >= 0xF0:
        return None
    status = msg[0] & 0xF0
    if status == NOTE_ON and msg[2] > 0:
        return msg[1], True
    if status == NOTE_OFF or status == NOTE_ON:
        return msg[1], False
    if status == CONTROL_CHANGE and msg[1] <= MAX_BUTTON_CC:
        return f"cc:{msg[1]}", msg[2] >= CC_PRESS
    return None


def describe(control: int | str) -> str:
    """``note 36 (C2)`` or ``CC 20``."""
    if isinstance(control, str):
        return f"CC {control.split(':')[1]}"
    names = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
    return f"note {control} ({names[control % 12]}{control // 12 - 1})"


def to_names(buttons: Sequence[int | str]) -> list[str]:
    """The form saved in ``buttons.json``: ``note:N`` / ``cc:N``."""
    return [c if isinstance(c, str) else f"note:{c}" for c in buttons]


def use_learned(tables: list, controls: Sequence[int | str]) -> list[str]:
    """Give every raw ``[[processor]]`` table that sets no ``buttons`` the learned ``controls``
    (before the config is checked); returns the labels changed. Configured buttons win."""
    changed = []
    for i, t in enumerate(tables):
        if isinstance(t, dict) and "buttons" not in t:
            t["buttons"] = list(controls)
            changed.append(str(t.get("label") or t.get("name") or f"processor[{i}]"))
    return changed