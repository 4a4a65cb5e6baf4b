"""Work that takes longer than an event, off the engine thread.

A *job* is a callable that takes a :class:`CancelToken` and returns an iterable of *pieces*
(usually a generator: one piece per bar of drums, per few tokens of an answer). Each piece goes
back to the engine thread, where the processor's ``on_piece(piece)`` turns it into outputs (without
``on_piece`` a piece is an ``Out`` or a list of them) that are scheduled at once. So a job streams,
and the processor's own state is touched by the engine thread only.

``Handle.cancel()`` (on the engine thread) sets the token: the job is not resumed after the piece
it is making, a job that looks at ``token.cancelled`` stops sooner, and no piece it produced is
applied after ``cancel()`` returns.

Live (:class:`ThreadedWorkers`), each processor gets a worker thread of its own at its first job,
at low priority, running its jobs in order: a long answer in one processor never delays another's.
Offline (:class:`SteppedWorkers`, ``genie play``), each job yields one piece per engine tick, in
step with the simulated clock, so the same input gives the same output.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from daemon.events import Counters, Out

log = logging.getLogger("genie.worker")


class CancelToken:
    """Set by ``Handle.cancel``; a job may look at it between steps of its own work.

    ``pause(seconds)`` lets a job that runs ahead of the music wait (live: until the time has
    passed or the job is cancelled); offline it returns at once, and the job yields ``None``
    pieces to let the simulated clock move on (each piece is one engine tick there)."""

    __slots__ = ("_event", "live")

    def __init__(self, live: bool = True) -> None:
        self._event = threading.Event()
        self.live = live

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def set(self) -> None:
        self._event.set()

    def pause(self, seconds: float) -> bool:
        """Wait ``seconds`` (live only); True when cancelled meanwhile."""
        if self.live and seconds > 0:
            return self._event.wait(seconds)
        return self.cancelled


Job = Callable[[CancelToken], Iterable[Any]]
PieceHandler = Callable[[Any], Iterable[Out] | None]


class Handle:
    """A submitted job: ``cancel()`` it when the musician plays again; ``done()`` once it ended."""

    def __init__(self, job: Job, owner: str, on_piece: PieceHandler | None = None, live: bool = True) -> None:
        self.job = job
        self.owner = owner
        self.on_piece = on_piece
        self.token = CancelToken(live)
        self._finished = threading.Event()
        self.pieces = 0  # produced so far

    def cancel(self) -> None:
        self.token.set()

    @property
    def cancelled(self) -> bool:
        return self.token.cancelled

    def done(self) -> bool:
        """The job ended (ran out of pieces, was cancelled, or raised)."""
        return self._finished.is_set()

    def _finish(self) -> None:
        self._finished.set()


def _pieces(handle: Handle, counters: Counters | None) -> Iterator[Any]:
    """The job's pieces, stopping when cancelled; an exception is logged, counted and ends it."""
    try:
        for piece in handle.job(handle.token):
            if handle.cancelled:
                return
            handle.pieces += 1
            yield piece
            if handle.cancelled:
                return
    except Exception as exc:  # reported, and the engine goes on
        log.error("a background job of %s raised %s: %s", handle.owner, type(exc).__name__, exc)
        if counters is not None:
            counters.add(f"worker_errors.{handle.owner}")


def lower_priority(nice: int = 10) -> None:
    """Lower the calling thread's scheduling priority (Linux: per-thread nice).

    Not SCHED_IDLE: a worker that holds the GIL and gets no CPU on a busy machine would hold up
    the engine thread waiting for the GIL (priority inversion)."""
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


class _WorkerThread:
    """One processor's named, low-priority thread running its jobs in order."""

    def __init__(self, owner: str, emit: Callable[[Handle, Any], None], counters: Counters | None) -> None:
        self._emit = emit
        self._counters = counters
        self._jobs: deque[Handle | None] = deque()
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"genie-worker-{owner}"[:15], daemon=True)
        self._thread.start()

    def submit(self, handle: Handle) -> None:
        with self._ready:
            self._jobs.append(handle)
            self._ready.notify()

    def _run(self) -> None:
        lower_priority()
        while True:
            with self._ready:
                while not self._jobs:
                    self._ready.wait()
                handle = self._jobs.popleft()
            if handle is None:
                return
            try:
                if not handle.cancelled:
                    for piece in _pieces(handle, self._counters):
                        self._emit(handle, piece)
            finally:
                handle._finish()

    def stop(self) -> None:
        with self._ready:
            for h in self._jobs:
                if h is not None:
                    h.cancel()
            self._jobs.append(None)
            self._ready.notify()
        self._thread.join(timeout=5)


class ThreadedWorkers:
    """Live: a worker thread per processor; pieces wait for the engine thread in one queue."""

    def __init__(self, wake: Callable[[], None] = lambda: None, counters: Counters | None = None) -> None:
        self.wake = wake  # the engine sets it: a piece wakes its thread
        self._counters = counters
        self._threads: dict[str, _WorkerThread] = {}
        self._lock = threading.Lock()
        self._pieces: deque[tuple[Handle, Any]] = deque()
        self._stopped = False

    def submit(self, owner: str, job: Job, on_piece: PieceHandler | None = None) -> Handle:
        handle = Handle(job, owner, on_piece)
        with self._lock:
            if self._stopped:
                handle.cancel()
                handle._finish()
                return handle
            worker = self._threads.get(owner)
            if worker is None:
                worker = self._threads[owner] = _WorkerThread(owner, self._emit, self._counters)
        worker.submit(handle)
        return handle

    def _emit(self, handle: Handle, piece: Any) -> None:
        with self._lock:
            self._pieces.append((handle, piece))
        self.wake()

    def collect(self, now_ns: int = 0) -> list[tuple[Handle, Any]]:
        """The pieces produced since the last call (engine thread)."""
        with self._lock:
            out = list(self._pieces)
            self._pieces.clear()
        return out

    def busy(self) -> bool:
        return False  # live pieces wake the engine themselves

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            threads = list(self._threads.values())
        for t in threads:
            t.stop()


class SteppedWorkers:
    """Offline: every running job yields one piece per ``collect`` (one engine tick)."""

    def __init__(self, counters: Counters | None = None) -> None:
        self._counters = counters
        self._running: list[tuple[Handle, Iterator[Any]]] = []

    def submit(self, owner: str, job: Job, on_piece: PieceHandler | None = None) -> Handle:
        handle = Handle(job, owner, on_piece, live=False)
        self._running.append((handle, _pieces(handle, self._counters)))
        return handle

    def collect(self, now_ns: int = 0) -> list[tuple[Handle, Any]]:
        out, still = [], []
        for handle, pieces in self._running:
            piece = next(pieces, _END) if not handle.cancelled else _END
            if piece is _END:
                handle._finish()
            else:
                out.append((handle, piece))
                still.append((handle, pieces))
        self._running = still
        return out

    def busy(self) -> bool:
        """Jobs are still running: the offline clock must keep ticking."""
        return bool(self._running)

    def stop(self) -> None:
        for handle, _ in self._running:
            handle.cancel()
            handle._finish()
        self._running = []


_END = object()


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
