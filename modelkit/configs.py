"""Strict dataclass configs: an unknown key is an error, nested dataclasses are rebuilt."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def from_dict(cls: type[T], d: dict[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from ``d``; unknown keys raise ``ValueError`` naming them."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)} for {cls.__name__}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in d.items():
        kind = hints.get(name)
        if dataclasses.is_dataclass(kind) and isinstance(value, dict):
            value = from_dict(kind, value, f"{where}.{name}")
        elif isinstance(value, list) and typing.get_origin(kind) is tuple:
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def resume_config(cls: type[T], saved: dict[str, Any], overrides: dict[str, Any],
                  requested: dict[str, Any] | None = None) -> tuple[T, list[str]]:
    """The saved run config with only ``overrides`` applied (where, how long, threads).

    ``requested`` holds other options the user gave; those that differ from the saved run are
    returned by name, so the command can say that a resume ignores them."""
    cfg = from_dict(cls, saved)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    ignored = sorted(k for k, v in (requested or {}).items()
                     if k not in overrides and k in saved and saved[k] != v)
    return cfg, ignored
