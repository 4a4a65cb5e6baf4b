"""``genie bench startup``: READY from systemd's notify socket and memory from /proc, for thru
and for every shipped model at once, through a real JACK server and ``genie run``."""

import json
import subprocess
import sys

import pytest


@pytest.mark.jack
def test_bench_startup_times_ready_and_memory_beside_thru():
    done = subprocess.run([sys.executable, "-m", "daemon", "bench", "startup", "--repeats", "1", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    r = json.loads(done.stdout)
    assert set(r["models"]) >= {"pianogenie", "drumvae", "musiclm", "markov"}
    thru, full = r["setups"]["thru"], r["setups"]["all models"]
    assert 0 < thru["ready_s_median"] < 60 and 0 < full["ready_s_median"] < 120
    assert thru["rss_mb_median"] > 10 and full["rss_mb_median"] > thru["rss_mb_median"]  # models cost memory
    assert r["ratio_rss"] == pytest.approx(full["rss_mb_median"] / thru["rss_mb_median"], rel=1e-3)
    assert r["onnx"] is None  # no ONNX runtime yet, and the result says so
