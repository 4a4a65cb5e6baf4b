"""``genie run``: start the daemon with the configured processors on virtual MIDI ports."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from contextlib import ExitStack
from pathlib import Path
from dataclasses import dataclass
from typing import Any

import click

from daemon.cli import UserError
from daemon.config import Config, ProcessorConfig
from daemon.io.midi import API_NAMES, MidiInput, MidiOutput, PortError, choose_api

log = logging.getLogger("genie")

# How long a thread may hold the GIL while another waits (CPython's default is 5 ms). Each poll
# takes the GIL several times; behind a busy pure-Python worker every take waited up to the
# interval: measured here with `genie bench latency`, 5e-4 left (c') - (b) at +1.3 ms p99, 1e-4 at
# +0.36 ms (target 0.5). The worker loses a little throughput; torch releases the GIL anyway.
SWITCH_INTERVAL_S = 1e-4


def raw_overrides(processor: str | None, inputs: tuple[str, ...], output: str | None,
                  api: str | None, connect: tuple[str, ...], record: str | None,
                  keyboard: bool | None, stress_worker: bool):
    """The command line's options, written into the raw TOML tables before the whole is checked
    (so they are checked as the file is) and frozen: they win over the file."""

    def table(raw: dict, key: str) -> dict:
        t = raw.get(key)
        if not isinstance(t, dict):
            t = raw[key] = {} if t is None else t
        return t if isinstance(t, dict) else {}

    def apply(raw: dict) -> None:
        tables = raw.get("processor")
        first = tables[0] if isinstance(tables, list) and tables and isinstance(tables[0], dict) else {}
        if processor:
            keep = {k: v for k, v in first.items() if k not in ("name", "label", "options")}
            if first.get("name", ProcessorConfig.name) == processor and "options" in first:
                keep["options"] = first["options"]  # a processor's options go with it only
            raw["processor"] = [{**keep, "name": processor, "label": processor}]
        if output:
            for t in raw.setdefault("processor", [{}]):
                if isinstance(t, dict):
                    t["output"] = output
        midi = table(raw, "midi")
        if inputs:
            midi["inputs"] = list(inputs)
        if api:
            midi["api"] = api
        if connect:
            midi["connect"] = list(connect)
        if record:
            table(raw, "record")["path"] = record
        if keyboard is not None:
            table(raw, "keyboard")["enabled"] = "on" if keyboard else "off"
        if stress_worker:
            table(raw, "engine")["stress_worker"] = True
        _use_learned_midi_buttons(raw)

    return apply


@click.command()
@click.option("--processor", "-p", help="Play this processor (an entry point, e.g. thru, markov).")
@click.option("--input", "-i", "inputs", multiple=True,
              help="Also read this existing MIDI input port (name or glob); repeatable.")
@click.option("--output", "-o", help="Name of Genie's virtual output port.")
@click.option("--api", type=click.Choice(["auto", *API_NAMES]),
              help="MIDI API (default: ALSA where usable, else a running JACK server).")
@click.option("--connect", "-c", multiple=True,
              help="Connect the output to this port (e.g. a FluidSynth input); repeatable.")
@click.option("--record", "-r", type=click.Path(dir_okay=False),
              help="Record input and output into this MIDI file (a numbered new name when it exists).")
@click.option("--force", is_flag=True, help="With --record: overwrite an existing file.")
@click.option("--keyboard/--no-keyboard", default=None,
              help="Play buttons from the keys a s d f j k l ; (the local keyboard through evdev, "
                   "or the terminal's keys; default: when there is one).")
@click.option("--headless", is_flag=True,
              help="With no ALSA sequencer and no JACK server, start a private JACK dummy server.")
@click.option("--stress-worker", is_flag=True, hidden=True,
              help="Keep a worker thread busy (for latency benchmarks).")
@click.option("--evdev-fifo-dir", hidden=True, type=click.Path(file_okay=False, exists=True),
              help="Tests and benchmarks only: read evdev devices from FIFOs in this directory "
                   "instead of /dev/input (daemon.rigs.fifo_input).")
@click.pass_obj
def run(state, processor, inputs, output, api, connect, record, force, keyboard, headless,
        stress_worker, evdev_fifo_dir) -> None:
    """Run the daemon: read buttons and notes, play the processors' notes on virtual ports."""
    overrides = raw_overrides(processor, inputs, output, api, connect, record, keyboard, stress_worker)
    cfg = state.config_with(overrides)
    with ExitStack() as stack:
        api_name = _pick_api(cfg, headless, stack)
        _run(cfg, api_name, stack, evdev_fifo_dir, force,
             reread=lambda: state.config_with(overrides))


