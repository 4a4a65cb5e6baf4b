"""``genie bench controllers``: its streams and report on hand-made figures, and one short run on
real ports (numbers are printed, never asserted against a target)."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys

import pytest

from daemon.bench import controllers as bc
from daemon.config import parse_config
from daemon.core import EngineCore, Slot
from daemon.events import MidiEvent
from daemon.processor import Context
from daemon.processors.thru import ThruProcessor


def test_streams_press_release_and_name_the_note_they_cause():
    thru = list(itertools.islice(bc.stream("thru"), 48))
    assert len({m for m, _ in thru}) == 48 and all(36 <= m[1] < 60 for m, _ in thru)
    notes = list(itertools.islice(bc.stream("notes"), 4))
    v = [bc.velocity(i) for i in range(4)]
    assert notes == [((0x90, 60, v[0]), (True, 60)), ((0x80, 60, v[1]), (False, 60)),
                     ((0x90, 62, v[2]), (True, 62)), ((0x80, 62, v[3]), (False, 62))]
    assert len(set(v)) == 4 and all(64 <= x <= 126 for x in v)
    cc = list(itertools.islice(bc.stream("cc"), 8))
    assert cc[0] == ((0xB0, 20, 127), (True, 67)) and cc[7] == ((0xB0, 23, 0), (False, 72))
    assert bc.releases("cc") == [(0xB0, c, 0) for c in (20, 21, 22, 23)]
    assert bc.reply_key((0x91, 67, 100)) == (True, 67) and bc.reply_key((0x90, 67, 0)) == (
        False, 67) and bc.reply_key((0xB0, 1, 2)) is None
    pad = list(itertools.islice(bc.stream("gamepad"), 8))
    assert pad[:2] == [((0x01, 0x136, 1), (True, 62)), ((0x01, 0x136, 0), (False, 62))]
    assert [key for _, key in pad[::2]] == [(True, 62), (True, 67), (True, 69), (True, 71)]
    assert bc.releases("gamepad") == [(0x01, c, 0) for c in (0x136, 0x133, 0x131, 0x137)]


def test_the_benchmarks_genie_config_plays_what_the_streams_expect(tmp_path):
    """The config the benchmark gives genie run, through EngineCore: each step's reply."""
    import tomllib

    cfg = parse_config(tomllib.loads(bc._genie_config(tmp_path).read_text()))
    proc = ThruProcessor()
    proc.start(Context("thru", dict(cfg.processors[0].options)))
    core = EngineCore(cfg, [Slot(cfg.processors[0], proc)])
    t = 0
    for kind in ("thru", "notes", "cc"):
        for msg, key in itertools.islice(bc.stream(kind), 16):
            t += 10_000_000
            core.feed(MidiEvent(t, "probe", msg), t)
            out = [m for _, m in core.tick(t)]
            assert [bc.reply_key(m) for m in out] == [key], (kind, msg, out)


def test_the_note_buttons_fast_cycle_is_not_taken_for_an_echo_loop(tmp_path):
    """The probe presses every ~3 ms and each key comes again every ~22 ms, steadily: with one
    velocity that repeated Genie's own output at a steady delay, and the echo guard broke it as a
    DAW loop (a quarter of the presses lost in the benchmark). Its velocities vary, as a player's."""
    import tomllib

    cfg = parse_config(tomllib.loads(bc._genie_config(tmp_path).read_text()))
    proc = ThruProcessor()
    proc.start(Context("thru", dict(cfg.processors[0].options)))
    core = EngineCore(cfg, [Slot(cfg.processors[0], proc)])
    t = 1_000_000_000
    for msg, key in itertools.islice(bc.stream("notes"), 400):
        t += 2_700_000
        core.feed(MidiEvent(t, "probe", msg), t)
        assert [bc.reply_key(m) for _, m in core.tick(t)] == [key], msg
    assert core.counters.get("echo_loops_broken") == 0


