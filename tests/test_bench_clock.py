"""``genie bench clock``: the clocked processor's notes are matched to their due times (an offline
run of the same clock) and their jitter is put beside a plain client's; here with the test
processor ``bars`` on a short run, for the figures' shape and the matching, not for speed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from daemon.bench.clocked import format_clocked, run_clocked

PLUGINS = Path(__file__).parent / "plugins"


@pytest.mark.jack
def test_bench_clock_matches_every_note_to_its_due_time(jack_server, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(PLUGINS), os.environ.get("PYTHONPATH", "")) if p))
    monkeypatch.syspath_prepend(str(PLUGINS))
    import importlib.metadata

    importlib.invalidate_caches()
    assert "bars" in {ep.name for ep in importlib.metadata.entry_points(group="genie.processors")}
    r = run_clocked("bars", bpm=120, bars=2, period=256, repeats=1)
    assert r["runs"][0]["notes"] == r["runs"][0]["due"] == 8
    assert r["notes_mismatched"] == 0
    assert r["jitter"]["n"] == 7 and r["floor_jitter"]["n"] == 7  # the Start's downbeat left out
    assert 0 <= r["jitter"]["p50"] <= r["jitter"]["p99"] <= r["jitter"]["max"]
    assert r["jitter"]["median_lag_ms"] > 0
    text = format_clocked(r)
    assert "bars" in text and ("PASS" in text or "FAIL" in text)
