"""Work that takes longer than an event, off the engine thread.

Live, jobs run on one low-priority worker thread and hand their outputs back to the engine, which
schedules them. Offline (``genie play``), ``InlineWorker`` runs each job at once, in step with the
simulated clock, so the same input and seed give the same output.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Iterable

from daemon.events import Out

log = logging.getLogger("genie.worker")

Job = Callable[[], Iterable[Out]]


class Handle:
    """A submitted job: cancel it when the musician plays again."""

    def __init__(self, job: Job, owner: str) -> None:
        self.job = job
        self.owner = owner
        self.cancelled = threading.Event()
        self.finished = threading.Event()

    def cancel(self) -> None:
        self.cancelled.set()

    def done(self) -> bool:
        return self.finished.is_set()


def lower_priority(nice: int = 10) -> None:
    """Lower the calling thread's scheduling priority (Linux: per-thread nice)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (AttributeError, OSError, PermissionError):
        pass


def realtime_allowed(priority: int = 1) -> bool:
    """Whether this process may put a thread in SCHED_FIFO at ``priority`` (root, or rtprio)."""
    import resource

    return os.geteuid() == 0 or resource.getrlimit(resource.RLIMIT_RTPRIO)[0] >= priority


def realtime_priority(priority: int) -> bool:
    """Put the calling thread in SCHED_FIFO at ``priority`` (Linux, with rtprio rights).

    For the engine thread: it then wakes on time however busy the machine's ordinary threads
    are. Keep ``priority`` below JACK's own threads (jackd -P, default 10; its clients run just
    under it), so the audio never waits for Genie."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        return True
    except (AttributeError, OSError, PermissionError):
        return False


class WorkerThread:
    """One named, low-priority thread running jobs in order; results go to ``deliver``."""

    def __init__(self, deliver: Callable[[str, list[Out]], None], name: str = "genie-worker") -> None:
        self._deliver = deliver
        self._jobs: queue.Queue[Handle | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, job: Job, owner: str) -> Handle:
        handle = Handle(job, owner)
        self._jobs.put(handle)
        return handle

    def _run(self) -> None:
        lower_priority()
        while (handle := self._jobs.get()) is not None:
            if handle.cancelled.is_set():
                handle.finished.set()
                continue
            try:
                outs = list(handle.job())
            except Exception as exc:  # reported, and the engine goes on
                log.error("worker job of %s raised %s: %s", handle.owner, type(exc).__name__, exc)
                outs = []
            handle.finished.set()
            if not handle.cancelled.is_set():
                self._deliver(handle.owner, outs)

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=5)


class InlineWorker:
    """Offline stand-in with the same interface: the job runs at submission, deterministically."""

    def __init__(self, deliver: Callable[[str, list[Out]], None]) -> None:
        self._deliver = deliver

    def start(self) -> None:
        pass

    def submit(self, job: Job, owner: str) -> Handle:
        handle = Handle(job, owner)
        self._deliver(owner, list(job()))
        handle.finished.set()
        return handle

    def stop(self) -> None:
        pass


class StressWorker:
    """Keeps a thread busy with pure-Python work (holding the GIL): the benchmark's worst case."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="genie-stress", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        lower_priority()
        x = 0
        while not self._stop.is_set():
            for i in range(20_000):
                x = (x * 31 + i) % 1_000_003

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
