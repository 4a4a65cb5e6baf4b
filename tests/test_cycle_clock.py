"""The JACK cycle clock and how the engine chooses to poll, on the private test server."""

from __future__ import annotations

import time

import pytest

from daemon.config import Config
from daemon.core import NEVER_NS, EngineCore
from daemon.events import Counters
from daemon.io.jack import CycleClock, server_info
from daemon.processor import BaseProcessor

jack = pytest.mark.jack


@jack
def test_cycle_clock_reads_the_servers_cycle(live_jack):
    info = server_info(live_jack.name)
    clock = CycleClock.open("gt-clock", live_jack.name)
    assert clock is not None
    try:
        assert clock.nominal_ns == info.period_ns
        assert clock.realtime is False  # the test server runs without real-time threads
        got = None
        for _ in range(200):  # a loaded dummy server may be late for a cycle or two
            got = clock.cycle()
            if got is not None:
                break
            time.sleep(0.005)
        assert got is not None
        since, period = got
        assert info.period_ns // 2 <= period <= 2 * info.period_ns
        assert since >= 0
        for phases in [(0.3,), (0.3, 0.75), (0.0,), (0.99,)]:
            ns = None
            for _ in range(200):  # a loaded dummy server is late for a cycle now and then
                ns = clock.ns_until(phases)
                if ns is not None:
                    break
                time.sleep(0.005)
            assert ns is not None and 0 < ns <= 2 * info.period_ns, (phases, ns)
    finally:
        clock.close()
    assert clock.cycle() is None  # closed: no reads through a dangling client


def test_cycle_clock_is_none_without_a_server():
    assert CycleClock.open("gt-clock", "genie-no-such-server") is None


class _Quiet(BaseProcessor):
    """A processor with the default (no-op) idle call."""

    def on_event(self, ev):
        return ()


class _Busy(_Quiet):
    def on_idle(self, now_ns):
        return ()


def _core(proc) -> EngineCore:
    from daemon.config import ProcessorConfig
    from daemon.core import Slot

    cfg = Config()
    slot = Slot(ProcessorConfig(name="x", label="x"), proc)
    return EngineCore(cfg, [slot], Counters())


def test_engine_does_not_wake_for_idle_calls_that_do_nothing():
    quiet, busy = _core(_Quiet()), _core(_Busy())
    assert quiet.next_wake_ns() == NEVER_NS  # nothing scheduled, nothing to do when idle
    assert busy.next_wake_ns() < NEVER_NS  # its idle call is due every idle interval
