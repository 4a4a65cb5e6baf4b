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


@pytest.mark.jack
def test_bench_answer_times_the_first_note_of_an_answer(jack_server, tmp_path):
    import torch

    from daemon.bench.answer import format_answer, run_answer
    from musiclm import tokenizer as tk
    from musiclm.export import export_model
    from musiclm.model import MusicTransformer, MusicTransformerConfig

    torch.manual_seed(0)
    model = MusicTransformer(MusicTransformerConfig(max_len=64, n_layer=1, n_head=2, d_model=32, d_ff=64))
    weights = export_model(model, tmp_path / "musiclm_maestro.pt", tk.PERFORMANCE_VOCAB)
    r = run_answer("musiclm", f'weights = "{weights}", answer_cc = 20, silence_ms = 60000.0', n=2, period=256)
    assert r["missed"] == 0 and r["first_note_ms"]["n"] == 2
    assert 0 < r["first_note_ms"]["p50"] < 2000
    assert "trigger -> first answered note" in format_answer(r)
