"""Controller latency through real JACK ports: a button press to the note on Genie's output.

Measured paths: the **MIDI controller** path and the **gamepad** (evdev) path of one
``genie run -p thru``. A measuring client sends button presses and releases into ``Genie in``
(a MIDI controller) or writes them as kernel input events into a gamepad device the daemon reads
(see below), and times, from each input's own stamp, the note it causes on ``Genie out``.

One private JACK dummy server (``genie-bench-ctl``), one Genie whose buttons are notes 60 62 64 65
and CCs 20-23 (the thru processor plays buttons 0-7 as 60 62 64 65 67 69 71 72) and which reads
one gamepad, and five targets, alternated per repeat:

- ``b``: the rtmidi thru client (``daemon.bench.thru_client``): the floor for Python on rtmidi;
- ``thru``: notes that are no button (36-59), passed through by Genie: the ``thru`` floor;
- ``notes``: note buttons (an 8-key controller): note -> ButtonEvent -> processor -> note;
- ``cc``: CC buttons (pads or knobs sending CCs): CC >= 64 / < 64 -> ButtonEvent -> note;
- ``gamepad``: an Xbox 360 pad's bumpers and face buttons (``BTN_TL``, ``BTN_X``, ``BTN_EAST``,
  ``BTN_TR``: buttons 1, 4, 5, 6), each press or release one kernel report (``EV_KEY``, then
  ``SYN_REPORT``) stamped with CLOCK_MONOTONIC as the kernel stamps it, timed from that stamp:
  report -> the daemon's evdev device loop (layout detection, ``PadParser``, the engine's queue)
  -> processor -> note.

The gamepad is a FIFO device (``daemon.rigs.fifo_input``, through ``genie run``'s hidden
``--evdev-fifo-dir``): this machine has no ``/dev/input``, and no program can make a kernel event
node without uinput rights. Everything from the bytes on is the daemon's real gamepad code; what is
not measured is the kernel's part (USB polling, usually 1-8 ms, and the HID driver), which the
``genie doctor`` report rate covers.

Each run: wait a random time within one JACK period, send, wait for the note (deadline 1 s),
record arrival stamp - send stamp (``time.perf_counter_ns``: on Linux the CLOCK_MONOTONIC the
gamepad events carry), one at a time. A lost reply counts as lost; then every control is released
(untimed) so no button stays held, and the run goes on.
"""

from __future__ import annotations

import contextlib
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from daemon.bench.latency import (
    DEADLINE_S,
    WARMUP,
    ServerLog,
    ThruClient,
    _drain,
    await_reply,
    check_lost,
    classify_xruns,
    jack_connect,
    spread,
    summarize,
)
from daemon.rigs.fifo_input import XBOX_360, FifoWriter

SERVER_NAME = "genie-bench-ctl"
PROBE_NAME = "bench controller"
PATH = ("MIDI controller: button notes and CCs into 'Genie in' of genie run -p thru; gamepad: "
        "kernel input events (struct input_event, stamped on CLOCK_MONOTONIC) from an Xbox 360 "
        "pad the same genie run reads through its evdev device loop (a FIFO device in place of "
        "/dev/input); each to the note on 'Genie out'")
NOTE_BUTTONS = (60, 62, 64, 65)  # buttons 0-3
CC_BUTTONS = (20, 21, 22, 23)  # buttons 4-7
PLAYS = (60, 62, 64, 65, 67, 69, 71, 72)  # what thru plays for buttons 0-7
EV_KEY = 0x01
PAD_BUTTONS = ((0x136, 1), (0x133, 4), (0x131, 5), (0x137, 6))  # (key code, button): TL X B TR
PAD_NODE = "event0"
TARGETS = (
    ("b", "rtmidi thru client (Python floor)"),
    ("thru", "genie run: a note passed through"),
    ("notes", "genie run: note button -> note"),
    ("cc", "genie run: CC button -> note"),
    ("gamepad", "genie run: gamepad button -> note"),
)
LABELS = dict(TARGETS)
MODEL_PORTS = ("Genie model in", "Genie model out")  # the second daemon, when a model is measured
BUSY_PORTS = ("Genie busy in", "Genie busy out")  # the third: the model beside a busy neighbour

