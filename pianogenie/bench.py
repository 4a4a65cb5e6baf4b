"""``genie bench pianogenie``: the decoder step and the press path, in process.

1. The exported decoder step alone (one intra-op thread): median and p99 of one
   ``step(button, prev_key, dt, h, c)`` call, through ``daemon.runtime`` as the processor calls it.
2. The processor's press path, in process: ``on_event`` for a press, which plays from a ready
   row (the 8 next-note distributions computed after the previous note) and so runs no model.

Both are timed on each runtime installed: TorchScript (``.pt``) and ONNX Runtime (``.onnx``).

Press-to-note through real JACK ports is the daemon's benchmark for any processor:
``genie bench controllers --processor pianogenie`` (target: p99 at most 1 ms above the thru floor).
"""

from __future__ import annotations

import json
import time

import click

from modelkit.timing import percentiles as _percentiles


def _decoder_file():
    from daemon.processor import package_file
    from pianogenie.processor import PianoGenieProcessor

    return package_file(PianoGenieProcessor, PianoGenieProcessor.model_files[0])


def time_decoder_step(n: int = 2000, weights=None) -> dict[str, float]:
    """Median and p99 of one call of the shipped decoder step (either format: ``weights`` names the
    file), one thread, numpy in and out as the processor calls it."""
    import numpy as np

    from daemon import runtime

    model = runtime.load_model(weights or _decoder_file())
    if model.format == "torchscript":
        runtime.configure_threads()
    step = model.function()
    h = c = np.zeros((int(model.attr("num_layers")), 1, int(model.attr("hidden"))), np.float32)
    args = (np.array([3]), np.array([40]), np.array([5]))
    runtime.warm_up(lambda: step(*args, h, c), 50)
    out = []
    for i in range(n):
        t0 = time.perf_counter_ns()
        _, h, c = step(np.array([i % 8]), np.array([40 + i % 12]), np.array([i % 33]), h, c)
        out.append(time.perf_counter_ns() - t0)
    return _percentiles(out)


def time_press_path(n: int = 1000, weights=None) -> dict:
    """``on_event`` for presses (ready rows refreshed on idle, as the engine does between notes)."""
    from daemon.events import ButtonEvent
    from daemon.processor import Context
    from pianogenie.processor import PianoGenieProcessor

    proc = PianoGenieProcessor()
    proc.start(Context("pianogenie", {"weights": str(weights)} if weights else {}, seed=0))
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
    """Decoder step and press path in process, on each runtime installed (TorchScript, ONNX);
    through JACK: genie bench controllers -p pianogenie."""
    from daemon import runtime

    result: dict = {"benchmark": "pianogenie", "runtimes": {}}
    for fmt, path in runtime.formats_of(_decoder_file()).items():
        result["runtimes"][fmt] = {"weights": str(path), "decoder_step_ms": time_decoder_step(2 * n, path),
                                   "press_path_ms": time_press_path(n, path)}
    if as_json:
        click.echo(json.dumps(result, indent=1, default=float))
        return
    for fmt, r in result["runtimes"].items():
        step, press = r["decoder_step_ms"], r["press_path_ms"]
        click.echo(f"{fmt}: decoder step (1 thread): p50 {step['p50']:.3f} ms, p99 {step['p99']:.3f} ms, "
                   f"max {step['max']:.3f} ms (n={step['n']})")
        p, q = press["press"], press["idle_refresh"]
        click.echo(f"{fmt}: press path (on_event, ready rows): p50 {p['p50']:.3f} ms, p99 {p['p99']:.3f} ms; "
                   f"refresh between presses p50 {q['p50']:.3f} ms, p99 {q['p99']:.3f} ms; "
                   f"presses without a ready row: {press['presses_without_ready_row']}")
    click.echo("press-to-note through JACK against the thru floor: "
               "genie bench controllers --processor pianogenie")
