"""``genie bench pianogenie``: the decoder step, the press path, and press-to-note through JACK.

1. The exported decoder step alone (one intra-op thread): median and p99 of one
   ``step(button, prev_key, dt, h, c)`` call.
2. The processor's press path, in process: ``on_event`` for a press, which plays from a ready
   row (the 8 next-note distributions computed after the previous note) and so runs no model.
3. Press-to-note through real JACK ports: note-button presses into ``genie run -p pianogenie``
   against the ``thru`` floor (a Genie passing notes through) and a minimal rtmidi client, in
   the same run (``daemon.bench.controllers``). Target: p99 at most 1 ms above the thru floor.
"""

from __future__ import annotations

import json
import statistics
import time

import click


def _percentiles(ns: list[int]) -> dict[str, float]:
    ms = sorted(x / 1e6 for x in ns)
    return {"p50": statistics.median(ms), "p99": ms[min(len(ms) - 1, int(0.99 * len(ms)))],
            "max": ms[-1], "n": len(ms)}


def time_decoder_step(n: int = 2000) -> dict[str, float]:
    """Median and p99 of one call of the shipped decoder step, one thread."""
    import torch

    from daemon import runtime
    from daemon.processor import package_file
    from pianogenie.processor import PianoGenieProcessor

    runtime.configure_threads()
    step = runtime.load_model(package_file(PianoGenieProcessor, PianoGenieProcessor.model_files[0]))
    h, c = step.init_state(1)
    args = (torch.tensor([3]), torch.tensor([40]), torch.tensor([5]))
    runtime.warm_up(lambda: step(*args, h, c), 50)
    out = []
    with torch.inference_mode():
        for i in range(n):
            t0 = time.perf_counter_ns()
            _, h, c = step(torch.tensor([i % 8]), torch.tensor([40 + i % 12]),
                           torch.tensor([i % 33]), h, c)
            out.append(time.perf_counter_ns() - t0)
    return _percentiles(out)


def time_press_path(n: int = 1000) -> dict:
    """``on_event`` for presses (ready rows refreshed on idle, as the engine does between notes)."""
    from daemon.events import ButtonEvent
    from daemon.processor import Context
    from pianogenie.processor import PianoGenieProcessor

    proc = PianoGenieProcessor()
    proc.start(Context("pianogenie", {}, seed=0))
    press, idle = [], []
    t = 1_000_000_000
    for i in range(n):
        t += 150_000_000  # a press every 150 ms
        t0 = time.perf_counter_ns()
        list(proc.on_idle(t - 1_000_000))  # between presses: rows made ready (off the press path)
        idle.append(time.perf_counter_ns() - t0)
        t0 = time.perf_counter_ns()
        list(proc.on_event(ButtonEvent(t, "bench", i % 8, True, 90)))
        press.append(time.perf_counter_ns() - t0)
        list(proc.on_event(ButtonEvent(t + 50_000_000, "bench", i % 8, False)))
    return {"press": _percentiles(press), "idle_refresh": _percentiles(idle),
            "presses_without_ready_row": proc.misses}


@click.command("pianogenie")
@click.option("-n", "--count", "n", default=1000, show_default=True, type=click.IntRange(1),
              help="Presses timed per JACK run (and decoder steps x2).")
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(1))
@click.option("--period", default=64, show_default=True, type=click.IntRange(16, 4096),
              help="JACK period in frames (64 at 48 kHz = 1.33 ms).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the figures.")
def bench_cmd(n: int, repeats: int, period: int, as_json: bool) -> None:
    """Decoder step, press path, and press-to-note latency against the thru floor."""
    from daemon.bench.controllers import format_controllers, run_controllers

    step = time_decoder_step(2 * n)
    press = time_press_path(n)
    jack = run_controllers(period=period, n=n, repeats=repeats, model="pianogenie")
    vs = jack["minus_thru"]["model"]
    result = {"benchmark": "pianogenie", "decoder_step_ms": step, "press_path_ms": press,
              "press_to_note": jack, "p99_minus_thru_ms": vs["p99"],
              "target_ms": 1.0, "pass": bool(vs["p99"] <= 1.0)}
    if as_json:
        click.echo(json.dumps(result, indent=1, default=float))
        return
    click.echo(f"decoder step (1 thread): p50 {step['p50']:.3f} ms, p99 {step['p99']:.3f} ms, "
               f"max {step['max']:.3f} ms (n={step['n']})")
    p, r = press["press"], press["idle_refresh"]
    click.echo(f"press path (on_event, ready rows): p50 {p['p50']:.3f} ms, p99 {p['p99']:.3f} ms; "
               f"refresh between presses p50 {r['p50']:.3f} ms, p99 {r['p99']:.3f} ms; "
               f"presses without a ready row: {press['presses_without_ready_row']}")
    click.echo(format_controllers(jack))
    click.echo(f"pianogenie - thru at p99: {vs['p99']:+.3f} ms (median over repeats); target "
               f"<= 1 ms: {'PASS' if result['pass'] else 'FAIL'}")
