"""Round-trip latency through real JACK ports: Genie against the transport and the rtmidi floor.

One private JACK dummy server, one measuring client (``bench probe``) and four targets:

- ``a``: the probe's output wired to its own input: the JACK transport alone;
- ``b``: ``python -m daemon.bench.thru_client``, a minimal rtmidi client whose input callback sends
  each message straight back: the floor for a Python program on rtmidi;
- ``c``: ``genie run -p thru``;
- ``c_busy``: ``genie run -p thru --stress-worker`` (a worker thread in Genie keeps busy with
  pure-Python work, holding the GIL);
- ``b_busy``: (b) again while a separate process does the same pure-Python work at the same
  niceness: the control for ``c_busy``. A busy core costs xruns on a small machine whoever is
  busy; ``c_busy`` against ``b_busy`` shows what Genie's design adds to that, like for like.

The thru client and the plain Genie run for the whole benchmark. The busy Genie and the busy
process start before each of their runs and stop after: they would otherwise take a CPU core
from the other runs. The
probe is rewired to one target per run, and the runs alternate a b c c' b' a b ... Each run sends
notes one at a time until ``n`` echoes came back: wait a random time within one JACK period (so the
send phase samples the cycle fairly), send, wait for the echo (deadline 1 s, else it counts as
lost), and record arrival stamp - send stamp, both from ``time.perf_counter_ns``. The echo arrives
before the next send, so replies never overlap. Note-on and note-off alternate and the pitch steps
on, so no message repeats within Genie's echo window.

xruns come from the server log, read per run and split by the client blamed
(``JackEngine::XRun: client = NAME was not finished``); a late dummy-driver cycle names no client
and counts as ``driver``. The verdict counts a target's own xruns: the late cycles in which its
program was the only one late. When the machine stalls (on a VM, a descheduled virtual CPU),
every client is late in the same cycle, the idle ones included; those cycles are no program's
doing and are counted in the totals, which are printed too.

Rounds. One round runs every target once. On a virtual machine the host now and then takes a
CPU away for milliseconds (steal time, read from /proc/stat around each run); every client then
misses cycles at once, whichever round it falls in. A round in which any run lost more than
``STEAL_LIMIT`` of the CPUs' time is disturbed: the benchmark reports it and runs another, until
``repeats`` clean rounds (at most ``MAX_ROUNDS_PER_REPEAT`` times as many rounds in all). The
figures and the verdict come from the clean rounds (from all, said so, where none was clean). On
hardware steal is 0 and every round is clean.
"""

from __future__ import annotations

import contextlib
import math
import queue
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from daemon.io.child import start_child, stop_child

SERVER_NAME = "genie-bench"
PROBE_NAME = "bench probe"  # measuring client: ports "bench probe play:play", "... listen:listen"
THRU_NAME = "bench thru"
TARGET_MS = 0.5  # p99 of (c) may be at most this much above p99 of (b)
DEADLINE_S = 1.0  # an echo later than this counts as lost
WARMUP = 20  # untimed round trips after each rewiring
MAX_LOST_IN_A_ROW = 10  # then the server or the target is stuck: stop
STEAL_LIMIT = 0.02  # a run that lost more of the CPUs' time than this to the host is disturbed
MAX_ROUNDS_PER_REPEAT = 3  # rounds run at most, per clean round asked for
FIGURES = ("p50", "p99", "max", "jitter")
JITTER = "standard deviation of the round trip (population)"

TARGETS = (  # key, short name, label
    ("a", "a", "client -> client (JACK transport)"),
    ("b", "b", "rtmidi thru client (Python floor)"),
    ("c", "c", "genie run -p thru"),
    ("c_busy", "c'", "genie run -p thru, busy worker"),
    ("b_busy", "b'", "rtmidi thru client, busy process"),
)
LABELS = {key: label for key, _, label in TARGETS}
SHORT = {key: short for key, short, _ in TARGETS}


# ---- statistics (pure) -------------------------------------------------------------------------

