"""``genie bench clock --processor NAME``: a clocked processor's notes against their due times,
through real JACK ports, beside the transport's floor.

A probe client is the DAW: a beat of MIDI clock, Start, then ``bars`` bars of clock at ``bpm``
into ``genie run`` (the processor with ``clock = true``), listening to its output. The same clock,
at the times it was sent, is then played offline through the same processor, config and seed
(``genie play``'s engine): that says which note is due when. Each note that came out is compared
with its due time:

- *lag*: arrival minus due time. Its median is constant latency (the clock's hop in, the notes'
  hop out, Genie's send-ahead) that ``clock_offset_ms`` makes up for.
- *jitter*: |lag - median lag|, how unevenly the notes land; this is the figure the target is on.

The floor: the probe sends notes itself at the same due times straight to its own listener (one
JACK hop, no Genie), and its jitter is measured the same way. Target: Genie's p99 jitter at most
0.5 ms above the floor's. The Start's own downbeat (placed when the first clock arrives) is left
out of both.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from daemon.bench.latency import summarize
from daemon.events import CLOCK, NOTE_ON, START, STOP, MidiEvent, is_note_on, now_ns

SERVER_NAME = "genie-bench-clock"
PROBE_NAME = "genie-bench-daw"
TARGET_MS = 0.5
FLOOR_NOTE = (NOTE_ON, 60, 1)


def _genie_config(workdir: Path, processor: str) -> Path:
    path = workdir / "clocked.toml"
    path.write_text(f'[midi]\napi = "jack"\nclient_name = "Genie bench"\necho_window_ms = 0\n\n'
                    f'[keyboard]\nenabled = "off"\n\n[gamepad]\nenabled = "off"\n\n'
                    f'[[processor]]\nname = "{processor}"\nclock = true\n')
    return path


def _sleep_until(t: int) -> None:
    while (left := t - now_ns()) > 0:
        time.sleep(min(left / 1e9, 0.002) if left > 3_000_000 else 0)


def play_clock(probe, bpm: float, bars: int, progress: Callable[[int], None] | None = None
               ) -> list[tuple[int, tuple[int, ...]]]:
    """A beat of clock, Start, ``bars`` bars of clock, Stop: (send time, message) of each."""
    tick_ns = 60e9 / bpm / 24
    t0 = now_ns() + 50_000_000
    sent = []
    for i in range(-24, bars * 96):
        _sleep_until(t0 + round((i + 24) * tick_ns))
        if i == 0:
            sent.append((probe.send((START,)), (START,)))
        sent.append((probe.send((CLOCK,)), (CLOCK,)))
        if progress and i % 24 == 0:
            progress(24)
    sent.append((probe.send((STOP,)), (STOP,)))
    return sent


def due_times(config: Path, sent: list[tuple[int, tuple[int, ...]]]) -> list[tuple[int, tuple[int, ...]]]:
    """The processor's note-ons and their due times for this clock, offline (same config, seed)."""
    from daemon.config import load_config
    from daemon.offline import _drive, offline_config
    from daemon.session import build_core
    from daemon.workers import SteppedWorkers

    cfg = offline_config(load_config(str(config)), None, False, None)
    t0 = sent[0][0]
    clock = [0]
    out: list[tuple[int, tuple[int, ...]]] = []
    core = build_core(cfg, SteppedWorkers(), now_ns=lambda: clock[0],
                      record=lambda d, t, port, msg: out.append((t + t0, tuple(msg))) if d == "out" else None)
    _drive(core, [MidiEvent(t - t0, "daw", m) for t, m in sent], clock)
    return [(t, m) for t, m in out if is_note_on(m)]


def _collect(probe, quiet_s: float = 1.0) -> list[tuple[int, tuple[int, ...]]]:
    got = []
    while True:
        more = probe.expect(1, quiet_s)
        if not more:
            return got
        got += more


