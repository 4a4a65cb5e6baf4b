"""Timing statistics for benchmarks: percentiles of durations in nanoseconds, in milliseconds."""

from __future__ import annotations

import statistics


def percentiles(ns: list[int] | list[float]) -> dict[str, float]:
    """Median, p99 and max (ms) of durations given in ns, with their count."""
    if not ns:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan"), "n": 0}
    ms = sorted(x / 1e6 for x in ns)
    return {"p50": statistics.median(ms), "p99": ms[min(len(ms) - 1, int(0.99 * len(ms)))],
            "max": ms[-1], "n": len(ms)}