def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of sorted values, interpolated linearly (numpy's default)."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """n, p50, p99, max, jitter (population standard deviation) and mean of the samples."""
    values = sorted(samples)
    n = len(values)
    if n == 0:
        return {"n": 0, "p50": math.nan, "p99": math.nan, "max": math.nan, "jitter": math.nan,
                "mean": math.nan}
    mean = math.fsum(values) / n
    var = math.fsum((v - mean) ** 2 for v in values) / n
    return {"n": n, "p50": percentile(values, 50), "p99": percentile(values, 99),
            "max": values[-1], "jitter": math.sqrt(var), "mean": mean}


def chance_difference(x: int, y: int) -> float:
    """How far apart two counts of rare events at one rate may fall by chance: two standard
    deviations of the difference of two Poisson counts (variance x + y; at least 1 each)."""
    return 2.0 * math.sqrt(max(x, 1) + max(y, 1))


def spread(per_repeat: Sequence[dict[str, float]]) -> dict[str, float]:
    """Max - min of each figure across repeats (0 for one repeat)."""
    return {k: max(s[k] for s in per_repeat) - min(s[k] for s in per_repeat) for k in FIGURES}


# ---- time the host took (virtual machines) ------------------------------------------------------

def cpu_times() -> tuple[int, int] | None:
    """(steal, total) clock ticks of all CPUs so far, from /proc/stat; None where there is none.

    Steal is time a hypervisor ran something else while this machine's virtual CPU wanted to
    run: every thread on that CPU, JACK's real-time ones included, stands still meanwhile."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    ticks = [int(x) for x in fields[1:9]]  # user nice system idle iowait irq softirq steal
    return ticks[7], sum(ticks)


def steal_fraction(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float:
    """The share of the CPUs' time the host took between two ``cpu_times`` (0 where unknown)."""
    if before is None or after is None or after[1] <= before[1]:
        return 0.0
    return (after[0] - before[0]) / (after[1] - before[1])


# ---- xruns from the server log -----------------------------------------------------------------

_LATE = re.compile(r"client = (.+?) was not finished|client (.+?) finished after current callback")
_ROLES = ("in", "out", "play", "listen")  # the last word of a client's name: which port it holds


def program_of(client: str) -> str:
    """The program behind a JACK client: Genie, the thru client and the probe each open one client
    per port, named ``<program> in``/``out`` (``play``/``listen`` for the probe)."""
    head, _, last = client.rpartition(" ")
    return head if head and last in _ROLES else client


def classify_xruns(lines: Sequence[str]) -> dict:
    """Count xrun reports from a jackd log: per client blamed; ``driver`` for late cycles that
    blame nobody; and, per late cycle, which programs were late.

    jackd reports each late cycle as a block of lines, one per client whose thread was woken but
    had not finished (clients still waiting on a late one are not named). When the machine
    stalls, every program is late in the same cycle; ``alone`` counts the cycles in which one
    program was the only one late: that program's own xruns."""
    clients: Counter[str] = Counter()
    alone: Counter[str] = Counter()
    driver = cycles = 0
    block: set[str] = set()

    def close_block() -> None:
        nonlocal cycles
        if block:
            cycles += 1
            programs = {program_of(c) for c in block}
            if len(programs) == 1:
                alone[programs.pop()] += 1
            block.clear()

    for line in lines:
        m = _LATE.search(line)
        if m:
            client = m.group(1) or m.group(2)
            if client in block:  # the next cycle's block began
                close_block()
            block.add(client)
            clients[client] += 1
            continue
        close_block()
        if "XRun" in line or "xrun" in line:
            driver += 1
    close_block()
    return {"total": driver + sum(clients.values()), "driver": driver,
            "clients": dict(sorted(clients.items())),
            "cycles": cycles, "alone": dict(sorted(alone.items()))}


class ServerLog:
    """Reads the server log from where it was last read (whole lines only)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def skip(self) -> None:
        self.read()

    def read(self) -> list[str]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return []
        end = data.rfind(b"\n") + 1
        self.offset += end
        return data[:end].decode(errors="replace").splitlines()


# ---- the measurement ---------------------------------------------------------------------------

def note_stream() -> Iterator[tuple[int, int, int]]:
    """Note-on, note-off, next pitch: no message repeats within Genie's echo window."""
    i = 0
    while True:
        pitch = 36 + (i // 2) % 48
        yield (0x90, pitch, 100) if i % 2 == 0 else (0x80, pitch, 0)
        i += 1


def _key(msg: Sequence[int]) -> tuple[bool, int] | None:
    """What identifies an echo: note on or off, and the pitch (the channel may change)."""
    if len(msg) != 3 or msg[0] & 0xF0 not in (0x80, 0x90):
        return None
    return (msg[0] & 0xF0 == 0x90 and msg[2] > 0, msg[1])


@dataclass
class RunResult:
    samples_ns: list[int]
    lost: int
    stray: int
    duration_s: float


def measure(probe, n: int, period_s: float, rng: random.Random, notes: Iterator,
            progress: Callable[[int], None] | None = None,
            deadline_s: float = DEADLINE_S) -> RunResult:
    """Round trips one at a time, each after a random wait within one period, until ``n`` came
    back. A lost note-on is sent again (Genie drops a note-off for a note it never saw); a lost
    note-off is not."""
    samples: list[int] = []
    lost = stray = in_a_row = 0
    started = time.monotonic()
    msg = None
    while len(samples) < n:
        if msg is None:
            msg = next(notes)
        key = _key(msg)
        time.sleep(rng.uniform(0.0, period_s))
        t0 = probe.send(msg)
        t, skipped = await_reply(probe, t0, lambda got: _key(got) == key, deadline_s)
        stray += skipped  # late echoes, or the note-off of a re-triggered note
        if t is None:
            lost += 1
            in_a_row = check_lost(in_a_row + 1)
            if not key[0]:
                msg = None
            continue
        samples.append(t - t0)
        in_a_row = 0
        msg = None
        # after the echo, before the next send: outside any round trip
        if progress is not None and len(samples) % 50 == 0:
            progress(50)
    if progress is not None and n % 50:
        progress(n % 50)
    return RunResult(samples, lost, stray, time.monotonic() - started)


def await_reply(probe, t0: int, matches: Callable[[tuple], bool],
                deadline_s: float) -> tuple[int | None, int]:
    """Wait for the reply ``matches`` accepts to a message sent at ``t0``: (its arrival stamp,
    or None when ``deadline_s`` passed; how many other messages came first)."""
    from daemon.events import now_ns

    skipped = 0
    end_ns = t0 + int(deadline_s * 1e9)
    while (left := (end_ns - now_ns()) / 1e9) > 0:
        try:
            t, got = probe.received.get(timeout=left)
        except queue.Empty:
            break
        if matches(got):
            return t, skipped
        skipped += 1
    return None, skipped


def check_lost(in_a_row: int) -> int:
    """Replies lost in a row so far; too many means the server or the target is stuck."""
    if in_a_row >= MAX_LOST_IN_A_ROW:
        raise RuntimeError(f"{in_a_row} replies in a row did not come back "
                           "(the JACK server or the target is stuck)")
    return in_a_row


def _drain(q: queue.Queue) -> None:
    with contextlib.suppress(queue.Empty):
        while True:
            q.get_nowait()


def jack_connect(src: str, dst: str, connect: bool = True) -> None:
    tool = "jack_connect" if connect else "jack_disconnect"
    done = subprocess.run([tool, src, dst], capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise RuntimeError(f"{tool} {src!r} {dst!r} failed: "
                           f"{(done.stderr or done.stdout).strip()}")


@dataclass
class Target:
    key: str
    program: str  # whose xruns are its own (``program_of`` its JACK clients)
    wires: list[tuple[str, str]]  # (output port, input port) connected for its runs
    start: Callable[[], None] | None = None  # started before each run, stopped after
    stop: Callable[[], None] | None = None


class ThruClient:
    """``python -m daemon.bench.thru_client`` as a child process."""

    def __init__(self, name: str = THRU_NAME) -> None:
        from daemon.bench.thru_client import READY_MARK

        self.proc, self.lines = start_child(
            [sys.executable, "-m", "daemon.bench.thru_client", "--name", name], READY_MARK, 30,
            "the thru client")
        self.play_into = f"{name} in:in"
        self.listen_to = f"{name} out:out"

    def stop(self) -> None:
        stop_child(self.proc)


class BusyNeighbour:
    """A separate process doing what Genie's stress worker does (pure Python, niced the same)."""

    SPIN = ("import os\nos.nice(10)\nx = 0\nwhile True:\n"
            "    for i in range(20_000):\n        x = (x * 31 + i) % 1_000_003\n")

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", self.SPIN],
                                     stdin=subprocess.DEVNULL)

    def stop(self) -> None:
        stop_child(self.proc)
        self.proc = None


def _genie(workdir: Path, name: str, client: str, in_port: str, out_port: str,
           busy: bool):
    """A ``genie run -p thru`` on JACK with its own names (and its own pidfile)."""
    from daemon.rigs.loopback import GenieProcess

    config = workdir / f"{name}.toml"
    config.write_text(f'[midi]\napi = "jack"\nclient_name = "{client}"\n'
                      f'input_port = "{in_port}"\n\n[keyboard]\nenabled = "off"\n\n'
                      f'[gamepad]\nenabled = "off"\n')
    args = ["-p", "thru", "--api", "jack", "-o", out_port]
    if busy:
        args.append("--stress-worker")
    return GenieProcess(args, config=str(config))


def _server(period: int, rate: int, realtime: bool):
    """The benchmark's private server; ``realtime`` runs ``jackd -R`` (needs rtprio rights)."""
    from daemon.io.jack import DummyServer

    return DummyServer(name=SERVER_NAME, period=period, rate=rate, realtime=realtime)


def run_latency(period: int = 64, rate: int = 48000, n: int = 2000, repeats: int = 3,
                seed: int = 0, realtime: bool = False,
                progress: Callable[[int], None] | None = None,
                status: Callable[[str], None] | None = None) -> dict:
    """Run the whole benchmark on a private JACK server; returns the figures as a plain dict."""
    from daemon.io.jack import server_info
    from daemon.rigs.loopback import PortClient

    say = status or (lambda msg: None)
    runs: dict[str, list[dict]] = {key: [] for key in LABELS}
    samples_ms: dict[str, list[list[float]]] = {key: [] for key in LABELS}  # per run
    between = []
    with tempfile.TemporaryDirectory(prefix="genie-bench-") as tmp, contextlib.ExitStack() as stack:
        server = _server(period, rate, realtime)
        say(f"starting JACK dummy server {SERVER_NAME!r} ({period} frames at {rate} Hz)")
        server.start()  # also points this process (and its children) at the server
        stack.callback(server.stop)
        info = server_info(SERVER_NAME)
        period_s = info.buffer_frames / info.sample_rate if info else period / rate
        log = ServerLog(server.log_path)

        say("starting the targets")
        thru = ThruClient()
        stack.callback(thru.stop)
        genie = _genie(Path(tmp), "c", "Genie bench", "Genie in", "Genie out", busy=False).start()
        stack.callback(genie.stop)
        busy = _genie(Path(tmp), "c_busy", "Genie bench busy", "Genie busy in", "Genie busy out",
                      busy=True)
        neighbour = BusyNeighbour()
        probe = PortClient(PROBE_NAME, target_in=None, target_out=None)
        stack.callback(probe.close)
        stack.callback(busy.stop)
        stack.callback(neighbour.stop)
        play, listen = f"{PROBE_NAME} play:play", f"{PROBE_NAME} listen:listen"
        targets = [
            Target("a", PROBE_NAME, [(play, listen)]),  # nothing between
            Target("b", THRU_NAME, [(play, thru.play_into), (thru.listen_to, listen)]),
            Target("c", "Genie", [(play, "Genie in:Genie in"), ("Genie out:Genie out", listen)]),
            Target("c_busy", "Genie busy", [(play, "Genie busy in:Genie busy in"),
                                            ("Genie busy out:Genie busy out", listen)],
                   start=busy.start, stop=busy.stop),
            Target("b_busy", THRU_NAME, [(play, thru.play_into), (thru.listen_to, listen)],
                   start=neighbour.start, stop=neighbour.stop),
        ]

        rng = random.Random(seed)
        notes = note_stream()
        between.extend(log.read())
        rounds: list[dict] = []  # one per round a b c c' b': its number, each run's steal
        while (sum(r["clean"] for r in rounds) < repeats
               and len(rounds) < MAX_ROUNDS_PER_REPEAT * repeats):
            repeat = len(rounds)
            rounds.append({"round": repeat + 1, "steal": {}})
            for t in targets:
                name = f"{SHORT[t.key]} ({LABELS[t.key]})"
                clean = sum(r["clean"] for r in rounds[:-1])
                say(f"round {repeat + 1} ({clean}/{repeats} clean): {name}")
                if t.start:
                    t.start()
                try:
                    for src, dst in t.wires:
                        jack_connect(src, dst)
                    _drain(probe.received)
                    try:
                        measure(probe, WARMUP, period_s, rng, notes)  # raises when stuck
                        between.extend(log.read())
                        cpu_before = cpu_times()
                        result = measure(probe, n, period_s, rng, notes, progress)
                        stolen = steal_fraction(cpu_before, cpu_times())
                    except RuntimeError as exc:
                        raise RuntimeError(f"run {repeat + 1} of {name}: {exc}; "
                                           f"see {server.log_path}") from None
                    xruns = classify_xruns(log.read())
                finally:
                    for src, dst in t.wires:
                        with contextlib.suppress(RuntimeError, OSError, subprocess.SubprocessError):
                            jack_connect(src, dst, connect=False)
                    if t.stop:
                        t.stop()
                ms = [s / 1e6 for s in result.samples_ns]
                samples_ms[t.key].append(ms)
                runs[t.key].append({"repeat": repeat + 1, **summarize(ms), "lost": result.lost,
                                    "stray": result.stray,
                                    "duration_s": round(result.duration_s, 3), "xruns": xruns,
                                    "own_xruns": xruns["alone"].get(t.program, 0),
                                    "steal": stolen})
                rounds[-1]["steal"][t.key] = stolen
                between.extend(log.read())
            rounds[-1]["clean"] = all(v <= STEAL_LIMIT for v in rounds[-1]["steal"].values())
        between.extend(log.read())
        engine = next((line.split("engine thread: ", 1)[1] for line in genie.log_lines
                       if "engine thread: " in line), "unknown")
    # The figures come from the clean rounds; where there were none, from all of them (and the
    # report says so). Disturbed rounds are listed with what the host took.
    keep = [i for i, r in enumerate(rounds) if r["clean"]] or list(range(len(rounds)))
    runs = {k: [v[i] for i in keep] for k, v in runs.items()}
    pooled = {k: [x for i in keep for x in v[i]] for k, v in samples_ms.items()}
    return report(runs, pooled, classify_xruns(between), n=n, repeats=repeats, seed=seed,
                  server={"name": SERVER_NAME,
                          "period_frames": info.buffer_frames if info else period,
                          "rate": info.sample_rate if info else rate,
                          "period_ms": period_s * 1e3, "realtime": realtime},
                  engine=engine, rounds=rounds)


def report(runs: dict[str, list[dict]], samples_ms: dict[str, list[float]], between: dict, *,
           n: int, repeats: int, seed: int, server: dict, engine: str = "unknown",
           rounds: list[dict] | None = None) -> dict:
    """Pool the runs into the benchmark's figures and verdict (pure: unit-testable).

    ``runs`` and ``samples_ms`` hold the rounds the figures come from; ``rounds`` lists every
    round run, with the CPU time the host took in each of its runs and whether it was clean."""
    targets = {}
    for key in runs:
        per_run = runs[key]
        targets[key] = {
            "name": SHORT[key],
            "label": LABELS[key],
            **summarize(samples_ms[key]),
            "lost": sum(r["lost"] for r in per_run),
            "spread": spread(per_run) if per_run else {k: math.nan for k in FIGURES},
            "xruns_per_run": [r["xruns"]["total"] for r in per_run],
            "own_xruns_per_run": [r["own_xruns"] for r in per_run],
            "runs": per_run,
        }

    def versus(key: str, floor: str = "b") -> dict:
        # Each repeat's run sits next to its floor's run in time, so the pair shares the
        # machine's load; the median of the paired differences shrugs off one disturbed repeat.
        pairs = list(zip(runs[key], runs[floor]))
        p99 = [r["p99"] - b["p99"] for r, b in pairs]
        # Own xruns are rare events: pooled counts, and what chance alone gives their difference.
        mine, its = (sum(r["own_xruns"] for r in runs[k]) for k in (key, floor))
        total = [r["xruns"]["total"] - b["xruns"]["total"] for r, b in pairs]
        return {"p99": statistics.median(p99) if p99 else math.nan,
                "p99_per_repeat": p99,
                "p99_pooled": targets[key]["p99"] - targets[floor]["p99"],
                "own_xruns": mine,
                "floor_own_xruns": its,
                "extra_xruns": mine - its,
                "extra_xruns_per_repeat": [r["own_xruns"] - b["own_xruns"] for r, b in pairs],
                "chance_xruns": chance_difference(mine, its),
                "extra_total_xruns": statistics.median(total) if total else math.nan,
                "extra_total_xruns_per_repeat": total}

    vs_b = {key: versus(key) for key in ("c", "c_busy")}
    like_for_like = versus("c_busy", "b_busy") if runs.get("b_busy") else None
    latency_ok = all(v["p99"] <= TARGET_MS for v in vs_b.values())
    xruns_ok = all(v["extra_xruns"] <= v["chance_xruns"] for v in vs_b.values())
    return {
        "benchmark": "latency",
        "units": "ms",
        "jitter": JITTER,
        "spread": "max - min of each figure across repeats",
        "minus_b_is": "median over repeats of (run - its repeat's b run); p99_pooled: all samples",
        "own_xruns_are": "late cycles in which the target's program was the only one late",
        "server": server,
        "genie_engine": engine,  # how genie run's engine thread polled (from its log)
        "n": n,
        "repeats": repeats,
        "seed": seed,
        "order": [key for key in runs],
        "targets": targets,
        "minus_b": vs_b,
        "c_busy_minus_b_busy": like_for_like,  # information: the verdict is against (b)
        "xruns_between_runs": between,
        "steal_limit": STEAL_LIMIT,
        "rounds": rounds or [],
        "clean_rounds": sum(r["clean"] for r in rounds) if rounds else None,
        "target_ms": TARGET_MS,
        "verdict": {"latency": latency_ok, "xruns": xruns_ok, "pass": latency_ok and xruns_ok},
    }