def _jitter(lags: list[int]) -> dict:
    med = sorted(lags)[len(lags) // 2] if lags else 0
    return {"median_lag_ms": med / 1e6, **summarize([abs(x - med) / 1e6 for x in lags])}


def run_clocked(processor: str, bpm: float = 120.0, bars: int = 16, period: int = 64, rate: int = 48000,
                repeats: int = 2, progress: Callable[[int], None] | None = None,
                status: Callable[[str], None] | None = None) -> dict:
    """Run the benchmark on a private JACK server; returns the figures as a plain dict."""
    from daemon.io.jack import DummyServer, server_info
    from daemon.rigs.loopback import GenieProcess, PortClient
    from daemon.workers import realtime_allowed

    say = status or (lambda msg: None)
    realtime = realtime_allowed()
    result: dict = {"benchmark": "clock", "processor": processor, "bpm": bpm, "bars": bars, "runs": []}
    with tempfile.TemporaryDirectory(prefix="genie-bench-") as tmp, contextlib.ExitStack() as stack:
        server = DummyServer(name=SERVER_NAME, period=period, rate=rate, realtime=realtime)
        say(f"starting JACK dummy server {SERVER_NAME!r} ({period} frames at {rate} Hz)")
        server.start()
        stack.callback(server.stop)
        info = server_info(SERVER_NAME)
        result["server"] = {"period_frames": info.buffer_frames if info else period,
                            "rate": info.sample_rate if info else rate, "realtime": realtime}
        config = _genie_config(Path(tmp), processor)
        probe = PortClient(PROBE_NAME, target_in=None, target_out=None)
        stack.callback(probe.close)
        floor_client = PortClient(f"{PROBE_NAME}-floor", target_in=f"{PROBE_NAME} listen:listen",
                                  target_out=None)
        stack.callback(floor_client.close)
        lags, floor_lags, mismatched = [], [], 0
        for r in range(repeats):
            # a fresh daemon each run: the offline replay starts from the same state
            say(f"run {r + 1} of {repeats}: genie run with {processor}, {bars} bars at {bpm:g} BPM")
            genie = GenieProcess([], config=str(config)).start()
            from daemon.bench.latency import jack_connect
            from daemon.io.jack import wait_connected

            wires = [(f"{PROBE_NAME} play:play", "Genie in:Genie in"),
                     ("Genie out:Genie out", f"{PROBE_NAME} listen:listen")]
            for src, dst in wires:
                jack_connect(src, dst)
                wait_connected(src, dst)
            _collect(probe, 0.3)  # what is left of the last run's floor
            try:
                sent = play_clock(probe, bpm, bars, progress)
                live = [(t, m) for t, m in _collect(probe) if is_note_on(m) and m != FLOOR_NOTE]
            finally:
                genie.stop()
            due = due_times(config, sent)
            start = next(t for t, m in sent if m == (START,))
            skip = start + 60e9 / bpm / 4  # the Start's downbeat: placed at the first clock
            mismatched += sum(a[1] != d[1] for a, d in zip(live, due)) + abs(len(live) - len(due))
            run_lags = [a - d for (a, am), (d, dm) in zip(live, due) if am == dm and d > skip]
            lags += run_lags
            # the floor: the same due times, sent by a plain client straight to the listener
            shift = now_ns() + 200_000_000 - due[0][0]
            run_floor = []
            for d, _ in due:
                _sleep_until(d + shift)
                floor_client.send(FLOOR_NOTE)
                run_floor.append(d + shift)
            arrivals = [t for t, m in _collect(probe, 0.5) if is_note_on(m)]
            floor_lags += [a - d for a, d in zip(arrivals, run_floor) if d - shift > skip]
            result["runs"].append({"notes": len(live), "due": len(due), "lag": _jitter(run_lags),
                                   "floor": _jitter(floor_lags[-len(run_floor):])})
        result["notes_mismatched"] = mismatched
        result["jitter"] = _jitter(lags)
        result["floor_jitter"] = _jitter(floor_lags)
        result["p99_minus_floor_ms"] = result["jitter"]["p99"] - result["floor_jitter"]["p99"]
        result["target_ms"] = TARGET_MS
        result["pass"] = bool(mismatched == 0 and result["p99_minus_floor_ms"] <= TARGET_MS)
    return result


def format_clocked(r: dict) -> str:
    s = r["server"]
    j, f = r["jitter"], r["floor_jitter"]
    lines = [
        f"genie bench clock: {r['processor']} at {r['bpm']:g} BPM, {r['bars']} bars x {len(r['runs'])} runs; "
        f"JACK dummy server, {s['period_frames']} frames at {s['rate']} Hz"
        f"{' (real-time)' if s['realtime'] else ''}",
        f"notes: {sum(x['notes'] for x in r['runs'])} played, {r['notes_mismatched']} not the notes due",
        "",
        f"{'(ms)':<32}{'median lag':>11}{'jitter p50':>12}{'p99':>8}{'max':>8}",
        f"{'genie run -p ' + r['processor']:<32}{j['median_lag_ms']:11.3f}{j['p50']:12.3f}{j['p99']:8.3f}{j['max']:8.3f}",
        f"{'floor (client -> client)':<32}{f['median_lag_ms']:11.3f}{f['p50']:12.3f}{f['p99']:8.3f}{f['max']:8.3f}",
        "",
        f"jitter p99 - floor: {r['p99_minus_floor_ms']:+.3f} ms; target <= {r['target_ms']} ms: "
        f"{'PASS' if r['pass'] else 'FAIL'} (the median lag is constant: clock_offset_ms makes up for it)",
    ]
    return "\n".join(lines)
