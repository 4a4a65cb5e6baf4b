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

ENTRY_POINT_GROUP = "genie.processors"


class ProcessorError(Exception):
    """A processor cannot be found, configured or started; the message is one line for the user."""


@dataclass
class Context:
    """What the engine lends a processor at start-up."""

    name: str
    options: dict[str, Any]
    seed: int = 0
    now_ns: Callable[[], int] = field(default=lambda: 0)
    submit: Callable[[Callable[[], Iterable[Out]]], "WorkHandle"] | None = None
    """Run slow work off the engine thread; its outputs are scheduled when it finishes.
    Offline, work runs in step with the simulated clock, so results are deterministic."""

    def rng(self) -> random.Random:
        return random.Random(self.seed)


class WorkHandle(Protocol):
    def cancel(self) -> None: ...
    def done(self) -> bool: ...


@runtime_checkable
class Processor(Protocol):
    """What the engine calls. ``on_idle`` runs at least every few milliseconds."""

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
