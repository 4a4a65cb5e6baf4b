"""``genie bench answer --processor NAME``: from the moment the musician asks for an answer to the
first note of it, through real JACK ports.

A probe plays a short phrase into ``genie run`` with the processor, waits, then sends the trigger
(a control change the processor answers, e.g. musiclm's ``answer_cc``) and times the first
note-on that comes back; then it plays a note, which stops the answer, and waits for silence
before the next round. The processor's options come from ``--options`` (as inside a TOML inline
table), so the bench knows no model. Target: the first note within 50 ms of the trigger.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from daemon.bench.latency import summarize
from daemon.events import is_note_on, now_ns

SERVER_NAME = "genie-bench-answer"
PROBE_NAME = "genie-bench-player"
TARGET_MS = 50.0
PHRASE = (60, 64, 67, 72, 67, 64)


def _config(workdir: Path, processor: str, options: str) -> Path:
    path = workdir / "answer.toml"
    path.write_text(f'[midi]\napi = "jack"\nclient_name = "Genie bench"\necho_window_ms = 0\n\n'
                    f'[keyboard]\nenabled = "off"\n\n[gamepad]\nenabled = "off"\n\n'
                    f'[[processor]]\nname = "{processor}"\nbuttons = "none"\n'
                    f'options = {{ {options} }}\n')
    return path


def _quiet(probe, quiet_s: float, limit_s: float = 10.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and probe.expect(1, quiet_s):
        pass


def run_answer(processor: str, options: str = "", trigger_cc: int = 20, n: int = 20, period: int = 64,
               rate: int = 48000, progress: Callable[[int], None] | None = None,
               status: Callable[[str], None] | None = None) -> dict:
    from daemon.io.jack import DummyServer, server_info
    from daemon.rigs.loopback import GenieProcess, PortClient
    from daemon.workers import realtime_allowed

    say = status or (lambda msg: None)
    firsts, missed = [], 0
    with tempfile.TemporaryDirectory(prefix="genie-bench-") as tmp, contextlib.ExitStack() as stack:
        server = DummyServer(name=SERVER_NAME, period=period, rate=rate, realtime=realtime_allowed())
        say(f"starting JACK dummy server {SERVER_NAME!r} ({period} frames at {rate} Hz)")
        server.start()
        stack.callback(server.stop)
        info = server_info(SERVER_NAME)
        say(f"starting genie run with {processor}")
        genie = GenieProcess([], config=str(_config(Path(tmp), processor, options))).start()
        stack.callback(genie.stop)
        probe = PortClient(PROBE_NAME)
        stack.callback(probe.close)
        for i in range(n):
            for p in PHRASE:
                probe.send((0x90, p + i % 5, 80))
                time.sleep(0.06)
                probe.send((0x80, p + i % 5, 0))
                time.sleep(0.02)
            time.sleep(0.3)  # the model has heard it all
            _quiet(probe, 0.05, 1.0)
            t0 = probe.send((0xB0, trigger_cc, 127))
            first = None
            deadline = time.monotonic() + 2.0
            while first is None and time.monotonic() < deadline:
                for t, msg in probe.expect(1, 0.05):
                    if is_note_on(msg):
                        first = t
            probe.send((0xB0, trigger_cc, 0))
            if first is None:
                missed += 1
            else:
                firsts.append((first - t0) / 1e6)
            probe.send((0x90, 40, 60))  # play again: the answer stops
            probe.send((0x80, 40, 0))
            _quiet(probe, 0.3)
            if progress:
                progress(1)
        period_ms = (info.period_ns / 1e6) if info else period / rate * 1e3
    stats = summarize(firsts)
    return {"benchmark": "answer", "processor": processor, "options": options, "n": n,
            "period_ms": period_ms, "first_note_ms": stats, "missed": missed, "target_ms": TARGET_MS,
            "pass": bool(firsts and missed == 0 and stats["p99"] <= TARGET_MS), "now_ns": now_ns()}


def format_answer(r: dict) -> str:
    f = r["first_note_ms"]
    return "\n".join([
        f"genie bench answer: {r['processor']} ({r['options'] or 'default options'}); JACK dummy server, "
        f"period {r['period_ms']:.2f} ms; {r['n']} answers",
        f"trigger -> first answered note: p50 {f['p50']:.1f} ms, p99 {f['p99']:.1f} ms, max {f['max']:.1f} ms; "
        f"{r['missed']} without a note within 2 s",
        f"target: first note within {r['target_ms']:g} ms: {'PASS' if r['pass'] else 'FAIL'}",
    ])
