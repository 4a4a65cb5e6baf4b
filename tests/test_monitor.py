"""``genie monitor``: the daemon's feed through a real ``genie run`` and JACK ports, the live view
drawn from it, and the one-line error without a daemon."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
from jack_helpers import NOTE_OFF, NOTE_ON, config_text

from daemon.commands.monitor import View, note_name


def _line(t_s: float, **kw) -> dict:
    base = {"time_ns": int(t_s * 1e9), "processors": ["pianogenie", "thru"], "playing": ["pianogenie"],
            "held": [], "sounding": 0, "counters": {}, "sent": [], "latency_ns": []}
    return {**base, **kw}


def test_the_view_shows_what_plays_the_buttons_the_roll_latency_and_problems():
    from rich.console import Console

    view = View()
    view.add(_line(10.0, held=[2, 5], sent=[[int(9.5e9), "Genie out", [0x90, 60, 100]],
                                            [int(9.6e9), "Genie out", [0x80, 60, 0]],
                                            [int(9.8e9), "Genie out", [0x91, 67, 40]]],
                   latency_ns=[600_000, 800_000], counters={"unmatched_note_offs": 4}))
    view.add(_line(10.1, counters={"unmatched_note_offs": 4}, transport={"drums": {"running": True, "lost": False, "bpm": 120.0,
                                              "bar": 3, "beat": 2}}))
    console = Console(record=True, width=100, color_system=None)
    console.print(view.render())
    text = console.export_text()
    assert "pianogenie" in text and "120.0 BPM, bar 3 beat 2" in text
    assert "C4 │" in text and "G4 │" in text  # the roll's rows: the pitches played
    assert "G4 v40 ch2" in text.replace("\n", " ")  # newest first
    assert "median 0.80 ms" in text or "median 0.60 ms" in text
    assert "4 releases without a press" in text  # in words, not counter names
    assert note_name(21) == "A0" and note_name(108) == "C8"


@pytest.mark.jack
def test_genie_monitor_follows_a_running_daemon(rig, tmp_path):
    g = rig.genie(config_text())
    c = rig.client()
    env = {**os.environ, **rig.env}
    cmd = [sys.executable, "-m", "daemon", "--config", g.config, "monitor", "--json", "--count", "25"]
    mon = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(0.5)  # connected: the daemon records only while someone watches

    def play() -> None:
        for p in (60, 64, 67):
            c.send((NOTE_ON, p, 100))
            time.sleep(0.1)
            c.send((NOTE_OFF, p, 0))
            time.sleep(0.1)

    player = threading.Thread(target=play)
    player.start()
    out, err = mon.communicate(timeout=30)
    player.join()
    assert mon.returncode == 0, err
    lines = [json.loads(x) for x in out.splitlines()]
    assert len(lines) == 25
    assert lines[-1]["playing"] == ["thru"] and lines[-1]["processors"] == ["thru"]
    sent = [tuple(m) for line in lines for _, _, m in line["sent"]]
    assert [(0x90, p, 100) for p in (60, 64, 67)] == [m for m in sent if m[0] == 0x90 and m[2]]
    latencies = [ns for line in lines for ns in line["latency_ns"]]
    assert latencies and all(0 <= ns < 1e9 for ns in latencies)
    # the drawn view, not on a terminal: rich prints the last frame
    drawn = subprocess.run([sys.executable, "-m", "daemon", "--config", g.config, "monitor",
                            "--count", "3"], capture_output=True, text=True, env=env, timeout=30)
    assert drawn.returncode == 0 and "playing" in drawn.stdout and "thru" in drawn.stdout, drawn.stderr
    assert g.stop() == 0
    gone = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=30)
    assert gone.returncode == 2 and "no running Genie" in gone.stderr
    assert len(gone.stderr.strip().splitlines()) == 1
