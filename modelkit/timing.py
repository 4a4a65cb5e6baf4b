"""Timing statistics for benchmarks: percentiles of durations in nanoseconds, in milliseconds."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path


def percentiles(ns: list[int] | list[float]) -> dict[str, float]:
    """Median, p99 and max (ms) of durations given in ns, with their count."""
    if not ns:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan"), "n": 0}
    ms = sorted(x / 1e6 for x in ns)
    return {"p50": statistics.median(ms), "p99": ms[min(len(ms) - 1, int(0.99 * len(ms)))],
            "max": ms[-1], "n": len(ms)}


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies over all CPUs from /proc/stat, or None where there is none."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def machine_load(window_s: float = 1.0) -> dict:
    """How busy the machine is as a benchmark starts: the CPUs, and the share of them that other
    work kept busy over ``window_s`` while this process slept (a load average would count this
    process's own work just before); where /proc/stat is missing, the 1-minute load average."""
    cpus = os.cpu_count() or 1
    before = _cpu_times()
    if before is None:
        return {"cpus": cpus, "busy": min(os.getloadavg()[0] / cpus, 1.0), "window_s": 60.0}
    time.sleep(window_s)
    after = _cpu_times()
    busy = (after[0] - before[0]) / max(after[1] - before[1], 1)
    return {"cpus": cpus, "busy": busy, "window_s": window_s}


def load_words(load: dict | None) -> str:
    """``machine_load``'s result in a sentence for a model card."""
    if not load or "busy" not in load:
        return "on a machine shared with other jobs, so the numbers are pessimistic"
    quiet = load["busy"] < 0.1
    return (f"on {load['cpus']} CPU cores, {load['busy']:.0%} of them busy with other work as it started"
            + (" (a quiet machine)" if quiet else " (other jobs running, so the numbers are pessimistic)"))
