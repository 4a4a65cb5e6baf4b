"""``genie doctor``: check what Genie needs on this machine and say what to fix.

Never imports torch or a processor module: model files are found beside each entry point's module
through its import spec, which does not run the module.
"""

from __future__ import annotations

import importlib.util
import os
import resource
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import click

from daemon.config import KeyboardConfig
from daemon.processor import ENTRY_POINT_GROUP, is_model_file, model_cards

JACK_BUFFER_WARN_FRAMES = 256


@dataclass
class Finding:
    level: str  # ok | warn | fail
    what: str
    fix: str = ""


def check_midi(api_setting: str) -> list[Finding]:
    from daemon.io import jack
    from daemon.io.midi import alsa_usable, compiled_apis

    out = []
    try:
        apis = compiled_apis()
    except ImportError as exc:
        return [Finding("fail", f"python-rtmidi does not import: {exc}", "pip install python-rtmidi")]
    out.append(Finding("ok", f"python-rtmidi APIs: {', '.join(apis) or 'none'}"))
    if "alsa" in apis:
        if alsa_usable():
            out.append(Finding("ok", "ALSA sequencer /dev/snd/seq is usable"))
        elif os.path.exists("/dev/snd/seq"):
            out.append(Finding("warn", "ALSA sequencer exists but is not accessible",
                               "add yourself to the audio group: sudo usermod -aG audio $USER"))
        else:
            out.append(Finding("warn", "no ALSA sequencer (/dev/snd/seq)",
                               "sudo modprobe snd-seq, or use JACK"))
    info = jack.server_info()
    if info is None:
        out.append(Finding("warn", f"no JACK server running (server {jack.server_name()!r})",
                           "fine with ALSA; otherwise start JACK/PipeWire, or run with --headless"))
    else:
        ms = info.period_ns / 1e6
        level = "warn" if info.buffer_frames > JACK_BUFFER_WARN_FRAMES else "ok"
        fix = ("lower the buffer: jack_bufsize 128, or for PipeWire "
               "pw-metadata -n settings 0 clock.force-quantum 128") if level == "warn" else ""
        out.append(Finding(level, f"JACK server: {info.buffer_frames} frames at {info.sample_rate} Hz "
                                  f"= {ms:.2f} ms per cycle (MIDI is placed to within one cycle)", fix))
        if not info.realtime:
            out.append(Finding("warn", jack.NON_REALTIME, "run jackd with -R (qjackctl: Realtime; "
                                                     "PipeWire: the rtkit module), as the audio group"))
    usable = ("alsa" in apis and alsa_usable()) or info is not None or "coremidi" in apis
    if not usable:
        out.append(Finding("fail", "no usable MIDI backend for `genie run`",
                           "load snd-seq, start a JACK server, or use `genie run --headless`"))
    return out


def check_processors() -> list[Finding]:
    out = []
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            spec = importlib.util.find_spec(ep.module)
        except (ImportError, ValueError) as exc:
            out.append(Finding("fail", f"processor {ep.name}: module {ep.module} not found ({exc})",
                               "reinstall the package that provides it"))
            continue
        if spec is None or spec.origin is None:
            out.append(Finding("fail", f"processor {ep.name}: module {ep.module} not found"))
            continue
        weights = Path(spec.origin).parent / "weights"
        if not weights.is_dir():
            out.append(Finding("ok", f"processor {ep.name}: no model files"))
            continue
        artefacts = [p for p in sorted(weights.iterdir()) if is_model_file(p)]
        mine = [p for p in artefacts if p.name.startswith(ep.name)]
        cards = model_cards(weights.parent, ep.name)
        if not mine:
            out.append(Finding("ok", f"processor {ep.name}: no model files"))
            continue
        for card, licence in cards.items():
            out.append(Finding("ok" if licence != "NOT STATED" else "warn",
                               f"processor {ep.name}: {', '.join(p.name for p in mine)} "
                               f"(model card {card.name}; licence: {licence})"))
        if not cards:
            out.append(Finding("warn", f"processor {ep.name}: model files without a model card",
                               f"add {weights}/{ep.name}.md"))
        for art in mine:
            if art.stat().st_size == 0:
                out.append(Finding("fail", f"processor {ep.name}: {art} is empty", "reinstall"))
    return out


