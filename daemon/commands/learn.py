"""``genie learn``: press the 8 buttons in turn, low to high; the map is kept in Genie's state
directory and ``genie run`` uses it for that controller from then on.

``genie learn --midi PORT`` learns 8 notes or CCs from a MIDI controller instead; that map replaces
the default ``buttons`` of every ``[[processor]]`` (not one the config sets)."""

from __future__ import annotations

import os
import selectors
import time
from collections.abc import Callable
from typing import Any

import click

from daemon.cli import UserError
from daemon.io.learn import N_BUTTONS, Learner, learned_path, save_learned, save_learned_midi

NAMES = ["lowest", "2nd", "3rd", "4th", "5th", "6th", "7th", "highest"]


class Prompts:
    """The conversation of one learning session, whatever the controller: ask for each button,
    acknowledge it, ask for the next once it is let go, and give up after ``timeout_s`` without
    a new button."""

    def __init__(self, learner: Learner, echo: Callable[[str], None], timeout_s: float,
                 where: str = "") -> None:
        self.learner, self.echo, self.timeout_s = learner, echo, timeout_s
        self.prompt_due = False  # the next prompt comes once the learned button is let go
        self.deadline = time.monotonic() + timeout_s
        echo(f"Press the {NAMES[0]} button (button 0){where}")

    def left_s(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise UserError(f"genie learn: no new button within {self.timeout_s:.0f} s; "
                            "nothing saved")
        return left

    def released(self, device: str, control: str) -> None:
        learner = self.learner
        learner.release(device, control)
        if self.prompt_due and not learner.holding and learner.button < learner.n:
            self.prompt_due = False
            self.echo(f"Press the {NAMES[learner.button]} button (button {learner.button})")

    def pressed(self, device: str, control: str, label: str) -> tuple[str, int]:
        """What the press did (Learner.press's answer) and the button it was asked for."""
        before = self.learner.button
        what = self.learner.press(device, control)
        if what == "learned":
            self.echo(f"  button {before}: {label}")
            self.deadline = time.monotonic() + self.timeout_s
            self.prompt_due = True
        elif what == "used":
            self.echo(f"  {label} is already button {self.learner.controls.index(control)}; "
                      "press another")
        return what, before


def learn_buttons(pads: list[tuple[Any, str, set[int], dict]], echo: Callable[[str], None],
                  timeout_s: float, n: int = N_BUTTONS) -> tuple[str, list[str]]:
    """Read the pads until ``n`` distinct controls of one of them were pressed, one at a time.

    ``pads`` as ``open_controllers`` gives them. Returns (device name, control names). Raises
    UserError on a timeout (``timeout_s`` without a new button) or when every pad went away."""
    from daemon.io.evdev_events import EVENT, READ_EVENTS, decode_events
    from daemon.io.gamepad import PadParser, all_controls_layout

    parsers = {}
    sel = selectors.DefaultSelector()
    for dev, _, keys, axes in pads:
        fd = dev.fileno()
        layout = all_controls_layout(keys, axes)
        parsers[fd] = (dev, PadParser(layout, ranges={c: (lo, hi) for c, (_, lo, hi) in
                                                      axes.items()}, threshold=0.6))
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    learner = Learner(n)
    prompts = Prompts(learner, echo, timeout_s)
    try:
        while not learner.done:
            left = prompts.left_s()
            if not sel.get_map():
                raise UserError("genie learn: every controller went away; nothing saved")
            for key, _ in sel.select(left):
                dev, parser = parsers[key.fd]
                try:
                    data = os.read(key.fd, EVENT.size * READ_EVENTS)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    echo(f"{dev.name} went away")
                    sel.unregister(key.fd)
                    continue
                for ev in decode_events(data[:len(data) - len(data) % EVENT.size]):
                    for ch in parser.feed(ev):
                        control = parser.layout.buttons[ch.button][0].name
                        if not ch.pressed:
                            prompts.released(dev.name, control)
                            continue
                        what, before = prompts.pressed(dev.name, control,
                                                       f"{control} on {dev.name}")
                        if what == "upgraded":
                            echo(f"  button {before - 1}: {control} (analog: velocity from depth)")
                        elif what == "other device":
                            echo(f"  that was {dev.name}; keep to {learner.device}")
                    if parser.needs_resync:
                        parser.release_all(0)
    finally:
        sel.close()
    return learner.device or "", list(learner.controls)


MIDI_POLL_S = 0.002  # learning is interactive: a short sleep between drains of rtmidi's queue


def learn_midi_buttons(port: Any, echo: Callable[[str], None], timeout_s: float,
                       n: int = N_BUTTONS) -> list[int | str]:
    """Read a MIDI input until ``n`` distinct notes or CCs were pressed, one at a time.

    ``port`` is a ``daemon.io.midi.MidiInput`` (anything with ``name`` and ``drain``). A note-on
    presses, its note-off releases; a CC presses at 64 and up, releases below. Raises UserError
    when ``timeout_s`` passes without a new button."""
    from daemon.io.midi_buttons import control_of, describe

    learner = Learner(n)
    prompts = Prompts(learner, echo, timeout_s, f" on {port.name}")
    while not learner.done:
        prompts.left_s()
        burst = port.drain(256)
        if not burst:
            time.sleep(MIDI_POLL_S)
            continue
        for msg, _ in burst:
            got = control_of(msg)
            if got is None:
                continue
            control, pressed = got
            name = str(control)  # the Learner keys controls by name
            if pressed:
                prompts.pressed(port.name, name, describe(control))
            else:
                prompts.released(port.name, name)
    return [int(c) if c.isdigit() else c for c in learner.controls]


def _learn_midi(pattern: str, api: str, timeout: float) -> None:
    from daemon.io.midi import MidiInput, choose_api

    port = MidiInput.open(choose_api(api), pattern, virtual=False)  # PortError: one line
    try:
        controls = learn_midi_buttons(port, click.echo, timeout)
    finally:
        port.close()
    path = save_learned_midi(port.name, controls)
    click.echo(f"Saved the MIDI button map to {path}; `genie run` plays it from now on wherever "
               "a [[processor]] leaves `buttons` unset (delete the \"midi\" entry to go back).")


@click.command()
@click.option("--device", "-d", default="*", show_default=True,
              help="Only controllers whose name or path matches this glob.")
@click.option("--midi", "midi_port", metavar="PORT",
              help="Learn 8 notes or CCs from this MIDI input port (name or glob; see "
                   "`genie ports`) instead of a game controller.")
@click.option("--api", type=click.Choice(["auto", "alsa", "jack", "coremidi"]), default="auto",
              show_default=True, help="MIDI API for --midi.")
@click.option("--timeout", default=60.0, show_default=True,
              help="Seconds to wait for each button before giving up.")
@click.option("--dev-dir", default="/dev/input", hidden=True)
def learn(device: str, midi_port: str | None, api: str, timeout: float, dev_dir: str) -> None:
    """Teach Genie a controller: press its 8 buttons in turn, lowest first."""
    import fnmatch

    if midi_port:
        _learn_midi(midi_port, api, timeout)
        return

    from daemon.io.evdev_devices import PERMISSION_HINT, evdev_available
    from daemon.io.gamepad import open_controllers

    why = evdev_available()
    if why:
        raise UserError(f"genie learn: {why}")
    try:
        found, refused = open_controllers(dev_dir)
    except FileNotFoundError:
        raise UserError(f"genie learn: no {dev_dir} on this machine: no game controllers") from None
    pads = [p for p in found if fnmatch.fnmatchcase(p[0].name, device)
            or fnmatch.fnmatchcase(p[1], device)]
    for p in found:
        if p not in pads:
            p[0].close()
    if not pads:
        hint = f" (no permission to read {', '.join(refused)}: {PERMISSION_HINT})" if refused else ""
        raise UserError(f"genie learn: no game controller found{hint}")
    click.echo("Controllers: " + ", ".join(f"{p[0].name} ({p[1]})" for p in pads))
    try:
        name, controls = learn_buttons(pads, click.echo, timeout)
    finally:
        for p in pads:
            p[0].close()
    path = save_learned(name, controls)
    click.echo(f"Saved the map for {name} to {path}; `genie run` plays it from now on "
               f"(delete it from {learned_path().name} to go back to the default layout).")
