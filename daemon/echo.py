"""Genie's own output coming back to its input (a DAW's MIDI thru on the track that records
"Genie out"), recognised by what it repeats.

- Within ``window_ns`` (``midi.echo_window_ms``) an input equal to something Genie just sent is an
  echo, as before.
- A later echo would make a loop: the processor plays it again, the DAW sends it back again, for
  as long as the daemon runs. A loop is recognised by its regularity: the same message coming
  back ``repeats`` times in a row, each time the same delay (within ``tolerance_ns``: a few ms and
  one JACK period, up to
  ``loop_max_ns``: a DAW's thru takes a buffer or two) after Genie sent it. A person does not
  repeat one note that evenly that fast, nor does a sequencer (16ths at 250 BPM are 60 ms apart).
  Then that delay is learned: from then on an input that repeats an output sent that long ago is
  an echo, the loop is broken, and one log line says so and how to route around it.
- Ages are taken from the input's arrival, not from when the engine gets to it: under a flood the
  engine works through inputs that arrived before Genie sent their twin, and those are the flood,
  not an echo. Each message Genie sent comes back once: an output matched as an echo is used up, so
  a flood repeating one message is counted as the flood it is.
"""

from __future__ import annotations

import logging
from collections import deque

from daemon.events import Counters

log = logging.getLogger("genie.engine")

MS = 1_000_000


class EchoGuard:
    def __init__(self, window_ns: int, counters: Counters | None = None, loop_max_ns: int = 60 * MS,
                 repeats: int = 5, tolerance_ns: int = 3 * MS) -> None:
        self.window_ns = window_ns
        self.counters = counters or Counters()
        self.loop_max_ns = loop_max_ns
        self.repeats = repeats
        self.tolerance_ns = tolerance_ns
        self.delay_ns: int | None = None  # the echo delay learned from a loop
        self._sent: deque[tuple[int, tuple[int, ...]]] = deque()
        self._chains: dict[tuple[int, ...], tuple[int, int, int]] = {}  # msg -> (delay, count, at)

    def _keep_ns(self) -> int:
        return max(self.window_ns, self.loop_max_ns + self.tolerance_ns)

    def _prune(self, now_ns: int) -> None:
        keep = self._keep_ns()
        while self._sent and now_ns - self._sent[0][0] > keep:
            self._sent.popleft()

    def sent(self, now_ns: int, msg: tuple[int, ...]) -> None:
        """Genie sent ``msg`` at ``now_ns``."""
        self._prune(now_ns)
        self._sent.append((now_ns, msg))

    def is_echo(self, msg: tuple[int, ...], now_ns: int, arrived_ns: int | None = None) -> bool:
        """Whether the input ``msg``, handled at ``now_ns`` and arrived at ``arrived_ns`` (default:
        now), is Genie's own output coming back."""
        self._prune(now_ns)
        arrived = now_ns if arrived_ns is None else arrived_ns
        latest = None
        for i in range(len(self._sent) - 1, -1, -1):
            t, m = self._sent[i]
            if m != msg:
                continue
            age = arrived - t
            if age <= 0:  # sent after this input arrived: not its echo
                continue
            if age <= self.window_ns:
                del self._sent[i]
                return True
            if self.delay_ns is not None and abs(age - self.delay_ns) <= self.tolerance_ns:
                del self._sent[i]
                self.counters.add("dropped_echo_loop")
                return True
            if latest is None:
                latest = age
        if latest is None or latest > self.loop_max_ns:
            return False
        delay, count, _ = self._chains.get(msg, (latest, 0, now_ns))
        count = count + 1 if abs(latest - delay) <= self.tolerance_ns else 1
        self._chains[msg] = (latest, count, now_ns)
        if len(self._chains) > 256:  # forget chains that went quiet
            self._chains = {m: c for m, c in self._chains.items() if now_ns - c[2] < 1_000 * MS}
        if count < self.repeats:
            return False
        self.delay_ns = latest
        self._sent = deque((t, m) for t, m in self._sent if not (m == msg and arrived - t == latest))
        self.counters.add("echo_loops_broken")
        log.warning("Genie's output comes back to its input %.1f ms later and was looping: from now "
                    "on Genie ignores what repeats its output that long after. Turn off MIDI thru "
                    "(input monitoring) on the DAW track that records Genie out, or do not route "
                    "that track's output back to Genie in.", latest / MS)
        return True
