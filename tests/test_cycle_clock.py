"""The JACK cycle clock and how the engine chooses to poll, on the private test server."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.config import Config
from daemon.core import NEVER_NS, EngineCore
from daemon.events import Counters
from daemon.io.jack import CycleClock
from daemon.processor import BaseProcessor

jack = pytest.mark.jack


_READ_THE_CYCLE = """
import sys, time
from daemon.io.jack import CycleClock, server_info

name = sys.argv[1]
info = server_info(name)
clock = CycleClock.open("gt-clock", name)
assert clock is not None
try:
    assert clock.nominal_ns == info.period_ns
    assert clock.realtime is False  # the test server runs without real-time threads
    got = None
    for _ in range(400):  # a loaded dummy server may be late for a cycle or two
        got = clock.cycle()
        if got is not None:
            break
        time.sleep(0.005)
    assert got is not None
    since, period = got
    assert info.period_ns // 2 <= period <= 2 * info.period_ns
    # the server's estimate of a cycle's start may lie a little ahead of now (seen: 49 us), and a
    # busy dummy server starts its next cycle late (seen: 39 ms into a 5.3 ms cycle)
    assert -period <= since < 1_000_000_000, since
    for phases in [(0.3,), (0.3, 0.75), (0.0,), (0.99,)]:
        ns = None
        for _ in range(400):  # a loaded dummy server is late for a cycle now and then
            ns = clock.ns_until(phases)
            if ns is not None:
                break
            time.sleep(0.005)
        assert ns is not None and 0 < ns <= 2 * info.period_ns, (phases, ns)
finally:
    clock.close()
assert clock.cycle() is None  # closed: no reads through a dangling client
print("ok")
"""


@jack
def test_cycle_clock_reads_the_servers_cycle(live_jack):
    """In a process of its own, as in Genie: libjack keeps per-process state, and in the test
    process a server restarted by an earlier test left it reading a dead server's cycle times
    (a start 252 ms ahead of now); Genie itself polls on a timer after its server came back."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _READ_THE_CYCLE, live_jack.name], capture_output=True,
                          text=True, timeout=60, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]


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
