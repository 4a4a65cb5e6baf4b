"""``genie bench musiclm``: tokens per second of the exported step on one thread.

At each context position p: *cached* primes the KV cache with p tokens, then times steps from
there (the live path: one token reads the cache); *uncached* re-runs the model on the whole
context window (the last min(p, L) tokens) for each new token, as the paper's code and the
PyTorch ports decode. Targets (issue 10): >= 500 tokens/s cached for the shipped model, flat
within 1.5x from 64 to 1024. The time from the trigger to the first answered note through JACK
belongs to the live processor (later work).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from daemon import runtime
from modelkit.timing import percentiles

WEIGHTS = Path(__file__).resolve().parent / "weights" / "musiclm_maestro.pt"


def run(weights: str | Path | None = None, positions: list[int] | tuple[int, ...] = (64, 256, 1024),
        tokens: int = 200, uncached_tokens: int = 20, seed: int = 0) -> dict:
    torch.set_num_threads(1)
    path = Path(weights) if weights else WEIGHTS
    step = runtime.load_model(path)
    vocab, length = int(step.vocab_size), int(step.max_len)
    absolute = step.position == "absolute"
    g = torch.Generator().manual_seed(seed)
    stream = torch.randint(3, vocab, (max(positions) + tokens + 1,), generator=g)
    out: dict = {"weights": str(path), "max_len": length, "position": step.position, "threads": 1,
                 "tokens_timed": tokens, "uncached_tokens_timed": uncached_tokens, "at": {}}
    with torch.no_grad():
        for p in positions:
            if absolute and p + tokens > length:
                out["at"][str(p)] = {"skipped": "absolute positions end at the training length"}
                continue
            cache = step.empty_cache(1)
            logits = torch.zeros(0)
            for i in range(p):  # prime
                logits, cache = step(stream[i:i + 1], i, cache)
            ns = []
            for i in range(p, p + tokens):
                t0 = time.perf_counter_ns()
                logits, cache = step(stream[i:i + 1], i, cache)
                ns.append(time.perf_counter_ns() - t0)
            un = []
            for i in range(p, p + uncached_tokens):
                window = stream[max(0, i + 1 - length):i + 1].unsqueeze(0)
                t0 = time.perf_counter_ns()
                logits, _ = step.model(window)
                un.append(time.perf_counter_ns() - t0)
            c, u = percentiles(ns), percentiles(un)
            out["at"][str(p)] = {"cached_tokens_per_s": 1e3 / c["p50"], "cached_ms": c,
                                 "uncached_tokens_per_s": 1e3 / u["p50"], "uncached_ms": u,
                                 "context": min(p, length)}
    rates = [v["cached_tokens_per_s"] for v in out["at"].values() if "cached_tokens_per_s" in v]
    if rates:
        out["cached_min_tokens_per_s"] = min(rates)
        out["cached_flatness"] = max(rates) / min(rates)
        out["meets_500_tokens_per_s"] = min(rates) >= 500
        out["meets_flat_1_5x"] = max(rates) / min(rates) <= 1.5
    return out


def format_report(r: dict) -> str:
    lines = [f"{r['weights']} (L {r['max_len']}, {r['position']}, 1 thread)",
             "position   cached tok/s (p50 ms, p99 ms)   uncached tok/s (p50 ms)"]
    for p, v in r["at"].items():
        if "skipped" in v:
            lines.append(f"{p:>8}   {v['skipped']}")
            continue
        lines.append(f"{p:>8}   {v['cached_tokens_per_s']:8.0f} ({v['cached_ms']['p50']:.2f}, "
                     f"{v['cached_ms']['p99']:.2f})        {v['uncached_tokens_per_s']:8.0f} "
                     f"({v['uncached_ms']['p50']:.2f})")
    if "cached_flatness" in r:
        lines.append(f"cached: min {r['cached_min_tokens_per_s']:.0f} tok/s (target >= 500: "
                     f"{'yes' if r['meets_500_tokens_per_s'] else 'NO'}), max/min {r['cached_flatness']:.2f} "
                     f"(target <= 1.5: {'yes' if r['meets_flat_1_5x'] else 'NO'})")
    return "\n".join(lines)
