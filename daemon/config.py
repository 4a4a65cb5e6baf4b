"""The TOML configuration: every key has a default, and every error names the file and the key.

Found via ``--config``, ``$XDG_CONFIG_HOME/genie/config.toml`` or ``/etc/genie/config.toml``.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from daemon.io.midi_buttons import default_buttons, is_default, parse_buttons

DEFAULT_BUTTON_NOTES = [60, 62, 64, 65, 67, 69, 71, 72]  # the white keys C4..C5
PASSTHROUGH_KINDS = ("pitchbend", "modwheel", "aftertouch", "sustain")
INT_LISTS = frozenset({"panic_buttons"})


class ConfigError(Exception):
    """A bad configuration; ``str()`` is the one-line message for the user."""


class _Freezable:
    """Config sections become read-only once the whole configuration is checked (``freeze``):
    what the daemon runs with is what was checked."""

    def __setattr__(self, key: str, value: Any) -> None:
        if self.__dict__.get("_frozen"):
            raise AttributeError(f"the checked configuration is frozen: {type(self).__name__}.{key}")
        object.__setattr__(self, key, value)


def _sections(cfg: Any) -> list[Any]:
    out = [cfg]
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        if isinstance(v, _Freezable):
            out += _sections(v)
        elif isinstance(v, (list, tuple)):
            out += [x for x in v if isinstance(x, _Freezable)]
    return out


def freeze(cfg: "Config") -> "Config":
    """Make a checked configuration read-only (its list of processors a tuple)."""
    object.__setattr__(cfg, "processors", tuple(cfg.processors))
    for section in _sections(cfg):
        object.__setattr__(section, "_frozen", True)
    return cfg


def thawed_copy(cfg: "Config") -> "Config":
    """A deep copy that may be changed (``genie play`` sets its own offline values)."""
    import copy

    out = copy.deepcopy(cfg)
    for section in _sections(out):
        section.__dict__.pop("_frozen", None)
    object.__setattr__(out, "processors", list(out.processors))
    return out


@dataclass
class MidiConfig(_Freezable):
    api: str = "auto"  # auto | alsa | jack | coremidi
    client_name: str = "Genie"
    input_port: str = "Genie in"  # Genie's own virtual input; "" for none
    inputs: list[str] = field(default_factory=list)  # existing input ports, names or globs
    connect: list[str] = field(default_factory=list)  # ports to connect each output to
    poll_interval_ms: float = 0.5  # how often the engine drains rtmidi's queues
    send_ahead_ms: float = -1.0  # -1: half a JACK period (centres JACK's cycle quantization)
    echo_window_ms: float = 5.0  # input repeating Genie's output within this window is dropped
    queue_limit: int = 1024  # bounded input queue; overflow drops note-ons and repeated CCs first
    max_input_age_ms: float = 250.0  # a press that waited longer than this (a flood) is dropped
    server_wait_s: float = 30.0  # JACK gone: wait this long for it to return, then exit 1


@dataclass
class EngineConfig(_Freezable):
    seed: int = 0
    idle_interval_ms: float = 2.0
    switch: str = "none"  # none (all processors play) | program (Program Change n picks the n-th)
    switch_cc: int = -1  # a CC number whose value n picks the n-th processor (one plays); -1 off
    panic_cc: int = -1  # a CC number whose value > 0 triggers panic; -1 off
    panic_buttons: list[int] = field(default_factory=lambda: [0, 3, 4, 7])  # held together: panic
    panic_hold_ms: float = 500.0  # ... for this long (a fast run over them is not a panic)
    stress_worker: bool = False  # keep a worker thread busy (latency benchmarks)
    # on a real-time JACK server: SCHED_FIFO engine thread polling in JACK's cycles (daemon.engine);
    # false: an ordinary thread polling every midi.poll_interval_ms
    realtime: bool = True


@dataclass
class KeyboardConfig(_Freezable):
    enabled: str = "auto"  # auto | on (a missing keyboard is an error) | off
    # auto: local keyboards through evdev (true press and release) where readable and no desktop
    # session runs, and the terminal when stdin is one (its keys swallowed while an evdev
    # keyboard plays, unless it is an SSH session); terminal: stdin only; evdev: evdev only
    source: str = "auto"
    keys: str = "asdfjkl;"
    gate_ms: float = 250.0  # a terminal reports no releases: each press lasts this long
    quit_key: str = "q"
    grab: bool = False  # evdev: the keyboard plays Genie alone (console and desktop see nothing)


@dataclass
class GamepadConfig(_Freezable):
    enabled: str = "auto"  # auto (when python-evdev is installed and /dev/input exists) | on | off
    grab: bool = False  # exclusive access: presses do not reach the console or other programs
    devices: list[str] = field(default_factory=lambda: ["*"])  # device name or path globs
    layout: str = "auto"  # auto | xbox | playstation | switch | 8bitdo | generic | arcade
    trigger_threshold: float = 0.5  # a trigger (or a stick used as D-pad) presses past this depth
    trigger_hysteresis: float = 0.15  # ... and releases below threshold - hysteresis
    maps: dict[str, Any] = field(default_factory=dict)  # layout or device-name glob -> 8 controls
    sdl: str = "auto"  # SDL controllers (the sdl extra): auto (when evdev reads none) | on | off


@dataclass
class RecordConfig(_Freezable):
    path: str = ""
    flush_interval_s: float = 1.0


@dataclass
class ProcessorConfig(_Freezable):
    name: str = "pianogenie"  # entry point in group genie.processors
    label: str = ""  # defaults to name; must be unique
    inputs: list[str] = field(default_factory=lambda: ["*"])  # sources: port globs, "keyboard",
    #   "gamepad:*", "sdl:*" ("keyboard" takes the terminal and "keyboard:<device>" from evdev)
    channel: int = 0  # input channel filter 1-16; 0 = omni
    # 8 controls low to high: a preset ("white-keys", "pads") or notes / "cc:N" (io/midi_buttons);
    # "none": every note reaches the processor as a note
    buttons: list[int | str] = field(default_factory=default_buttons)
    output: str = "Genie out"
    out_channel: int = 1
    clock: bool = False  # hear the DAW's transport (daemon.transport) instead of clock bytes
    clock_offset_ms: float = 0.0  # added to the transport's predicted times (negative: earlier)
    clock_lost_ms: float = 500.0  # no clock this long while playing: the clock is lost
    beats_per_bar: int = 4
    passthrough: list[str] = field(default_factory=lambda: ["pitchbend", "modwheel", "sustain"])
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Config(_Freezable):
    path: str = "<defaults>"
    midi: MidiConfig = field(default_factory=MidiConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    keyboard: KeyboardConfig = field(default_factory=KeyboardConfig)
    gamepad: GamepadConfig = field(default_factory=GamepadConfig)
    record: RecordConfig = field(default_factory=RecordConfig)
    processors: list[ProcessorConfig] = field(default_factory=lambda: [ProcessorConfig()])

    def __post_init__(self) -> None:
        for p in self.processors:
            p.label = p.label or p.name

    def outputs(self) -> list[str]:
        return sorted({p.output for p in self.processors})


def find_config(explicit: str | None) -> Path | None:
    """The config file to read: ``--config``, then the XDG path, then /etc; None for defaults."""
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    for candidate in (Path(xdg) / "genie" / "config.toml", Path("/etc/genie/config.toml")):
        if candidate.is_file():
            return candidate
    return None


def load_config(explicit: str | None = None, overrides: Any = None) -> Config:
    """Read the configuration, apply ``overrides(raw)`` (the command line's options, written
    into the raw TOML tables), check it all and freeze it; ConfigError with a one-line message."""
    raw, path = read_raw(explicit)
    if overrides is not None:
        overrides(raw)
    return freeze(parse_config(raw, path))


def read_raw(explicit: str | None = None) -> tuple[dict[str, Any], str]:
    """The TOML document of the configuration file ({} without one) and its path."""
    path = find_config(explicit)
    if path is None:
        return {}, "<defaults>"
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config {path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config {path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path}: not valid TOML: {exc}") from None
    return raw, str(path)


def parse_config(raw: dict[str, Any], path: str = "<config>") -> Config:
    """Validate a parsed TOML document into a Config."""
    cfg = Config(path=path)
    sections = {"midi": MidiConfig, "engine": EngineConfig, "keyboard": KeyboardConfig,
                "gamepad": GamepadConfig, "record": RecordConfig}
    for key, value in raw.items():
        if key in sections:
            setattr(cfg, key, _build(sections[key], value, key, path))
        elif key == "processor":
            if not isinstance(value, list):
                raise ConfigError(f"config {path}: key 'processor': use [[processor]] tables")
            cfg.processors = [_build(ProcessorConfig, v, f"processor[{i}]", path)
                              for i, v in enumerate(value)]
        else:
            raise ConfigError(f"config {path}: unknown key {key!r}")
    _check(cfg, path)
    return cfg


def _build(cls: type, table: Any, where: str, path: str) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"config {path}: key {where!r}: must be a table")
    obj = cls()
    known = {f.name: f for f in fields(cls)}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(f"config {path}: unknown key '{where}.{key}'")
        default = getattr(obj, key)
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        elif key == "buttons":  # a preset name or 8 controls: parse_buttons checks in _check
            ok = True
        elif isinstance(default, list):
            item = int if key in INT_LISTS else str
            ok = isinstance(value, list) and all(
                isinstance(v, item) and not isinstance(v, bool) for v in value)
        else:
            ok = isinstance(value, type(default)) and not (
                isinstance(value, bool) and not isinstance(default, bool))
        if not ok:
            raise ConfigError(f"config {path}: key '{where}.{key}': must be "
                              f"{_type_name(default)}, got {value!r}")
        setattr(obj, key, value)
    return obj


def _type_name(default: Any) -> str:
    if isinstance(default, list):
        return "a list of integers" if default and isinstance(default[0], int) else "a list"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string",
            dict: "a table"}[type(default)]


def _check(cfg: Config, path: str) -> None:
    def fail(key: str, why: str) -> None:
        raise ConfigError(f"config {path}: key {key!r}: {why}")

    if cfg.midi.api not in ("auto", "alsa", "jack", "coremidi"):
        fail("midi.api", f"must be auto, alsa, jack or coremidi, got {cfg.midi.api!r}")
    import math

    def within(key: str, value: float, lo: float, hi: float, unit: str = "") -> None:
        if not (math.isfinite(value) and lo <= value <= hi):
            fail(key, f"must be between {lo:g} and {hi:g}{unit}, got {value!r}")

    if not 16 <= cfg.midi.queue_limit <= 1_000_000:
        fail("midi.queue_limit", "must be between 16 and 1000000")
    within("midi.echo_window_ms", cfg.midi.echo_window_ms, 0, 100, " ms")
    within("midi.max_input_age_ms", cfg.midi.max_input_age_ms, 10, 10_000, " ms")
    within("midi.server_wait_s", cfg.midi.server_wait_s, 0.5, 86_400, " s")
    if cfg.midi.send_ahead_ms != -1.0:
        within("midi.send_ahead_ms", cfg.midi.send_ahead_ms, 0, 50, " ms (or -1: half a JACK period)")
    within("engine.idle_interval_ms", cfg.engine.idle_interval_ms, 0.5, 100, " ms")
    within("engine.panic_hold_ms", cfg.engine.panic_hold_ms, 0, 10_000, " ms")
    within("keyboard.gate_ms", cfg.keyboard.gate_ms, 10, 10_000, " ms")
    within("record.flush_interval_s", cfg.record.flush_interval_s, 0.05, 60, " s")
    if cfg.engine.panic_cc in (0, 6, 7, 10, 32, 38, 64, 65, 66, 67, 120, 121, 122, 123, 124, 125, 126, 127):
        fail("engine.panic_cc", f"CC {cfg.engine.panic_cc} is a control a keyboard sends while playing "
             "(bank, volume, pan, pedals, mode messages); pick a free one (e.g. 20-31, 102-119)")
    if not 0.05 <= cfg.midi.poll_interval_ms <= 20:
        fail("midi.poll_interval_ms", "must be between 0.05 and 20")
    if cfg.engine.switch not in ("none", "program"):
        fail("engine.switch", f"must be none or program, got {cfg.engine.switch!r}")
    if not -1 <= cfg.engine.panic_cc <= 127:
        fail("engine.panic_cc", "must be -1 (off) or 0-127")
    if not -1 <= cfg.engine.switch_cc <= 119:
        fail("engine.switch_cc", "must be -1 (off) or 0-119")
    if any(not 0 <= b <= 7 for b in cfg.engine.panic_buttons):
        fail("engine.panic_buttons", "buttons are numbered 0-7")
    kb = cfg.keyboard
    if kb.enabled not in ("auto", "on", "off"):
        fail("keyboard.enabled", "must be auto, on or off")
    if kb.source not in ("auto", "terminal", "evdev"):
        fail("keyboard.source", f"must be auto, terminal or evdev, got {kb.source!r}")
    if len(kb.keys) != 8 or len(set(kb.keys)) != 8:
        fail("keyboard.keys", "must name exactly 8 different keys")
    if len(kb.quit_key) > 1 or (kb.quit_key and kb.quit_key in kb.keys):
        fail("keyboard.quit_key", "must be one key (or \"\" for none) that is not in keyboard.keys")
    if kb.source == "evdev":
        from daemon.io.evdev_keyboard import check_keys  # a pure table; no evdev import

        why = check_keys(kb.keys, kb.quit_key)
        if why:
            raise ConfigError(f"config {path}: key {why.split(':')[0]!r}:{why.split(':', 1)[1]}")
    pad = cfg.gamepad
    if pad.enabled not in ("auto", "on", "off"):
        fail("gamepad.enabled", "must be auto, on or off")
    if pad.sdl not in ("auto", "on", "off"):
        fail("gamepad.sdl", "must be auto, on or off")
    if pad.layout not in ("auto", "xbox", "playstation", "switch", "8bitdo", "generic", "arcade"):
        fail("gamepad.layout", "must be auto, xbox, playstation, switch, 8bitdo, generic or arcade")
    if not 0 < pad.trigger_threshold <= 1:
        fail("gamepad.trigger_threshold", "must be above 0 and at most 1")
    if not 0 <= pad.trigger_hysteresis < pad.trigger_threshold:
        fail("gamepad.trigger_hysteresis", "must be at least 0 and below trigger_threshold")
    from daemon.io.gamepad import check_maps  # a pure table of control names; no evdev import

    why = check_maps(pad.maps)
    if why:
        raise ConfigError(f"config {path}: key {why.split(':')[0]!r}:{why.split(':', 1)[1]}")
    if not cfg.processors:
        fail("processor", "configure at least one [[processor]]")
    labels: set[str] = set()
    for i, p in enumerate(cfg.processors):
        where = f"processor[{i}]"
        p.label = p.label or p.name
        if "keyboard" in p.inputs and "keyboard:*" not in p.inputs:
            # "keyboard" is every keyboard: the terminal's and each local one read through evdev
            p.inputs = [*p.inputs, "keyboard:*"]
        if p.label in labels:
            fail(f"{where}.label", f"{p.label!r} is used twice; give each processor a label")
        labels.add(p.label)
        if not 0 <= p.channel <= 16:
            fail(f"{where}.channel", "must be 0 (omni) or 1-16")
        if not 1 <= p.out_channel <= 16:
            fail(f"{where}.out_channel", "must be 1-16")
        try:
            if not is_default(p.buttons):
                p.buttons = parse_buttons(p.buttons)
        except ValueError as exc:
            fail(f"{where}.buttons", str(exc))
        for cc in sorted(n for n in (cfg.engine.panic_cc, cfg.engine.switch_cc)
                         if f"cc:{n}" in p.buttons):
            fail(f"{where}.buttons", f"cc:{cc} is also engine.panic_cc or engine.switch_cc")
        for kind in p.passthrough:
            if kind not in PASSTHROUGH_KINDS:
                fail(f"{where}.passthrough", f"unknown kind {kind!r} (know {', '.join(PASSTHROUGH_KINDS)})")
        if not p.output:
            fail(f"{where}.output", "must name an output port")
        if not p.inputs:
            fail(f"{where}.inputs", "is empty: the processor would hear nothing (\"*\" hears every source)")
        within(f"{where}.clock_offset_ms", p.clock_offset_ms, -1000, 1000, " ms")
        within(f"{where}.clock_lost_ms", p.clock_lost_ms, 50, 10_000, " ms")
        if not 1 <= p.beats_per_bar <= 32:
            fail(f"{where}.beats_per_bar", "must be 1-32")
    cycle = _chain_cycle(cfg.processors)
    if cycle:
        raise ConfigError(f"config {path}: key 'processor.inputs': processors feed each other in a "
                          f"circle ({' -> '.join(cycle)})")


def chain_inputs(p: ProcessorConfig, labels: set[str]) -> list[str]:
    """The other processors whose outputs ``p`` hears (its ``inputs`` naming their labels)."""
    return [i for i in p.inputs if i in labels]


def _chain_cycle(processors: list[ProcessorConfig]) -> list[str]:
    """A circle of processors feeding each other (labels, first repeated last), or []."""
    labels = {p.label for p in processors}
    feeds = {p.label: chain_inputs(p, labels) for p in processors}
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(label: str, path: list[str]) -> list[str]:
        state[label] = 1
        for src in feeds[label]:
            if state.get(src) == 1:
                return path[path.index(src):] + [src] if src in path else [label, src]
            if src not in state:
                found = visit(src, path + [src])
                if found:
                    return found
        state[label] = 2
        return []

    for label in feeds:
        if label not in state:
            found = visit(label, [label])
            if found:
                return list(reversed(found))
    return []
