"""``genie bench pianogenie``: the decoder step and the press path, in process.

1. The exported decoder step alone (one intra-op thread): median and p99 of one
   ``step(button, prev_key, dt, h, c)`` call.
2. The processor's press path, in process: ``on_event`` for a press, which plays from a ready
   row (the 8 next-note distributions computed after the previous note) and so runs no model.

Press-to-note through real JACK ports is the daemon's benchmark for any processor:
``genie bench controllers --processor pianogenie`` (target: p99 at most 1 ms above the thru floor).
"""

from __future__ import annotations

import json
import time

import click

from modelkit.timing import percentiles as _percentiles


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
              help="Presses timed (and decoder steps x2).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the figures.")
def bench_cmd(n: int, as_json: bool) -> None:
    """Decoder step and press path in process (through JACK: genie bench controllers -p pianogenie)."""
    step = time_decoder_step(2 * n)
    press = time_press_path(n)
    result = {"benchmark": "pianogenie", "decoder_step_ms": step, "press_path_ms": press}
    if as_json:
        click.echo(json.dumps(result, indent=1, default=float))
        return
    click.echo(f"decoder step (1 thread): p50 {step['p50']:.3f} ms, p99 {step['p99']:.3f} ms, "
               f"max {step['max']:.3f} ms (n={step['n']})")
    p, r = press["press"], press["idle_refresh"]
    click.echo(f"press path (on_event, ready rows): p50 {p['p50']:.3f} ms, p99 {p['p99']:.3f} ms; "
               f"refresh between presses p50 {r['p50']:.3f} ms, p99 {r['p99']:.3f} ms; "
               f"presses without a ready row: {press['presses_without_ready_row']}")
    click.echo("press-to-note through JACK against the thru floor: "
               "genie bench controllers --processor pianogenie")