def _pick_api(cfg: Config, headless: bool, stack: ExitStack) -> str:
    try:
        return choose_api(cfg.midi.api)
    except PortError:
        if not headless or cfg.midi.api not in ("auto", "jack"):
            raise
    from daemon.io.jack import DummyServer

    server = DummyServer(name=f"{cfg.midi.client_name.lower()}-headless")
    stack.callback(server.stop)
    try:
        server.start()
    except RuntimeError as exc:
        raise UserError(f"--headless: {exc}") from None
    log.info("no MIDI backend found: started a private JACK dummy server %r", server.name)
    return "jack"


def _close_recorder(recorder, failed: list) -> None:
    try:
        stats = recorder.close()
    except OSError as exc:
        log.error("the recording was not saved whole where it was asked: %s", exc)
        failed.append(exc)
        return
    if stats is not None:
        log.info("recording written: %d messages in %d tracks%s", stats.events, stats.tracks,
                 f" ({stats.omitted} not MIDI left out)" if stats.omitted else "")


def _send_ahead_ms(cfg: Config, api: str) -> float:
    if cfg.midi.send_ahead_ms >= 0:
        return cfg.midi.send_ahead_ms
    if api == "jack":
        from daemon.io.jack import server_info

        info = server_info()
        if info is not None:
            # JACK writes every message at the start of the next cycle: sending half a period
            # early centres that quantization error on the due time.
            return info.period_ns / 2e6
    return 0.0


def _use_learned_midi_buttons(raw: dict) -> None:
    """A map from ``genie learn --midi`` gives the [[processor]] tables that set no ``buttons``
    their buttons (configured ones win)."""
    from daemon.io.learn import load_learned_midi
    from daemon.io.midi_buttons import to_names, use_learned

    learned = load_learned_midi()
    if learned is None:
        return
    port, controls = learned
    tables = raw.setdefault("processor", [{}])
    changed = use_learned(tables if isinstance(tables, list) else [], controls)
    if changed:
        log.info("buttons: the map learned on %r (%s) for %s", port,
                 " ".join(to_names(controls)), ", ".join(changed))
    else:
        log.info("buttons: every [[processor]] sets its own; the map learned on %r is not used",
                 port)


def _say_deaf_processors(cfg: Config, core, inputs: list) -> None:
    """A [[processor]] whose ``inputs`` match no source Genie has is accepted, and said so."""
    import fnmatch

    sources = [p.name for p in inputs]
    if cfg.keyboard.enabled != "off":
        sources += ["keyboard", "keyboard:device"]
    if cfg.gamepad.enabled != "off":
        sources += ["gamepad:device", "sdl:device"]
    for slot in core.slots:
        patterns = [i for i in slot.cfg.inputs if i not in slot.chain_from]
        if slot.chain_from:
            continue
        if not any(fnmatch.fnmatchcase(src, pat) for pat in patterns for src in sources):
            log.warning("processor %s hears nothing: its inputs %s match none of Genie's sources "
                        "(%s)", slot.label, patterns, ", ".join(p.name for p in inputs) or "no ports")


def _remote_terminal() -> bool:
    """stdin's terminal is an SSH session: typed on another keyboard than a local one."""
    return bool(os.environ.get("SSH_CONNECTION") or os.environ.get("SSH_TTY"))