def test_the_benchmarks_gamepad_plays_what_the_gamepad_stream_expects(tmp_path):
    """The benchmark's pad (a FIFO device, an Xbox 360 pad's description) read by the real device
    loop with the benchmark's config, each report's button through EngineCore: each step's reply;
    every press and release arrives, stamped with the report's own time."""
    import queue
    import tomllib

    from daemon.bench.controllers import PadProbe
    from daemon.rigs.fifo_input import XBOX_360, FifoWriter, open_fifo_device
    from daemon.io.gamepad import GamepadSource

    cfg = parse_config(tomllib.loads(bc._genie_config(tmp_path).read_text()))
    assert cfg.gamepad.enabled == "on" and cfg.gamepad.sdl == "off"
    proc = ThruProcessor()
    proc.start(Context("thru", dict(cfg.processors[0].options)))
    core = EngineCore(cfg, [Slot(cfg.processors[0], proc)])
    got: queue.Queue = queue.Queue()
    src = GamepadSource(got.put, None, cfg.gamepad, dev_dir=str(tmp_path), opener=open_fifo_device,
                        learned={})
    pad = FifoWriter.plug(tmp_path, bc.PAD_NODE, XBOX_360)
    src.start()

    class Listen:
        received = None

    probe = PadProbe(pad, Listen())
    try:
        for event, key in itertools.islice(bc.stream("gamepad"), 16):
            stamp = probe.send(event)
            ev = got.get(timeout=5)
            assert abs(ev.time_ns - stamp) < 1_000_000  # the report's stamp, on the daemon's clock
            core.feed(ev, ev.time_ns)
            out = [m for _, m in core.tick(ev.time_ns)]
            assert [bc.reply_key(m) for m in out] == [key], (event, out)
    finally:
        src.stop()
        pad.unplug()
    assert got.empty()  # nothing held at the end: stop released nothing


def test_report_pairs_each_run_with_its_repeats_floor():
    def run(p50, p99):
        return {"p50": p50, "p99": p99, "max": p99 + 1, "jitter": 0.1, "lost": 1,
                "xruns": {"total": 2}}

    runs = {"b": [run(1.0, 2.0), run(1.0, 9.0)], "thru": [run(1.1, 2.2), run(1.1, 9.0)],
            "notes": [run(1.2, 2.5), run(1.2, 12.0)], "cc": [run(1.3, 2.3), run(1.3, 9.1)]}
    r = bc.report(runs, {k: [1.0, 2.0] for k in runs}, n=2, repeats=2, seed=0,
                  server={"name": "s", "period_frames": 64, "rate": 48000, "period_ms": 1.333})
    assert r["minus_thru"]["notes"]["p99_per_repeat"] == pytest.approx([0.3, 3.0])
    assert r["minus_thru"]["notes"]["p99"] == pytest.approx(1.65)
    assert r["minus_thru"]["cc"]["p50"] == pytest.approx(0.2)
    assert r["minus_b"]["thru"]["p99"] == pytest.approx(0.1)
    assert r["targets"]["notes"]["lost"] == 2 and r["targets"]["cc"]["xruns_per_run"] == [2, 2]
    text = bc.format_controllers(r)
    assert "path measured: MIDI controller" in text and "gamepad: kernel input events" in text


@pytest.mark.jack
def test_bench_controllers_json_on_real_ports():
    from daemon.io.jack import jackd_available

    if not jackd_available():
        pytest.skip("jackd is missing (apt-get install jackd2)")
    done = subprocess.run(
        [sys.executable, "-m", "daemon", "bench", "controllers", "--json", "-n", "40",
         "--repeats", "1"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout)
    assert result["path"].startswith("MIDI controller")
    assert set(result["targets"]) == {"b", "thru", "notes", "cc", "gamepad"}
    for key, t in result["targets"].items():
        assert t["n"] == 40, key
        assert 0 < t["p50"] <= t["p99"] <= t["max"] < 1000, key
    # The gamepad's reports went through genie run's evdev loop and were answered. The benchmark's
    # server is asynchronous (as a live one is): under load it drops a late client's MIDI, so a
    # few replies may be lost on any target; most must come back.
    for key, t in result["targets"].items():
        assert t["lost"] <= t["n"] // 4, (key, t["lost"])
    assert set(result["minus_thru"]) == {"notes", "cc", "gamepad"}
    for v in (*result["minus_thru"].values(), *result["minus_b"].values()):
        assert math.isfinite(v["p50"]) and math.isfinite(v["p99"])


def test_a_model_target_accepts_any_pitch_but_the_right_direction():
    from daemon.bench.controllers import answers, stream, velocity

    msg, key = next(stream("model"))
    assert msg == (0x90, 60, velocity(0)) and key == (True, None)
    assert answers((0x90, 77, 100), key)
    assert not answers((0x80, 77, 0), key)
    assert answers((0x80, 62, 0), (False, None))
    assert not answers((0x90, 61, 1), (True, 60))


def test_pianogenie_press_path_plays_from_ready_rows():
    pytest.importorskip("torch")
    from pianogenie.bench import time_press_path

    r = time_press_path(20)
    assert r["presses_without_ready_row"] == 0
    assert r["press"]["n"] == 20 and r["idle_refresh"]["n"] == 20
    assert r["press"]["p50"] <= r["press"]["p99"] <= r["press"]["max"]
