"""``genie bench latency``: statistics on hand-made samples, and one short run on real ports."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from daemon.bench.latency import (_key, chance_difference, classify_xruns, cpu_times, note_stream,
                                  percentile, program_of, report, spread, steal_fraction,
                                  summarize)


def test_percentile_interpolates_like_numpy():
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))


def test_summarize_known_samples():
    # 98 round trips of 1 ms, one of 2 ms, one of 11 ms (order must not matter)
    samples = [1.0] * 49 + [11.0] + [1.0] * 49 + [2.0]
    s = summarize(samples)
    assert s["n"] == 100
    assert s["p50"] == 1.0
    assert s["p99"] == pytest.approx(2.0 + 0.01 * 9.0)  # between the 99th and 100th values
    assert s["max"] == 11.0
    mean = (98 + 2 + 11) / 100
    assert s["mean"] == pytest.approx(mean)
    var = (98 * (1 - mean) ** 2 + (2 - mean) ** 2 + (11 - mean) ** 2) / 100
    assert s["jitter"] == pytest.approx(math.sqrt(var))  # population standard deviation


def test_summarize_constant_and_empty():
    s = summarize([0.75] * 10)
    assert (s["p50"], s["p99"], s["max"], s["jitter"]) == (0.75, 0.75, 0.75, 0.0)
    assert summarize([])["n"] == 0 and math.isnan(summarize([])["p99"])


def test_spread_is_max_minus_min_per_figure():
    reps = [{"p50": 1.0, "p99": 2.0, "max": 3.0, "jitter": 0.2},
            {"p50": 1.2, "p99": 2.5, "max": 5.0, "jitter": 0.1},
            {"p50": 0.9, "p99": 2.1, "max": 4.0, "jitter": 0.3}]
    assert spread(reps) == pytest.approx({"p50": 0.3, "p99": 0.5, "max": 2.0, "jitter": 0.2})
    assert spread(reps[:1]) == {"p50": 0.0, "p99": 0.0, "max": 0.0, "jitter": 0.0}


def test_xruns_split_by_blamed_client():
    log = ["JackTimedDriver::Process XRun = 6 usec",
           "JackEngine::XRun: client = Genie in was not finished, state = Triggered",
           "JackEngine::XRun: client = bench thru out was not finished, state = Triggered",
           "JackAudioDriver::ProcessGraphAsyncMaster: Process error",
           "JackEngine::XRun: client = Genie in was not finished, state = Triggered"]
    x = classify_xruns(log)
    assert x == {"total": 4, "driver": 1,
                 "clients": {"Genie in": 2, "bench thru out": 1},
                 "cycles": 2, "alone": {"Genie": 1}}


def test_xruns_of_one_cycle_are_one_programs_own_only_when_nobody_else_was_late():
    late = "JackEngine::XRun: client = {} was not finished, state = Triggered".format
    error = "JackAudioDriver::ProcessGraphAsyncMaster: Process error"
    log = [late("Genie in"), late("Genie out"), error,  # Genie alone
           late("bench thru out"), late("bench probe play"), late("Genie out"), error,  # a stall
           late("Genie busy out"),
           late("Genie busy out"), error,  # no line between: the next cycle's block
           "JackEngine::XRun: client bench thru in finished after current callback", error,
           late("bench probe listen")]
    x = classify_xruns(log)
    assert x["cycles"] == 6 and x["driver"] == 0
    assert x["alone"] == {"Genie": 1, "Genie busy": 2, "bench thru": 1, "bench probe": 1}
    assert x["clients"]["bench thru in"] == 1 and x["total"] == 9
    assert program_of("Genie busy in") == "Genie busy" and program_of("bench probe listen") == (
        "bench probe") and program_of("genie-ping-in") == "genie-ping-in"


def test_notes_never_repeat_within_the_echo_window_and_match_their_echo():
    notes = note_stream()
    first = [next(notes) for _ in range(96)]
    assert len(set(first)) == 96  # 48 pitches, on then off
    on, off = first[0], first[1]
    assert _key(on) == _key((0x91, on[1], 100))  # an echo on another channel still matches
    assert _key(off) == _key((0x90, off[1], 0))  # note-on velocity 0 is a note-off
    assert _key(on) != _key(off)
    assert _key((0xF8,)) is None


def test_report_verdict():
    def run(p99, xruns):
        return {"p50": 1.0, "p99": p99, "max": p99 + 1, "jitter": 0.1, "lost": 0,
                "xruns": {"total": xruns + 5}, "own_xruns": xruns}

    runs = {"a": [run(1.0, 0)], "b": [run(2.0, 1)], "c": [run(2.4, 1)],
            "c_busy": [run(2.6, 1)]}
    samples = {"a": [1.0], "b": [2.0], "c": [2.4], "c_busy": [2.6]}
    r = report(runs, samples, classify_xruns([]), n=1, repeats=1, seed=0, server={})
    assert r["minus_b"]["c"]["p99"] == pytest.approx(0.4)
    assert r["minus_b"]["c_busy"]["p99"] == pytest.approx(0.6)
    assert r["verdict"] == {"latency": False, "xruns": True, "pass": False}


def test_report_pairs_each_run_with_its_repeats_b_run():
    def run(p99, xruns):
        return {"p50": 1.0, "p99": p99, "max": p99 + 1, "jitter": 0.1, "lost": 0,
                "xruns": {"total": xruns + 5}, "own_xruns": xruns}

    # repeat 2 was disturbed (the machine was busy): both b and c got slow
    runs = {"a": [run(1.0, 0)] * 3,
            "b": [run(2.0, 0), run(6.0, 9), run(2.2, 1)],
            "c": [run(2.3, 0), run(9.0, 40), run(2.4, 1)],
            "c_busy": [run(2.4, 1), run(6.1, 5), run(2.5, 1)]}
    samples = {k: [1.0] for k in runs}
    r = report(runs, samples, classify_xruns([]), n=1, repeats=3, seed=0, server={})
    c = r["minus_b"]["c"]
    assert c["p99_per_repeat"] == pytest.approx([0.3, 3.0, 0.2])
    assert c["p99"] == pytest.approx(0.3)  # the median of the paired differences
    assert r["targets"]["b"]["spread"]["p99"] == pytest.approx(4.0)
    assert r["targets"]["c"]["own_xruns_per_run"] == [0, 40, 1]
    assert r["targets"]["c"]["xruns_per_run"] == [5, 45, 6]  # stalls included
    # own xruns are pooled: 41 against 10 is more than chance gives (2 sd: 2 * sqrt(51))
    assert c["extra_xruns_per_repeat"] == [0, 31, 0]
    assert (c["own_xruns"], c["floor_own_xruns"], c["extra_xruns"]) == (41, 10, 31)
    assert c["chance_xruns"] == pytest.approx(2 * 51 ** 0.5)
    busy = r["minus_b"]["c_busy"]
    assert busy["extra_xruns"] == -3 and busy["extra_xruns"] <= busy["chance_xruns"]
    assert r["verdict"] == {"latency": True, "xruns": False, "pass": False}


def test_a_few_own_xruns_more_than_the_floor_is_chance_and_passes():
    assert chance_difference(0, 0) == pytest.approx(2 * 2 ** 0.5)  # at least one each
    assert chance_difference(3, 2) == pytest.approx(2 * 5 ** 0.5)

    def run(own):
        return {"p50": 1.0, "p99": 2.0, "max": 3.0, "jitter": 0.1, "lost": 0,
                "xruns": {"total": own}, "own_xruns": own}

    runs = {"a": [run(0)] * 3, "b": [run(0), run(1), run(1)], "c": [run(1), run(1), run(1)],
            "c_busy": [run(2), run(0), run(1)]}
    r = report(runs, {k: [2.0] for k in runs}, classify_xruns([]), n=1, repeats=3, seed=0,
               server={})
    assert r["minus_b"]["c"]["extra_xruns"] == 1 and r["verdict"]["xruns"]
    runs["c_busy"] = [run(40), run(35), run(50)]  # what a GIL-bound callback would cost
    r = report(runs, {k: [2.0] for k in runs}, classify_xruns([]), n=1, repeats=3, seed=0,
               server={})
    assert not r["verdict"]["xruns"]


def test_steal_is_the_share_of_all_cpus_time_the_host_took():
    before = cpu_times()
    assert before is not None and 0 <= before[0] <= before[1]  # Linux: /proc/stat
    assert steal_fraction((100, 10_000), (130, 11_000)) == pytest.approx(0.03)
    assert steal_fraction(None, (1, 2)) == 0.0 and steal_fraction((5, 10), (5, 10)) == 0.0


def test_disturbed_rounds_are_reported_and_left_out_of_the_figures():
    from daemon.commands.bench import format_latency

    def run(p99, rnd):
        return {"repeat": rnd, "p50": 1.0, "p99": p99, "max": p99 + 1, "jitter": 0.1, "lost": 0,
                "xruns": {"total": 0}, "own_xruns": 0, "steal": 0.0}

    # round 1 was disturbed (run_latency kept rounds 2 and 3 only)
    runs = {k: [run(2.0, 2), run(2.2, 3)] for k in ("a", "b", "c", "c_busy", "b_busy")}
    rounds = [{"round": 1, "steal": {k: 0.25 if k == "b" else 0.001 for k in runs},
               "clean": False},
              {"round": 2, "steal": {k: 0.0 for k in runs}, "clean": True},
              {"round": 3, "steal": {k: 0.01 for k in runs}, "clean": True}]
    r = report(runs, {k: [2.0, 2.2] for k in runs}, classify_xruns([]), n=1, repeats=2, seed=0,
               server={"name": "s", "period_frames": 64, "rate": 48000, "period_ms": 1.333},
               rounds=rounds)
    assert r["clean_rounds"] == 2 and r["targets"]["c"]["runs"][0]["repeat"] == 2
    text = format_latency(r)
    assert "rounds: 3 run, 2 clean of 2 asked" in text
    assert "round 1 disturbed: host took a 0.1%, b 25.0%, c 0.1%" in text


def _jackd_or_skip() -> None:
    from daemon.io.jack import jackd_available

    if not jackd_available():
        if os.environ.get("CI") == "true":
            pytest.fail("jackd is missing (apt-get install jackd2)")
        pytest.skip("jackd is missing (apt-get install jackd2)")


@pytest.mark.jack
def test_bench_latency_json_on_real_ports():
    _jackd_or_skip()
    done = subprocess.run(
        [sys.executable, "-m", "daemon", "bench", "latency", "--json", "-n", "50",
         "--repeats", "1"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout)  # stdout is the JSON object and nothing else
    assert set(result["targets"]) == {"a", "b", "c", "c_busy", "b_busy"}
    for key, t in result["targets"].items():
        # 50 per run kept; lost echoes (xruns drop MIDI) are sent again and counted
        assert t["n"] == 50 * len(t["runs"]), key
        assert isinstance(t["lost"], int) and t["lost"] >= 0, key
        for fig in ("p50", "p99", "max", "jitter"):
            assert isinstance(t[fig], float) and math.isfinite(t[fig]) and t[fig] >= 0, (key, fig)
        assert 0 < t["p50"] <= t["p99"] <= t["max"] < 1000, key
        # one clean round asked for; a disturbed one (the host took CPU time) is run again
        assert len(t["runs"]) == len(t["xruns_per_run"]) == (result["clean_rounds"] or
                                                              len(result["rounds"])), key
    assert 1 <= len(result["rounds"]) <= 3 and result["clean_rounds"] <= 1
    for rd in result["rounds"]:
        assert set(rd["steal"]) == set(result["targets"]) and all(
            0 <= v <= 1 for v in rd["steal"].values())
    for key in ("c", "c_busy"):
        assert math.isfinite(result["minus_b"][key]["p99"])
    assert math.isfinite(result["c_busy_minus_b_busy"]["p99"])
    assert set(result["verdict"]) == {"latency", "xruns", "pass"}