@dataclass
class Inputs:
    """The button sources besides MIDI ports: the terminal, evdev devices (gamepads and local
    keyboards, one device loop), SDL controllers."""

    terminal: Any = None
    evdev: Any = None
    sdl: Any = None

    def start(self) -> None:
        if self.terminal:
            self.terminal.start()
        if self.evdev:
            self.evdev.start()

    def stop(self) -> None:
        for source in (self.terminal, self.evdev, self.sdl):
            if source:
                source.stop()


def _open_inputs(cfg: Config, engine, evdev_fifo_dir: str | None = None) -> Inputs:
    """Decide and build the keyboard, gamepad and SDL sources the config asks for.

    ``evdev_fifo_dir`` (tests and benchmarks only): evdev devices are FIFOs in that directory
    (``daemon.rigs.fifo_input``) instead of the nodes in /dev/input."""
    from daemon.io.evdev_devices import EvdevSource, GamepadUnavailable, evdev_available
    from daemon.io.gamepad import GamepadKind

    kb, pad = cfg.keyboard, cfg.gamepad
    dev_dir, opener = "/dev/input", None
    if evdev_fifo_dir:
        from daemon.rigs.fifo_input import open_fifo_device

        dev_dir, opener = evdev_fifo_dir, open_fifo_device
    have_dir = os.path.isdir(dev_dir)  # "auto" needs it; "on" waits for devices to appear
    why_not = None if opener else evdev_available()
    out = Inputs()

    kinds = []
    if pad.enabled == "on" or (pad.enabled == "auto" and have_dir):
        if why_not and pad.enabled == "on":
            raise UserError(f"gamepad: {why_not}")
        if why_not:
            log.info("no gamepads through evdev: %s", why_not)
        else:
            kinds.append(GamepadKind(pad))
    keyboard_kind = None
    if kb.enabled != "off" and kb.source != "terminal" and (have_dir or kb.source == "evdev"):
        from daemon.io.evdev_keyboard import KeyboardKind, why_no_evdev_keyboard

        why_kb = why_no_evdev_keyboard(kb.source, kb.keys, kb.quit_key, why_not)
        if why_kb and kb.source == "evdev" and kb.enabled == "on":
            raise UserError(f"keyboard: {why_kb}")
        if why_kb:
            log.info("keyboard: no local keyboard through evdev: %s", why_kb)
        else:
            keyboard_kind = KeyboardKind(
                kb.keys, kb.quit_key, engine.request_stop, grab=kb.grab,
                refused_level=logging.ERROR if kb.source == "evdev" else logging.INFO)
            kinds.append(keyboard_kind)
    if kinds:
        try:
            out.evdev = EvdevSource(engine.post, engine.source_lost, kinds, dev_dir=dev_dir,
                                    opener=opener)
        except GamepadUnavailable as exc:  # python-evdev went missing since the check above
            raise UserError(f"evdev: {exc}") from None

    if kb.enabled != "off":
        if sys.stdin.isatty():
            from daemon.io.keyboard import TerminalKeyboard

            muted = None
            if kb.source == "evdev":
                muted = lambda: True  # the terminal only quits; evdev plays
            elif keyboard_kind is not None and not _remote_terminal():
                evdev = out.evdev
                muted = lambda: bool(evdev.sources("keyboard"))
            out.terminal = TerminalKeyboard(engine.post, engine.request_stop, kb.keys, kb.gate_ms,
                                            kb.quit_key, muted=muted)
        elif kb.enabled == "on" and keyboard_kind is None:
            raise UserError("keyboard: stdin is not a terminal and no local keyboard is read "
                            "through evdev (keyboard.enabled = on)")

    pads_through_evdev = any(k.name == "gamepad" for k in kinds)
    if pad.enabled != "off" and (pad.sdl == "on" or (pad.sdl == "auto"
                                                     and not pads_through_evdev)):
        from daemon.io.sdl_pad import SdlGamepadSource, sdl_available

        if pad.sdl == "on" or sdl_available() is None:  # auto: only when installed
            try:
                out.sdl = SdlGamepadSource(engine.post, engine.source_lost, pad)
                out.sdl.start()  # SDL starts on its thread; events wait in the engine's queue
            except GamepadUnavailable as exc:
                if pad.sdl == "on":
                    raise UserError(f"gamepad.sdl: {exc}") from None
                log.info("no SDL controllers: %s", exc)
                out.sdl = None
    return out


