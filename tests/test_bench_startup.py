"""``genie bench startup``: READY from systemd's notify socket and memory from /proc, for thru
and for every shipped model at once on each runtime (TorchScript, ONNX), through a real JACK server
and ``genie run``."""

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
    assert set(r["onnx_files"]) == {"pianogenie", "drumvae", "musiclm"}  # markov is a table, not a network
    thru, ts, onnx = r["setups"]["thru"], r["setups"]["TorchScript"], r["setups"]["ONNX"]
    for s in (thru, ts, onnx):
        assert 0 < s["ready_s_median"] < 120 and s["own_mb_median"] > 10
        assert s["own_mb_median"] == pytest.approx(s["rss_mb_median"] - s["shm_mb_median"], abs=1)
    assert ts["own_mb_median"] > onnx["own_mb_median"] > thru["own_mb_median"]  # torch costs the most
    assert r["ratios"]["ONNX"]["own"] == pytest.approx(onnx["own_mb_median"] / thru["own_mb_median"], rel=1e-3)
    assert r["targets"]["own_pass"] == (onnx["own_mb_median"] <= 150)
