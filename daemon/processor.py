"""The processor contract and the registry that finds processors through entry points.

A processor turns events (buttons, notes, clock, controls) into timed MIDI outputs. The engine
calls it from one thread only, so it needs no locks. Model packages implement it; the daemon core
never imports them: it looks them up in the ``genie.processors`` entry-point group, lazily, so
``genie ports`` and ``genie doctor`` never import torch.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from daemon.events import Event, Out
from daemon.transport import TICKS_PER_BEAT, TickSchedule, Transport

__all__ = ["BaseProcessor", "Context", "Ending", "Processor", "ProcessorError", "TICKS_PER_BEAT",
           "TickSchedule", "Transport", "WorkHandle", "available", "load", "model_cards", "package_file"]

ENTRY_POINT_GROUP = "genie.processors"


class ProcessorError(Exception):
    """A processor cannot be found, configured or started; the message is one line for the user."""


class Host(Protocol):
    """What the engine (live or offline) does for a processor; reached through its Context."""

    def submit(self, label: str, job: Callable, on_piece: Callable | None) -> "WorkHandle": ...
    def retract(self, label: str, from_ns: int | None, voice: str | None, end_sounding: bool,
                now_ns: int | None) -> int: ...
    def transport(self, label: str) -> Any: ...


class Ending:
    """Why the engine ended a processor's notes and dropped its queue (``on_release``)."""

    PANIC = "panic"  # the panic button, CC, `genie panic` or SIGUSR1
    SWITCH = "switch"  # another processor was switched in (Program Change, switch CC)
    ERROR = "error"  # the processor raised
    ALL_NOTES_OFF = "all-notes-off"  # CC 120/123 from the DAW
    STOP = "stop"  # the daemon stops
    SERVER_LOST = "server-lost"  # the audio server (JACK) went away; Genie waits for it
    RELOAD = "reload"  # the config was read again (SIGHUP): this processor is replaced


@dataclass
class Context:
    """What the engine lends a processor at start-up.

    - ``submit(job, on_piece=None)``: run ``job(token)`` off the engine thread. It yields pieces;
      each reaches ``on_piece(piece)`` on the engine thread, whose outputs are scheduled at once
      (without ``on_piece`` a piece is an ``Out`` or a list of them). ``handle.cancel()`` stops it
      at its next piece, and nothing it made is applied afterwards (``daemon.workers``).
    - ``retract(from_ns=None, voice=None, end_sounding=False)``: take back this processor's queued
      outputs that have not been sent (all, those due from ``from_ns`` on, or one voice's: the
      voice of an ``Out`` is its tag); ``end_sounding`` also ends its sounding notes now. The
      ledger still ends every note that sounds.
    - ``transport``: the DAW's transport (``Transport``, from ``daemon.transport``, re-exported
      here with ``TickSchedule`` as part of the contract) for ``clock = true``; None otherwise.
    Offline (``genie play``) the same calls run in step with the simulated clock.
    """

    name: str
    options: dict[str, Any]
    seed: int = 0
    now_ns: Callable[[], int] = field(default=lambda: 0)
    host: Host | None = None

    def rng(self) -> random.Random:
        return random.Random(self.seed)

    @property
    def can_submit(self) -> bool:
        return self.host is not None

    def submit(self, job: Callable, on_piece: Callable | None = None) -> "WorkHandle":
        if self.host is None:
            raise ProcessorError(f"processor {self.name!r}: no worker outside an engine")
        return self.host.submit(self.name, job, on_piece)

    def retract(self, from_ns: int | None = None, voice: str | None = None,
                end_sounding: bool = False) -> int:
        """Drop queued outputs; returns how many were dropped."""
        if self.host is None:
            return 0
        return self.host.retract(self.name, from_ns, voice, end_sounding, self.now_ns())

    @property
    def transport(self) -> Any:
        return self.host.transport(self.name) if self.host is not None else None


