"""``genie bench musiclm``: tokens per second of the exported step on one thread.

At each context position p: *cached* primes the KV cache with p tokens, then times steps from
there (the live path: one token reads the cache); *uncached* re-runs the model on the whole
context window (the last min(p, L) tokens) for each new token, as the paper's code and the
PyTorch ports decode (TorchScript only). The cached path is timed on each runtime installed
(TorchScript, ONNX Runtime), through ``daemon.runtime`` as the processor calls the model. Targets (issue 10): >= 500 tokens/s cached for the shipped model, flat
within 1.5x from 64 to 1024. The time from the trigger to the first answered note through JACK
is ``genie bench answer -p musiclm`` (``daemon.bench.answer``).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from daemon import runtime
from modelkit.timing import load_words, machine_load, percentiles

WEIGHTS = Path(__file__).resolve().parent / "weights" / "musiclm_maestro.pt"


def _cached_ms(model: runtime.Model, stream: np.ndarray, p: int, tokens: int) -> dict:
    """Prime the cache with ``p`` tokens, then time ``tokens`` steps (numpy in and out, as the
    processor calls the model)."""
    from musiclm.processor import empty_cache

    step, cache = model.function(), empty_cache(model)
    for i in range(p):
        _, cache = step(stream[i:i + 1], i, cache)
    ns = []
    for i in range(p, p + tokens):
        t0 = time.perf_counter_ns()
        _, cache = step(stream[i:i + 1], i, cache)
        ns.append(time.perf_counter_ns() - t0)
    return percentiles(ns)


def run(weights: str | Path | None = None, positions: list[int] | tuple[int, ...] = (64, 256, 1024),
        tokens: int = 200, uncached_tokens: int = 20, seed: int = 0, repeats: int = 3) -> dict:
    """Time the cached step ``repeats`` times per position and runtime and keep the fastest median
    (the machine's other work only ever slows a run down, as ``timeit`` reasons)."""
    path = Path(weights) if weights else WEIGHTS
    load = machine_load()
    formats = runtime.formats_of(path)
    models = {fmt: runtime.load_model(p) for fmt, p in formats.items()}
    first = next(iter(models.values()))
    vocab, length, position = int(first.attr("vocab_size")), int(first.attr("max_len")), str(first.attr("position"))
    stream = np.random.default_rng(seed).integers(3, vocab, max(positions) + tokens + 1)
    out: dict = {"weights": str(path), "runtimes": sorted(models), "max_len": length, "position": position,
                 "threads": 1, "tokens_timed": tokens, "repeats": repeats, "uncached_tokens_timed": uncached_tokens,
                 "load": load,
                 "at": {}}
    scripted = torch = None
    if "torchscript" in formats:
        import torch

        torch.set_num_threads(1)
        scripted = runtime.load_torchscript(formats["torchscript"])
    for p in positions:
        if position == "absolute" and p + tokens > length:
            out["at"][str(p)] = {"skipped": "absolute positions end at the training length"}
            continue
        row: dict = {"context": min(p, length)}
        for fmt, model in models.items():
            c = min((_cached_ms(model, stream, p, tokens) for _ in range(max(repeats, 1))),
                    key=lambda r: r["p50"])
            key = "cached" if fmt == "torchscript" else f"{fmt}_cached"
            row[f"{key}_tokens_per_s"], row[f"{key}_ms"] = 1e3 / c["p50"], c
        if scripted is not None:  # the whole window per token, as the paper's code decodes
            un = []
            with torch.no_grad():
                for i in range(p, p + uncached_tokens):
                    window = torch.from_numpy(stream[max(0, i + 1 - length):i + 1]).unsqueeze(0)
                    t0 = time.perf_counter_ns()
                    scripted.model(window)
                    un.append(time.perf_counter_ns() - t0)
            u = percentiles(un)
            row["uncached_tokens_per_s"], row["uncached_ms"] = 1e3 / u["p50"], u
        out["at"][str(p)] = row
    for key in ("cached", "onnx_cached"):
        rates = [v[f"{key}_tokens_per_s"] for v in out["at"].values() if f"{key}_tokens_per_s" in v]
        if rates:
            prefix = "" if key == "cached" else "onnx_"
            out[f"{key}_min_tokens_per_s"] = min(rates)
            out[f"{key}_flatness"] = max(rates) / min(rates)
            out[f"{prefix}meets_500_tokens_per_s"] = min(rates) >= 500
            out[f"{prefix}meets_flat_1_5x"] = max(rates) / min(rates) <= 1.5
    return out


def format_report(r: dict) -> str:
    lines = [f"{r['weights']} (L {r['max_len']}, {r['position']}, 1 thread; runtimes: {', '.join(r['runtimes'])}; "
             f"measured {load_words(r.get('load'))})",
             "position   TorchScript cached tok/s (p50 ms, p99 ms)   ONNX cached tok/s (p50 ms, p99 ms)   "
             "uncached tok/s (p50 ms)"]
    for p, v in r["at"].items():
        if "skipped" in v:
            lines.append(f"{p:>8}   {v['skipped']}")
            continue

        def col(key: str) -> str:
            if f"{key}_tokens_per_s" not in v:
                return f"{'-':>28}"
            ms = v[f"{key}_ms"]
            return f"{v[key + '_tokens_per_s']:>14.0f} ({ms['p50']:.2f}, {ms['p99']:.2f})"

        un = (f"{v['uncached_tokens_per_s']:8.0f} ({v['uncached_ms']['p50']:.2f})" if "uncached_tokens_per_s" in v
              else "-")
        lines.append(f"{p:>8}   {col('cached')}          {col('onnx_cached')}        {un}")
    for key, name, prefix in (("cached", "TorchScript", ""), ("onnx_cached", "ONNX", "onnx_")):
        if f"{key}_flatness" in r:
            lines.append(f"{name} cached: min {r[key + '_min_tokens_per_s']:.0f} tok/s (target >= 500: "
                         f"{'yes' if r[prefix + 'meets_500_tokens_per_s'] else 'NO'}), max/min "
                         f"{r[key + '_flatness']:.2f} (target <= 1.5: {'yes' if r[prefix + 'meets_flat_1_5x'] else 'NO'})")
    return "\n".join(lines)