def check_runtime() -> list[Finding]:
    """Which runtimes can run the models (found, not imported: importing torch takes seconds)."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for module, dist, what in (("torch", "torch", "TorchScript (.pt, the default)"),
                               ("onnxruntime", "onnxruntime", "ONNX Runtime (.onnx)")):
        if importlib.util.find_spec(module) is not None:
            try:
                found.append(f"{what} via {dist} {version(dist)}")
            except PackageNotFoundError:
                found.append(f"{what} via {dist}")
    if not found:
        return [Finding("warn", "no model runtime: only thru and markov can play",
                        "pip install 'genie-midi[onnx]' (light) or 'genie-midi[torch]'")]
    note = "" if len(found) == 2 else (": the .onnx files play" if "ONNX" in found[0] else "")
    return [Finding("ok", f"models run on {' and '.join(found)}{note}")]


def check_permissions() -> list[Finding]:
    from daemon.workers import realtime_allowed

    soft, _ = resource.getrlimit(resource.RLIMIT_RTPRIO)
    if realtime_allowed():
        return [Finding("ok", f"real-time priority allowed (rtprio {soft}): with a real-time JACK "
                              "server (jackd -R) the engine polls at SCHED_FIFO 1, under JACK")]
    return [Finding("warn", "no real-time priority: with a real-time JACK server the engine polls "
                            "on a timer, and late on a busy machine",
                    "add yourself to the audio group (rtprio in /etc/security/limits.d/audio.conf)")]


def check_service(home: Path | None = None, root: Path = Path("/")) -> list[Finding]:
    """The Genie units installed (``genie service install``) and whether what they run is there."""
    from daemon import service

    found = service.installed(home or Path.home(), root)
    if not found:
        return [Finding("ok", "no Genie service installed (genie service install sets one up)")]
    out = []
    for kind, unit in found.items():
        program = service.exec_start(unit)
        if program and os.access(program, os.X_OK):
            out.append(Finding("ok", f"{kind} service {unit} runs {program}"))
        else:
            out.append(Finding("fail", f"{kind} service {unit} runs {program}, which is not there",
                               f"genie service install --{kind} --force (from the genie to run)"))
        text = unit.read_text(errors="replace")
        if "Type=notify" not in text or "WatchdogSec=" not in text:
            out.append(Finding("warn", f"{unit} is an older unit: no readiness or watchdog",
                               f"genie service install --{kind} --force"))
    return out


def check_gamepads(listen_s: float = 1.0) -> list[Finding]:
    """Game controllers found, their layout and observed report rate; permission problems."""
    from daemon.io.gamepad import probe_controllers

    return [Finding(level, what, fix) for level, what, fix in probe_controllers(listen_s)]


def check_keyboards(keyboard: KeyboardConfig) -> list[Finding]:
    """Whether ``genie run`` reads local keyboards through evdev (not under a desktop session
    unless asked), the keyboards it would read; permission problems."""
    from daemon.io.evdev_keyboard import probe_keyboards

    return [Finding(level, what, fix) for level, what, fix in probe_keyboards(keyboard)]


@click.command()
@click.pass_obj
def doctor(state) -> None:
    """Check MIDI backends, JACK buffer size, model files and licences, permissions, gamepads,
    keyboards."""
    findings: list[Finding] = []
    try:
        cfg = state.config
        findings.append(Finding("ok", f"config: {cfg.path}"))
        api, keyboard = cfg.midi.api, cfg.keyboard
    except Exception as exc:  # doctor reports a bad config instead of stopping at it
        findings.append(Finding("fail", f"{exc}", "fix the config file"))
        api, keyboard = "auto", KeyboardConfig()
    findings += (check_midi(api) + check_processors() + check_runtime() + check_permissions() + check_service()
                 + check_gamepads() + check_keyboards(keyboard))
    marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
    for f in findings:
        click.echo(f"[{marks[f.level]}] {f.what}")
        if f.fix:
            click.echo(f"       fix: {f.fix}")
    failed = sum(f.level == "fail" for f in findings)
    if failed:
        raise click.exceptions.Exit(1)