class WorkHandle(Protocol):
    def cancel(self) -> None: ...
    def done(self) -> bool: ...


@runtime_checkable
class Processor(Protocol):
    """What the engine calls, all from its one thread. ``on_idle`` runs at least every few
    milliseconds; ``on_release(reason)`` after the engine ended the processor's notes and dropped
    its queue (an ``Ending``): its running jobs are cancelled too."""

    name: ClassVar[str]

    def start(self, ctx: Context) -> None: ...
    def on_event(self, ev: Event) -> Iterable[Out]: ...
    def on_idle(self, now_ns: int) -> Iterable[Out]: ...
    def stop(self) -> None: ...


class BaseProcessor:
    """Convenience base: no-op idle and stop, options checked against ``defaults``."""

    name: ClassVar[str] = "base"
    defaults: ClassVar[dict[str, Any]] = {}
    model_files: ClassVar[tuple[str, ...]] = ()
    """Packaged artefacts this processor loads, relative to its module; ``genie doctor`` checks them."""
    listens: ClassVar[bool] = False
    """True: unless its ``buttons`` are configured, it hears every note as a note (``"none"``)."""

    def start(self, ctx: Context) -> None:
        self.ctx = ctx
        self.options = self.check_options(ctx.options)

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Merge ``options`` over ``defaults``; unknown keys and wrong types raise ProcessorError."""
        merged = dict(cls.defaults)
        for key, value in options.items():
            if key not in cls.defaults:
                raise ProcessorError(f"unknown option {key!r} for processor {cls.name!r}")
            want = type(cls.defaults[key])
            if want is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if cls.defaults[key] is not None and not isinstance(value, want):
                raise ProcessorError(
                    f"option {key!r} of processor {cls.name!r} must be {want.__name__}, "
                    f"got {type(value).__name__}"
                )
            merged[key] = value
        return merged

    def on_event(self, ev: Event) -> Iterable[Out]:
        return ()

    def on_idle(self, now_ns: int) -> Iterable[Out]:
        return ()

    def on_release(self, reason: str) -> None:
        pass

    def output_channels(self) -> Iterable[int]:
        """Channels (1-16) it plays on besides its slot's ``out_channel`` (``keep_channel``
        outputs): panic and start-up clear them too."""
        return ()

    def stop(self) -> None:
        pass


def available() -> dict[str, str]:
    """Processor names and their entry-point targets, without importing them."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load(name: str) -> type:
    """Import and return the processor class registered as ``name``."""
    eps = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none installed"
        raise ProcessorError(f"no processor named {name!r} (available: {known})")
    try:
        cls = eps[name].load()
    except Exception as exc:  # a broken plug-in must not take the CLI down with a traceback
        raise ProcessorError(f"processor {name!r} failed to import: {exc}") from exc
    return cls


MODEL_SUFFIXES = (".pt", ".onnx", ".json", ".npz")


def is_model_file(path: Path) -> bool:
    """What a processor loads from its weights folder: weights and their settings, not model
    cards, plots or metrics."""
    return (path.is_file() and path.suffix in MODEL_SUFFIXES
            and not path.stem.endswith(("_metrics", "_history")))


def model_cards(module_dir: Path, name: str) -> dict[Path, str]:
    """Model cards ``weights/<name>*.md`` beside a processor's module, with their licence lines."""
    import re

    cards = {}
    for card in sorted((module_dir / "weights").glob(f"{name}*.md")):
        m = re.search(r"^\W*licen[cs]e\W*:\s*(.+)$", card.read_text(errors="replace"),
                      re.IGNORECASE | re.MULTILINE)
        cards[card] = m.group(1).strip() if m else "NOT STATED"
    return cards


def package_file(cls: type, relative: str) -> Path:
    """Path of a file shipped beside a processor's module (e.g. ``weights/model.pt``)."""
    import sys

    module = sys.modules[cls.__module__]
    return Path(module.__file__).parent / relative
