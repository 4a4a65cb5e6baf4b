"""Timing statistics for benchmarks: percentiles of durations in nanoseconds, in milliseconds."""

from __future__ import annotations

import os
import statistics


def percentiles(ns: list[int] | list[float]) -> dict[str, float]:
    """Median, p99 and max (ms) of durations given in ns, with their count."""
    if not ns:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan"), "n": 0}
    ms = sorted(x / 1e6 for x in ns)
    return {"p50": statistics.median(ms), "p99": ms[min(len(ms) - 1, int(0.99 * len(ms)))],
            "max": ms[-1], "n": len(ms)}


def machine_load() -> dict:
    """How busy the machine is as a benchmark starts: CPUs and the 1-minute load average (a load
    near or above the CPU count means other jobs share them, and the timings are pessimistic)."""
    return {"cpus": os.cpu_count() or 1, "load_average_1min": os.getloadavg()[0]}


def load_words(load: dict | None) -> str:
    """``machine_load``'s result in a sentence for a model card."""
    if not load:
        return "on a machine shared with other jobs, so the numbers are pessimistic"
    busy = load["load_average_1min"] >= 0.5
    return (f"on {load['cpus']} CPU cores, load average {load['load_average_1min']:.1f} as it started"
            + (" (other jobs running, so the numbers are pessimistic)" if busy else " (nothing else running)"))