def _real_names(names: list[str], appeared: set[str]) -> dict[str, str]:
    """The full names JACK gave Genie's own ports, where it changed them (a taken client name gets
    a suffix: a second Genie's "Genie in" is "Genie in-01:Genie in"); one warning each."""
    from daemon.io.jack import given_name

    real = {}
    for name in names:
        given = given_name(name, appeared)
        if given and given != f"{name}:{name}":
            real[name] = given
            log.warning("another program already has a port %r (another Genie?): this Genie's is %r; "
                        "connect to that name, or give each Genie its own port names (midi.input_port, "
                        "the outputs)", name, given)
    return real


def _differs_in_ports(old: Config, new: Config) -> str:
    """What a reload cannot change without closing the ports (empty when nothing)."""
    if old.outputs() != new.outputs():
        return f"the output ports ({', '.join(old.outputs())} -> {', '.join(new.outputs())})"
    if old.midi != new.midi:
        return "the [midi] settings"
    return ""


def _reload(current: list[Config], reread, engine, core) -> None:
    """SIGHUP, on a thread of its own: read the config again, start and warm the new processors
    while the old ones play on, then hand them to the engine thread. Any error keeps the running
    setup and is one log line."""
    from daemon.config import ConfigError
    from daemon.processor import ProcessorError
    from daemon.session import build_slots

    try:
        new = reread()
        why = _differs_in_ports(current[0], new)
        if why:
            raise ConfigError(f"{why} changed: a reload keeps the ports open; restart Genie for that")
        slots = build_slots(new, host=core.host)
    except (ConfigError, ProcessorError, OSError, ValueError) as exc:
        log.error("reload refused: %s; Genie plays on as it was", exc)
        return
    current[0] = new
    engine.post_reload(new, slots)