Step = tuple[tuple[int, ...], tuple[bool, int]]
"""(message to send, or for the gamepad the (type, code, value) of its input event; (note on?,
pitch) of the reply it causes)."""


def velocity(i: int) -> int:
    """A player's (release) velocities, 64-126, never the same twice in a row. With one velocity, the note
    buttons' fast regular cycle (a press every ~3 ms, each key again every ~22 ms) repeats Genie's
    own output (thru plays a button's note with its velocity) at a steady delay: exactly what the
    echo guard takes for a DAW loop (daemon/echo.py), and it dropped a quarter of the presses."""
    return 64 + (i * 37) % 63


def stream(kind: str) -> Iterator[Step]:
    """Press, release, next control, endlessly; no message repeats within Genie's echo window."""
    i = 0
    while True:
        on = i % 2 == 0
        if kind in ("b", "thru"):
            pitch = 36 + (i // 2) % 24  # 36-59: no button
            yield ((0x90, pitch, velocity(i)) if on else (0x80, pitch, velocity(i))), (on, pitch)
        elif kind == "gamepad":
            code, b = PAD_BUTTONS[(i // 2) % len(PAD_BUTTONS)]
            yield (EV_KEY, code, 1 if on else 0), (on, PLAYS[b])
        elif kind in ("notes", "model", "model_busy"):
            b = (i // 2) % len(NOTE_BUTTONS)
            pitch = NOTE_BUTTONS[b]
            # A model picks its own pitch: any note-on answers a press, any note-off a release.
            answer = PLAYS[b] if kind == "notes" else None
            yield ((0x90, pitch, velocity(i)) if on else (0x80, pitch, velocity(i))), (on, answer)
        else:
            b = (i // 2) % len(CC_BUTTONS)
            yield (0xB0, CC_BUTTONS[b], 127 if on else 0), (on, PLAYS[4 + b])
        i += 1


def releases(kind: str) -> list[tuple[int, ...]]:
    """Messages that let go of every control of a stream (after a lost reply)."""
    if kind == "cc":
        return [(0xB0, cc, 0) for cc in CC_BUTTONS]
    if kind in ("notes", "model", "model_busy"):
        return [(0x80, p, 0) for p in NOTE_BUTTONS]
    if kind == "gamepad":
        return [(EV_KEY, code, 0) for code, _ in PAD_BUTTONS]
    return []


class PadProbe:
    """The measuring client's gamepad: ``send`` writes one report into the pad's FIFO and returns
    the report's own stamp; replies arrive on the listening client's queue."""

    def __init__(self, writer, listen) -> None:
        self.writer = writer
        self.received = listen.received

    def send(self, event: tuple[int, int, int]) -> int:
        return self.writer.send([event])


def reply_key(msg) -> tuple[bool, int] | None:
    if len(msg) != 3 or msg[0] & 0xF0 not in (0x80, 0x90):
        return None
    return (msg[0] & 0xF0 == 0x90 and msg[2] > 0, msg[1])


def answers(msg, key: tuple[bool, int | None]) -> bool:
    """Whether ``msg`` is the reply ``key`` waits for (pitch None: any pitch)."""
    got = reply_key(msg)
    return got is not None and got[0] == key[0] and key[1] in (None, got[1])


def measure(probe, n: int, period_s: float, rng: random.Random, steps: Iterator[Step],
            release: list[tuple[int, ...]], progress: Callable[[int], None] | None = None,
            deadline_s: float = DEADLINE_S) -> tuple[list[int], int, int]:
    """(samples in ns, lost, stray): ``n`` press/release round trips, one at a time."""
    samples: list[int] = []
    lost = stray = in_a_row = 0
    while len(samples) < n:
        msg, key = next(steps)
        time.sleep(rng.uniform(0.0, period_s))
        t0 = probe.send(msg)
        t, skipped = await_reply(probe, t0, lambda got: answers(got, key), deadline_s)
        stray += skipped
        if t is None:
            lost += 1
            in_a_row = check_lost(in_a_row + 1)
            for m in release:  # no button stays held; their replies are drained below
                probe.send(m)
            time.sleep(0.05)
            _drain(probe.received)
            continue
        samples.append(t - t0)
        in_a_row = 0
        if progress is not None and len(samples) % 50 == 0:
            progress(50)
    if progress is not None and n % 50:
        progress(n % 50)
    return samples, lost, stray


def _genie_config(workdir: Path, model: str | None = None, neighbour: str | None = None,
                  neighbour_options: str = "") -> Path:
    """The daemon's config: thru, or ``model`` (on its own ports); with ``neighbour``, a second
    processor in the same daemon that hears the model's notes (a chain) and plays on a port of
    its own, keeping its worker busy while the model's presses are timed."""
    buttons = ", ".join([*map(str, NOTE_BUTTONS), *(f'"cc:{c}"' for c in CC_BUTTONS)])
    tag = f"{model or 'thru'}{'-busy' if neighbour else ''}"
    path = workdir / f"controllers-{tag}.toml"
    names = BUSY_PORTS if neighbour else MODEL_PORTS
    ports = (f'input_port = "{names[0]}"\n', f'output = "{names[1]}"\n') if model else ("", "")
    processor = (f'name = "{model}"\nlabel = "model"\n' if model else
                 f'name = "thru"\noptions = {{ notes = {list(PLAYS)} }}\n')
    if neighbour:
        processor += (f'\n[[processor]]\nname = "{neighbour}"\nlabel = "neighbour"\n'
                      f'inputs = ["model"]\noutput = "Genie neighbour"\n'
                      f'options = {{ {neighbour_options} }}\n')
    # echo_window_ms = 0: the probe is a controller, not a DAW echoing Genie's output
    path.write_text(f'[midi]\napi = "jack"\nclient_name = "Genie bench {tag}"\n'
                    f'echo_window_ms = 0\n{ports[0]}\n[keyboard]\nenabled = "off"\n\n'
                    f'[gamepad]\nenabled = "{"off" if model else "on"}"\nsdl = "off"\n\n'
                    f'[[processor]]\n{ports[1]}buttons = [{buttons}]\n{processor}')
    return path


def run_controllers(period: int = 64, rate: int = 48000, n: int = 1000, repeats: int = 3,
                    seed: int = 0, progress: Callable[[int], None] | None = None,
                    status: Callable[[str], None] | None = None,
                    model: str | None = None, neighbour: str | None = None,
                    neighbour_options: str = "") -> dict:
    """Run the benchmark on a private JACK server; returns the figures as a plain dict.

    With ``model`` (a processor name, e.g. ``pianogenie``), a second daemon runs that processor
    and the target ``model`` times note-button presses through it, against the same floors. With
    ``neighbour`` too, a third daemon runs the model beside that processor (hearing the model's
    notes, its own worker busy), and ``model_busy`` times the same presses there."""
    from daemon.io.jack import DummyServer, server_info
    from daemon.rigs.loopback import GenieProcess, PortClient

    say = status or (lambda msg: None)
    labels = dict(LABELS)
    if model:
        labels["model"] = f"genie run -p {model}: press -> note"
    if model and neighbour:
        labels["model_busy"] = f"  ... beside a busy {neighbour}"
    runs: dict[str, list[dict]] = {key: [] for key in labels}
    samples_ms: dict[str, list[float]] = {key: [] for key in labels}
    with tempfile.TemporaryDirectory(prefix="genie-bench-") as tmp, contextlib.ExitStack() as stack:
        server = DummyServer(name=SERVER_NAME, period=period, rate=rate)
        say(f"starting JACK dummy server {SERVER_NAME!r} ({period} frames at {rate} Hz)")
        server.start()
        stack.callback(server.stop)
        info = server_info(SERVER_NAME)
        period_s = info.buffer_frames / info.sample_rate if info else period / rate
        log = ServerLog(server.log_path)
        say("starting the thru client and genie run")
        thru = ThruClient()
        stack.callback(thru.stop)
        env = {"XDG_STATE_HOME": str(Path(tmp) / "state")}  # no learned map of the user's
        devices = Path(tmp) / "input"  # the daemon's /dev/input
        devices.mkdir()
        pad = FifoWriter.plug(devices, PAD_NODE, XBOX_360)
        stack.callback(pad.unplug)  # after the daemon stopped (the stack unwinds in reverse)
        genie = GenieProcess(["-p", "thru", "--api", "jack", "--evdev-fifo-dir", str(devices)],
                             env=env, config=str(_genie_config(Path(tmp)))).start()
        stack.callback(genie.stop)
        if f"is gamepad:{XBOX_360['name']}" not in genie.log:
            raise RuntimeError(f"genie run did not open the benchmark's gamepad:\n{genie.log}")
        if model:
            say(f"starting genie run -p {model}")
            model_genie = GenieProcess(["-p", model, "--api", "jack"], env=env,
                                       config=str(_genie_config(Path(tmp), model))).start()
            stack.callback(model_genie.stop)
        if model and neighbour:
            say(f"starting genie run -p {model} beside {neighbour}")
            busy_genie = GenieProcess(["--api", "jack"], env=env, config=str(
                _genie_config(Path(tmp), model, neighbour, neighbour_options))).start()
            stack.callback(busy_genie.stop)
        probe = PortClient(PROBE_NAME, target_in=None, target_out=None)
        stack.callback(probe.close)
        play, listen = f"{PROBE_NAME} play:play", f"{PROBE_NAME} listen:listen"
        genie_wires = [(play, "Genie in:Genie in"), ("Genie out:Genie out", listen)]
        probes = {key: probe for key in labels}
        probes["gamepad"] = PadProbe(pad, probe)
        wires = {"b": [(play, thru.play_into), (thru.listen_to, listen)],
                 "thru": genie_wires, "notes": genie_wires, "cc": genie_wires,
                 "gamepad": [("Genie out:Genie out", listen)],
                 "model": [(play, f"{MODEL_PORTS[0]}:{MODEL_PORTS[0]}"),
                           (f"{MODEL_PORTS[1]}:{MODEL_PORTS[1]}", listen)],
                 "model_busy": [(play, f"{BUSY_PORTS[0]}:{BUSY_PORTS[0]}"),
                                (f"{BUSY_PORTS[1]}:{BUSY_PORTS[1]}", listen)]}
        rng = random.Random(seed)
        streams = {key: stream(key) for key in labels}
        log.skip()
        for repeat in range(repeats):
            for key in labels:
                say(f"repeat {repeat + 1}/{repeats}: {labels[key]}")
                for src, dst in wires[key]:
                    jack_connect(src, dst)
                try:
                    _drain(probe.received)
                    try:
                        measure(probes[key], WARMUP, period_s, rng, streams[key], releases(key))
                        log.read()
                        got, lost, stray = measure(probes[key], n, period_s, rng, streams[key],
                                                   releases(key), progress)
                    except RuntimeError as exc:
                        raise RuntimeError(f"run {repeat + 1} of {key}: {exc}; see "
                                           f"{server.log_path}") from None
                    xruns = classify_xruns(log.read())
                finally:
                    for src, dst in wires[key]:
                        with contextlib.suppress(RuntimeError, OSError):
                            jack_connect(src, dst, connect=False)
                ms = [s / 1e6 for s in got]
                samples_ms[key].extend(ms)
                runs[key].append({"repeat": repeat + 1, **summarize(ms), "lost": lost,
                                  "stray": stray, "xruns": xruns})
    return report(runs, samples_ms, n=n, repeats=repeats, seed=seed, labels=labels,
                  server={"name": SERVER_NAME,
                          "period_frames": info.buffer_frames if info else period,
                          "rate": info.sample_rate if info else rate,
                          "period_ms": period_s * 1e3})


def report(runs: dict[str, list[dict]], samples_ms: dict[str, list[float]], *, n: int,
           repeats: int, seed: int, server: dict, labels: dict[str, str] | None = None) -> dict:
    """Pool the runs; each button path against ``thru`` (and ``b``), paired per repeat (pure)."""
    labels = labels or LABELS
    targets = {key: {"label": labels[key], **summarize(samples_ms[key]),
                     "lost": sum(r["lost"] for r in runs[key]),
                     "spread": spread(runs[key]) if runs[key] else {},
                     "xruns_per_run": [r["xruns"]["total"] for r in runs[key]],
                     "runs": runs[key]}
               for key in runs}

    def versus(key: str, floor: str) -> dict:
        pairs = list(zip(runs[key], runs[floor]))
        out = {}
        for fig in ("p50", "p99"):
            per = [r[fig] - f[fig] for r, f in pairs]
            out[fig] = statistics.median(per) if per else float("nan")
            out[f"{fig}_per_repeat"] = per
        return out

    return {
        "benchmark": "controllers",
        "path": PATH,
        "units": ("ms, from the input's own stamp (a MIDI message's send stamp, a gamepad "
                  "event's CLOCK_MONOTONIC time stamp) to the note's arrival"),
        "server": server,
        "n": n,
        "repeats": repeats,
        "seed": seed,
        "targets": targets,
        "minus_thru": {key: versus(key, "thru") for key in ("notes", "cc", "gamepad", "model")
                       if key in runs},
        "busy_minus_idle": versus("model_busy", "model") if "model_busy" in runs else None,
        "minus_b": {key: versus(key, "b") for key in ("thru", "notes", "cc", "gamepad", "model")
                    if key in runs},
        "minus_is": "median over repeats of (run - the same repeat's floor run)",
    }


def format_controllers(r: dict) -> str:
    s = r["server"]
    lines = [
        f"genie bench controllers: JACK dummy server {s['name']!r}, {s['period_frames']} frames "
        f"at {s['rate']} Hz (period {s['period_ms']:.3f} ms); n={r['n']} per run, "
        f"{r['repeats']} repeat(s)",
        f"path measured: {r['path']}",
        "",
        f"{'target':34} {'p50':>6} {'p99':>6} {'max':>6}  {'lost':>4}  xruns per run",
    ]
    for t in r["targets"].values():
        lines.append(f"{t['label']:34} {t['p50']:6.3f} {t['p99']:6.3f} {t['max']:6.3f}  "
                     f"{t['lost']:4d}  {' '.join(map(str, t['xruns_per_run']))}")
    lines.append("")
    labels = {key: t["label"] for key, t in r["targets"].items()}
    for key, v in r["minus_thru"].items():
        lines.append(f"{labels[key]} - thru: p50 {v['p50']:+.3f} ms, p99 {v['p99']:+.3f} ms "
                     f"(median over repeats)")
    for key, v in r["minus_b"].items():
        lines.append(f"{labels[key]} - b (Python floor): p50 {v['p50']:+.3f} ms, p99 "
                     f"{v['p99']:+.3f} ms")
    v = r.get("busy_minus_idle")
    if v:
        lines.append(f"model beside a busy neighbour - model alone: p50 {v['p50']:+.3f} ms, p99 "
                     f"{v['p99']:+.3f} ms (median over repeats); target p99 <= 0.5 ms: "
                     f"{'PASS' if v['p99'] <= 0.5 else 'FAIL'}")
    return "\n".join(lines)
