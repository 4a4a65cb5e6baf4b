"""``genie run`` on a real-time JACK server: the engine thread runs SCHED_FIFO and polls at fixed
points of each JACK cycle (daemon.engine), and still plays every note in order.

Its own private server (``jackd -S -R``, 64 frames), started only for this module; skipped where this
user may not use real-time priority, or where jackd could not get real-time threads.
"""

from __future__ import annotations

import os

import pytest
from jack_helpers import NOTE_OFF, NOTE_ON, config_text, running

from daemon.rigs.loopback import GenieProcess, PortClient
from daemon.workers import realtime_allowed


@pytest.fixture(scope="module")
def rt_server(tmp_path_factory, jack_server):  # after the session's server: its env is restored
    from daemon.io.jack import CycleClock, DummyServer

    if not realtime_allowed():
        pytest.skip("this user may not use real-time priority (no rtprio rights)")
    name = os.environ.get("GENIE_TEST_JACK_SERVER", "genie-test") + "-rt"
    # synchronous, as the session's server: asynchronous JACK drops a late client's MIDI under load
    server = DummyServer(name=name, period=64, realtime=True, sync=True,
                         log_path=tmp_path_factory.mktemp("jackd-rt") / "jackd.log")
    with running(server):
        clock = CycleClock.open("gt-rt-check", name)
        realtime = clock is not None and clock.realtime
        if clock is not None:
            clock.close()
        if not realtime:
            pytest.skip("jackd -R did not get real-time threads here")
        yield server


@pytest.mark.jack
def test_realtime_engine_polls_in_jack_cycles_and_keeps_every_note(rt_server, tmp_path):
    config = tmp_path / "genie.toml"
    config.write_text(config_text(midi="echo_window_ms = 0"))
    env = {"XDG_RUNTIME_DIR": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
           "XDG_STATE_HOME": str(tmp_path / "state"), **rt_server.env()}
    genie = GenieProcess([], env=env, config=str(config)).start()
    client = None
    try:
        client = PortClient("gt-rt")  # opens on rt_server: its env is this process's now
        pitches = list(range(40, 90))
        for p in pitches:
            client.send((NOTE_ON, p, 64))
            client.send((NOTE_OFF, p, 0))
        got = [m for _, m in client.expect(2 * len(pitches), timeout_s=10)]
        assert got == [m for p in pitches for m in ((NOTE_ON, p, 64), (NOTE_OFF, p, 0))], (
            "\n".join([genie.log, "jackd xruns:", *rt_server.xruns()[-20:]]))
        assert any("SCHED_FIFO 1; polls at 30% and 75% of each JACK cycle" in line
                   for line in genie.log_lines), genie.log
    finally:
        assert genie.stop() == 0, genie.log
        if client is not None:
            client.close()
