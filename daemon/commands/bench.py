"""``genie bench``: measurements on real ports. Each subcommand takes ``--json`` and then prints
one JSON object with its figures on stdout (progress and logs go to stderr)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys

import click

from daemon.cli import PluginGroup


def json_option(fn):
    return click.option("--json", "as_json", is_flag=True,
                        help="Print one JSON object with the figures instead of a table.")(fn)


def server_options(fn):
    """--period and --rate of the private JACK dummy server."""
    fn = click.option("--rate", default=48000, show_default=True,
                      type=click.IntRange(8000, 192000), help="Sample rate of the dummy server.")(fn)
    return click.option("--period", default=64, show_default=True, type=click.IntRange(16, 4096),
                        help="JACK period in frames (64 at 48 kHz = 1.33 ms).")(fn)


def run_options(n: int, counted: str, alternation: str = "", repeats_help: str = ""):
    """-n/--count (``counted`` per run) and --repeats (of ``alternation``, when it has one)."""
    def add(fn):
        fn = click.option("--repeats", default=3, show_default=True, type=click.IntRange(1),
                          help=repeats_help or (f"Times the alternation {alternation} is repeated."
                                                if alternation else "Runs of each target."))(fn)
        return click.option("-n", "--count", "n", default=n, show_default=True,
                            type=click.IntRange(1), help=f"{counted} per run.")(fn)
    return add


def seed_option(fn):
    return click.option("--seed", default=0, show_default=True, type=int,
                        help="Seed of the random waits that vary the send phase.")(fn)


@click.group(cls=PluginGroup)
def bench() -> None:
    """Benchmarks on real MIDI ports (a private JACK dummy server); each takes --json."""


@bench.command()
@server_options
@run_options(2000, "Round trips", "a b c c' b'",
             "Clean rounds of a b c c' b' wanted; a round in which the host (hypervisor) took "
             "over 2% of the CPUs' time is run again, up to 3 times as many rounds in all.")
@seed_option
@click.option("--realtime/--no-realtime", default=None,
              help="Run jackd -R (real-time threads), as for live use [default: when this user "
                   "may (root or rtprio)]. A server without real-time threads measures the "
                   "machine's load more than the clients, and Genie's engine then polls on a timer.")
@json_option
def latency(period: int, rate: int, n: int, repeats: int, seed: int, realtime: bool,
            as_json: bool) -> None:
    """Round-trip latency: transport (a), rtmidi thru client (b), genie run (c), busy worker (c'),
    and (b) beside a busy process (b'), the control for (c').

    One JACK dummy server ("genie-bench"); runs alternate a b c c' b' a b ... in rounds, n round
    trips each, until --repeats rounds were clean (steal time under 2% in every run). Prints p50, p99, max and jitter (standard deviation) in ms, their spread across the
    repeats (max - min), xruns per run (own: late cycles in which only the target was late), and
    (c) - (b) at p99 against the 0.5 ms target and in own xruns against 0. The exit code is 0
    whether or not the targets are met: the verdict is printed.
    """
    from daemon.bench.latency import run_latency
    from daemon.io.jack import jackd_available
    from daemon.workers import realtime_allowed

    if realtime is None:
        realtime = realtime_allowed()
    if not jackd_available():
        raise click.ClickException("jackd is not installed (apt-get install jackd2)")
    result = measure("genie bench latency", 5 * n * repeats, as_json, run_latency,
                     period=period, rate=rate, n=n, repeats=repeats, seed=seed, realtime=realtime)
    click.echo(json.dumps(_clean(result), indent=1) if as_json else format_latency(result))


@bench.command()
@server_options
@run_options(1000, "Presses and releases timed", "b thru notes cc gamepad")
@seed_option
@json_option
@click.option("--processor", "-p", "processor", metavar="NAME", default=None,
              help="Also time note-button presses through a second Genie playing this processor "
                   "(e.g. pianogenie), against the same floors.")
@click.option("--neighbour", metavar="NAME", default=None,
              help="With --processor: also time the presses through a Genie that runs that "
                   "processor beside NAME, which hears its notes (a chain) and keeps its own "
                   "worker busy (e.g. musiclm answering); target: p99 within 0.5 ms of the "
                   "processor alone.")
@click.option("--neighbour-options", metavar="TOML", default="",
              help='The neighbour\'s options, as inside a TOML inline table (e.g. "silence_ms = 50.0").')
def controllers(period: int, rate: int, n: int, repeats: int, seed: int, as_json: bool,
                processor: str | None, neighbour: str | None, neighbour_options: str) -> None:
    """Button press to note out, p50/p99, against the thru floor (MIDI controllers, gamepads).

    Note buttons and CC buttons into a genie run -p thru, timed from each message's send stamp
    to its note on Genie's output, and gamepad buttons read by the same Genie through its evdev
    device loop, timed from each input event's own time stamp; against notes passed through by
    the same Genie (thru) and the rtmidi thru client (b). With --processor, press-to-note through
    that processor too (any processor that answers a press with a note).
    """
    from daemon.bench.controllers import TARGETS, format_controllers, run_controllers
    from daemon.io.jack import jackd_available

    if not jackd_available():
        raise click.ClickException("jackd is not installed (apt-get install jackd2)")
    if neighbour and not processor:
        raise click.BadParameter("needs --processor", param_hint="--neighbour")
    from daemon.processor import ProcessorError, available

    for name in filter(None, (processor, neighbour)):
        if name not in available():
            raise ProcessorError(f"no processor named {name!r} (available: "
                                 f"{', '.join(sorted(available()))})")
    targets = len(TARGETS) + (1 if processor else 0) + (1 if neighbour else 0)
    result = measure("genie bench controllers", targets * n * repeats, as_json,
                     run_controllers, period=period, rate=rate, n=n, repeats=repeats, seed=seed,
                     model=processor, neighbour=neighbour, neighbour_options=neighbour_options)
    click.echo(json.dumps(_clean(result), indent=1) if as_json else format_controllers(result))


@bench.command()
@server_options
@click.option("--processor", "-p", "processor", metavar="NAME", required=True,
              help="The clocked processor to time (e.g. drumvae).")
@click.option("--bpm", default=120.0, show_default=True, type=click.FloatRange(20, 400))
@click.option("--bars", default=16, show_default=True, type=click.IntRange(2), help="Bars per run.")
@click.option("--repeats", default=2, show_default=True, type=click.IntRange(1))
@json_option
def clock(period: int, rate: int, processor: str, bpm: float, bars: int, repeats: int, as_json: bool) -> None:
    """A clocked processor's notes against their due times on the DAW's clock, through JACK.

    A probe sends MIDI clock (and Start, Stop) into genie run with the processor (clock = true);
    the same clock played offline says when each note is due; the jitter of the notes' arrival
    around their due times is compared with a plain client's sending at the same times
    (target: p99 at most 0.5 ms above it)."""
    from daemon.bench.clocked import format_clocked, run_clocked
    from daemon.io.jack import jackd_available
    from daemon.processor import ProcessorError, available

    if not jackd_available():
        raise click.ClickException("jackd is not installed (apt-get install jackd2)")
    if processor not in available():
        raise ProcessorError(f"no processor named {processor!r} (available: {', '.join(sorted(available()))})")
    result = measure("genie bench clock", (bars * 4 + 1) * repeats, as_json, run_clocked,
                     processor=processor, bpm=bpm, bars=bars, period=period, rate=rate, repeats=repeats)
    click.echo(json.dumps(_clean(result), indent=1) if as_json else format_clocked(result))


@bench.command()
@server_options
@click.option("--processor", "-p", "processor", metavar="NAME", required=True,
              help="A processor that answers a control change with notes (e.g. musiclm).")
@click.option("--options", "options", metavar="TOML", default="",
              help='Its options, as inside a TOML inline table (musiclm: "answer_cc = 20, '
                   'silence_ms = 60000.0").')
@click.option("--trigger-cc", default=20, show_default=True, type=click.IntRange(0, 119))
@click.option("-n", "--count", "n", default=20, show_default=True, type=click.IntRange(1))
@json_option
def answer(period: int, rate: int, processor: str, options: str, trigger_cc: int, n: int,
           as_json: bool) -> None:
    """From asking for an answer (a CC) to its first note, through JACK (target: 50 ms)."""
    from daemon.bench.answer import format_answer, run_answer
    from daemon.io.jack import jackd_available
    from daemon.processor import ProcessorError, available

    if not jackd_available():
        raise click.ClickException("jackd is not installed (apt-get install jackd2)")
    if processor not in available():
        raise ProcessorError(f"no processor named {processor!r} (available: {', '.join(sorted(available()))})")
    result = measure("genie bench answer", n, as_json, run_answer, processor=processor,
                     options=options, trigger_cc=trigger_cc, n=n, period=period, rate=rate)
    click.echo(json.dumps(_clean(result), indent=1) if as_json else format_answer(result))


@bench.command()
@click.option("--period", default=256, show_default=True, type=click.IntRange(16, 4096),
              help="JACK period in frames of the dummy server.")
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(1),
              help="Starts of each setup (thru, all models), alternating.")
@json_option
def startup(period: int, repeats: int, as_json: bool) -> None:
    """Seconds from launch to READY and resident memory once warm, with every shipped model
    loaded, beside thru (targets with ONNX Runtime: 1 s, 150 MB)."""
    from daemon.bench.startup import format_startup, run_startup
    from daemon.io.jack import jackd_available

    if not jackd_available():
        raise click.ClickException("jackd is not installed (apt-get install jackd2)")
    result = measure("genie bench startup", 2 * repeats, as_json, run_startup, repeats=repeats,
                     period=period)
    click.echo(json.dumps(_clean(result), indent=1) if as_json else format_startup(result))


def measure(label: str, total: int, as_json: bool, fn, **kwargs) -> dict:
    """Run a benchmark function with a progress bar on stderr (none with --json); stdout stays
    the result's, and its RuntimeError becomes a one-line error."""
    with _stdout_to_stderr():  # whatever libjack or a child prints
        try:
            if as_json:
                return fn(progress=None, status=None, **kwargs)
            with click.progressbar(length=total, label=label, file=sys.stderr, show_pos=True,
                                   width=24) as bar:
                def status(msg: str) -> None:
                    bar.label = msg

                return fn(progress=bar.update, status=status, **kwargs)
        except RuntimeError as exc:
            raise click.ClickException(str(exc)) from None


@contextlib.contextmanager
def _stdout_to_stderr():
    """Point file descriptor 1 at stderr for a while (C libraries and children print there)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _clean(obj):
    """JSON has no NaN: missing figures become null; floats keep 4 decimals (0.1 us)."""
    if isinstance(obj, float):
        return None if not math.isfinite(obj) else round(obj, 4)
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def format_latency(r: dict) -> str:
    """The human-readable table of ``run_latency``'s result."""
    s = r["server"]
    lines = [
        f"genie bench latency: JACK dummy server {s['name']!r}, {s['period_frames']} frames at "
        f"{s['rate']} Hz (period {s['period_ms']:.3f} ms"
        f"{', real-time' if s.get('realtime') else ', not real-time'}); n={r['n']} per run, "
        f"{r['repeats']} repeat(s), runs alternated "
        f"{' '.join(t['name'] for t in r['targets'].values())} ...",
        f"genie run's engine thread: {r.get('genie_engine', 'unknown')}",
        "round trip in ms, pooled over the repeats; jitter = standard deviation; "
        "spread = max - min across repeats",
        "",
        f"{'':3} {'target':34} {'p50':>6} {'p99':>6} {'max':>6} {'jitter':>6}   "
        f"{'spread:':>7} {'p50':>5} {'p99':>5} {'max':>5} {'jitter':>6}  {'lost':>4}  "
        "xruns per run: own (total)",
    ]
    for t in r["targets"].values():
        sp = t["spread"]
        xr = " ".join(f"{o}({a})" for o, a in zip(t["own_xruns_per_run"], t["xruns_per_run"]))
        lines.append(
            f"{t['name']:3} {t['label']:34} {t['p50']:6.3f} {t['p99']:6.3f} {t['max']:6.3f} "
            f"{t['jitter']:6.3f}   {'':7} {sp['p50']:5.3f} {sp['p99']:5.3f} {sp['max']:5.3f} "
            f"{sp['jitter']:6.3f}  {t['lost']:4d}  {xr}")
    lines.append("")
    target = r["target_ms"]
    lines.append("(x) - (b): median over the repeats of the run minus its repeat's (b) run")
    for key, v in r["minus_b"].items():
        name = r["targets"][key]["name"]
        per = ", ".join(f"{d:+.3f}" for d in v["p99_per_repeat"])
        ok = "PASS" if v["p99"] <= target else "FAIL"
        lines.append(f"({name}) - (b) at p99: {v['p99']:+.3f} ms (repeats {per}; pooled "
                     f"{v['p99_pooled']:+.3f}); target <= {target:.1f} ms: {ok}")
    lines.append("own xruns: late cycles in which the target's program alone was late (when "
                 "every client is late, the machine stalled)")
    for key, v in r["minus_b"].items():
        name = r["targets"][key]["name"]
        per = ", ".join(f"{d:+d}" for d in v["extra_xruns_per_repeat"])
        ok = "PASS" if v["extra_xruns"] <= v["chance_xruns"] else "FAIL"
        lines.append(f"extra own xruns ({name}) - (b): {v['extra_xruns']:+d} ({v['own_xruns']} vs "
                     f"{v['floor_own_xruns']}; repeats {per}; all xruns, median "
                     f"{v['extra_total_xruns']:+g}); target 0 (chance allows "
                     f"+{v['chance_xruns']:.1f}): {ok}")
    like = r.get("c_busy_minus_b_busy")
    if like:
        per = ", ".join(f"{d:+d}" for d in like["extra_xruns_per_repeat"])
        lines.append(f"like for like, (c') - (b') (both with a busy core; information): p99 "
                     f"{like['p99']:+.3f} ms, extra own xruns {like['extra_xruns']:+g} (repeats "
                     f"{per}; all xruns {like['extra_total_xruns']:+g})")
    rounds = r.get("rounds") or []
    if rounds:
        clean = r["clean_rounds"]
        lines.append(f"rounds: {len(rounds)} run, {clean} clean of {r['repeats']} asked "
                     f"(figures from {'those' if clean else 'all of them: none was clean'}); "
                     "a round is "
                     f"disturbed when the host took over {r['steal_limit']:.0%} of the CPUs' "
                     "time in one of its runs")
        for rd in rounds:
            if not rd["clean"]:
                took = ", ".join(f"{r['targets'][k]['name']} {v:.1%}"
                                 for k, v in rd["steal"].items())
                lines.append(f"  round {rd['round']} disturbed: host took {took}")
    between = r["xruns_between_runs"]
    lines.append(f"xruns between runs (starting, stopping, rewiring): {between['total']}")
    v = r["verdict"]
    lines.append(f"verdict: {'PASS' if v['pass'] else 'FAIL'} (latency "
                 f"{'PASS' if v['latency'] else 'FAIL'}, xruns {'PASS' if v['xruns'] else 'FAIL'})")
    return "\n".join(lines)