def _run(cfg: Config, api: str, stack: ExitStack, evdev_fifo_dir: str | None = None,
         force: bool = False, reread=None) -> None:
    from daemon.engine import Engine
    from daemon.events import Counters
    from daemon.sdnotify import Notifier
    from daemon.session import build_core
    from daemon.workers import ThreadedWorkers

    send_ahead_ms = _send_ahead_ms(cfg, api)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    counters = Counters()
    core = build_core(cfg, ThreadedWorkers(counters=counters), counters=counters,
                      send_ahead_ms=send_ahead_ms)

    lister = None  # JACK: which ports appear while Genie opens its own (their real names)
    if api == "jack":
        from daemon.io.jack import PortLister

        lister = PortLister.open()
        if lister is not None:
            stack.callback(lister.close)
    before = lister.ports() if lister else set()
    inputs = []  # each port is closed on every way out, also when a later one fails to open
    rtmidi_queue = max(8192, 8 * cfg.midi.queue_limit)
    wanted = [(cfg.midi.input_port, True)] if cfg.midi.input_port else []
    for name, virtual in wanted + [(p, False) for p in cfg.midi.inputs]:
        try:
            inputs.append(MidiInput.open(api, name, virtual=virtual, queue_limit=rtmidi_queue))
        except PortError:
            if virtual:
                raise
            # at a gig the controller may be plugged in after Genie starts: read it when it appears
            log.warning("MIDI input %r is not there yet; Genie reads it as soon as it appears", name)
            inputs.append(MidiInput.waiting(api, name, queue_limit=rtmidi_queue))
        stack.callback(inputs[-1].close)
    outputs = {}
    for name in cfg.outputs():
        outputs[name] = MidiOutput.open(api, name, cfg.midi.connect)
        stack.callback(outputs[name].close)
    own = [p.name for p in inputs if p.name == cfg.midi.input_port] + list(outputs)
    real = _real_names(own, lister.ports() - before) if lister else {}
    if lister:
        lister.close()

    recorder = None
    record_failed: list = []  # a take not saved whole: exit 1 (after the stack closed it)
    stack.callback(lambda: sys.exit(1) if record_failed else None)
    if cfg.record.path:
        from daemon.io.recorder import Recorder, journal_path_for, recover, take_path

        left = journal_path_for(cfg.record.path)
        if left.is_file():  # a crash left a take behind (under systemd: restarted with the same path)
            try:
                stats = recover(left, take_path(Path(cfg.record.path).with_stem(
                    Path(cfg.record.path).stem + "-recovered"), journal_free=False))
                left.unlink()
                log.warning("a recording a crash left behind was recovered (%d messages) before this one",
                            stats.events)
            except (OSError, ValueError) as exc:
                log.error("a journal of an earlier take is in the way and could not be recovered: %s", exc)
        try:
            path = take_path(cfg.record.path, force=force)
            recorder = Recorder(path, cfg.record.flush_interval_s)
        except (OSError, ValueError) as exc:
            raise UserError(f"--record: {exc}") from None
        log.info("recording to %s", path)
        recorder.start()
        stack.callback(_close_recorder, recorder, record_failed)

    core.record = recorder.record if recorder else None
    engine = Engine(cfg, core, inputs, outputs)

    from daemon.control import ControlError, claim

    try:
        pidfile = claim(cfg.midi.client_name)
    except (ControlError, OSError) as exc:
        raise UserError(f"control file: {exc}") from None
    stack.callback(lambda: pidfile.unlink(missing_ok=True))

    from daemon.monitor import MonitorFeed, socket_path

    try:  # what `genie monitor` reads
        feed = MonitorFeed(socket_path(cfg.midi.client_name, make=True))
        feed.start()
    except (ControlError, OSError) as exc:
        log.warning("genie monitor cannot watch this daemon: %s", exc)
    else:
        engine.monitor = feed
        stack.callback(feed.close)

    notifier = Notifier()
    engine.notifier = notifier
    stack.callback(notifier.close)
    signal.signal(signal.SIGTERM, lambda *_: engine.request_stop())
    signal.signal(signal.SIGINT, lambda *_: engine.request_stop())
    if hasattr(signal, "SIGUSR1"):
        signal.signal(signal.SIGUSR1, lambda *_: engine.request_panic())
    if hasattr(signal, "SIGHUP") and reread is not None:
        current, one_at_a_time = [cfg], threading.Lock()

        def reload_now() -> None:
            with one_at_a_time:
                _reload(current, reread, engine, core)
                notifier.ready()

        def on_hup(*_) -> None:
            log.info("reloading the configuration and the models (SIGHUP)")
            notifier.reloading()
            threading.Thread(target=reload_now, name="genie-reload", daemon=True).start()

        signal.signal(signal.SIGHUP, on_hup)

    inputs_ = _open_inputs(cfg, engine, evdev_fifo_dir)
    _say_deaf_processors(cfg, core, inputs)

    from daemon import runtime

    if "torch" in sys.modules:  # a processor loaded a model: one intra-op thread, no oversubscription
        runtime.configure_threads()
    runtime.freeze_gc()  # start-up objects are never collected again: shorter GC pauses
    engine.start()
    inputs_.start()
    log.info("ready: %s -> [%s] -> %s (api %s, send-ahead %.2f ms)",
             ", ".join(real.get(p.name, p.name) for p in inputs) or "keyboard",
             ", ".join(s.label for s in core.slots), ", ".join(real.get(o, o) for o in outputs),
             api, send_ahead_ms)
    notifier.ready(f"playing {', '.join(s.label for s in core.slots)} on {', '.join(outputs)}")
    try:
        engine.wait()
    finally:
        notifier.stopping()
        inputs_.stop()  # posts the releases of held buttons while the engine still runs
        engine.stop()  # the engine thread sends note-offs, sustain off, all-notes-off first
        counters = engine.counters.values
        from daemon.events import in_words

        log.info("stopped%s", (f": {in_words(counters)}  [" + ", ".join(
            f"{k}={v}" for k, v in sorted(counters.items())) + "]") if counters else "")
    if engine.exit_code:
        sys.exit(engine.exit_code)
