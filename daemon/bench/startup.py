"""``genie bench startup``: seconds from launch to READY, and resident memory once warm.

``genie run`` is started on a private JACK dummy server with a systemd notify socket of the
bench's own: READY is the moment the daemon says ``READY=1`` there (its ports open, every
processor loaded and warm), the time systemd would wait. Resident memory (VmRSS, the JACK server's
shared segment within it, and the peak
VmHWM) is read from ``/proc`` right after. Two setups alternate, ``--repeats`` times each:

- ``thru``: no model: the floor (Python, rtmidi, the engine);
- ``TorchScript``: every processor with shipped model files, all loaded at once (``switch =
  "program"``: one plays, all are warm), as a box that offers them all at a gig, on torch;
- ``ONNX``: the same processors with the ``.onnx`` files beside the TorchScript ones named as their
  weights: ONNX Runtime, and torch never imported (the torch-free install's daemon).

Targets (issue "At the gig"): READY within 1 s and 150 MB resident with the ONNX runtime.
"""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

SERVER_NAME = "genie-bench-startup"
TARGET_READY_S = 1.0
TARGET_RSS_MB = 150.0


def _weights_dirs() -> dict[str, Path]:
    """Each installed processor's ``weights`` folder beside its module (found, not imported)."""
    import importlib.util
    from importlib.metadata import entry_points

    from daemon.processor import ENTRY_POINT_GROUP

    dirs = {}
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        spec = importlib.util.find_spec(ep.module)
        if ep.name not in dirs and spec and spec.origin and (Path(spec.origin).parent / "weights").is_dir():
            dirs[ep.name] = Path(spec.origin).parent / "weights"
    return dirs


def model_processors() -> list[str]:
    """Processors installed with model files beside them (the shipped models)."""
    from daemon.processor import is_model_file

    return [name for name, weights in _weights_dirs().items()
            if any(is_model_file(p) and p.name.startswith(name) for p in weights.iterdir())]


def onnx_weights(name: str) -> Path | None:
    """A processor's main ONNX file among its shipped weights (``NAME*.onnx``; not a second
    function's ``NAME.f.onnx``), or None."""
    weights = _weights_dirs().get(name)
    found = sorted(p for p in weights.glob(f"{name}*.onnx") if "." not in p.stem) if weights else []
    return found[0] if found else None


def _config(workdir: Path, label: str, processors: list[str], weights: dict[str, Path] | None = None) -> Path:
    path = workdir / f"{label}.toml"
    weights = weights or {}
    tables = "".join(f'[[processor]]\nname = "{p}"\n'
                     + (f'options = {{ weights = "{weights[p]}" }}\n' if p in weights else "") + "\n"
                     for p in processors)
    path.write_text('[midi]\napi = "jack"\nclient_name = "Genie bench"\n\n[engine]\nswitch = "program"\n\n'
                    '[keyboard]\nenabled = "off"\n\n[gamepad]\nenabled = "off"\n\n' + tables)
    return path


def _memory_mb(pid: int) -> dict[str, float]:
    """VmRSS, VmHWM (the peak) and RssShmem of a process, in MB. RssShmem is, for a JACK client, the
    server's shared segment mapped into every client (about 200 MB with jackd2's defaults): the
    server's memory, counted once on the machine however many clients map it, and absent on ALSA."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssShmem"):
            fields[key] = int(value.split()[0]) / 1024
    rss, shm = fields.get("VmRSS", float("nan")), fields.get("RssShmem", 0.0)
    return {"rss_mb": rss, "peak_mb": fields.get("VmHWM", float("nan")), "shm_mb": shm, "own_mb": rss - shm}


def _one(config: Path, workdir: Path) -> dict:
    from daemon.rigs.loopback import GenieProcess

    path = workdir / "notify"
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(60)
    env = {"NOTIFY_SOCKET": str(path), "XDG_RUNTIME_DIR": str(workdir)}
    try:
        t0 = time.monotonic()
        genie = GenieProcess([], env=env, config=str(config)).start(timeout_s=120)
        try:
            while True:
                data = sock.recv(4096).decode()
                if "READY=1" in data.split("\n"):
                    ready_s = time.monotonic() - t0
                    break
            time.sleep(0.5)  # settled: the processors' first idle work done
            memory = _memory_mb(genie.proc.pid)
        finally:
            code = genie.stop()
        if code != 0:
            raise RuntimeError(f"genie run exited with {code}:\n{genie.log[-2000:]}")
    finally:
        sock.close()
    return {"ready_s": ready_s, **memory}


def run_startup(repeats: int = 3, period: int = 256, rate: int = 48000,
                progress: Callable[[int], None] | None = None,
                status: Callable[[str], None] | None = None) -> dict:
    from daemon.io.jack import DummyServer

    say = status or (lambda msg: None)
    models = model_processors()
    onnx = {name: w for name in models if (w := onnx_weights(name)) is not None}
    setups = {"thru": ["thru"], "TorchScript": models, "ONNX": models}
    weights = {"ONNX": onnx}
    runs: dict[str, list[dict]] = {label: [] for label in setups}
    with tempfile.TemporaryDirectory(prefix="genie-bench-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        os.chmod(workdir, 0o700)
        server = DummyServer(name=SERVER_NAME, period=period, rate=rate)
        say(f"starting JACK dummy server {SERVER_NAME!r}")
        server.start()
        stack.callback(server.stop)
        configs = {label: _config(workdir, label, procs, weights.get(label)) for label, procs in setups.items()}
        for _ in range(repeats):
            for label, config in configs.items():  # alternating: a drift in the machine hits all
                say(f"genie run: {label}")
                runs[label].append(_one(config, workdir))
                if progress:
                    progress(1)
    out = {"models": models, "onnx_files": {k: str(v) for k, v in onnx.items()}, "repeats": repeats,
           "setups": {}}
    for label, rows in runs.items():
        out["setups"][label] = {
            "processors": setups[label],
            "ready_s_median": statistics.median(r["ready_s"] for r in rows),
            "ready_s_max": max(r["ready_s"] for r in rows),
            "rss_mb_median": statistics.median(r["rss_mb"] for r in rows),
            "shm_mb_median": statistics.median(r["shm_mb"] for r in rows),
            "own_mb_median": statistics.median(r["own_mb"] for r in rows),
            "peak_mb_max": max(r["peak_mb"] for r in rows),
        }
    base = out["setups"]["thru"]
    out["ratios"] = {label: {"ready": out["setups"][label]["ready_s_median"] / base["ready_s_median"],
                             "own": out["setups"][label]["own_mb_median"] / base["own_mb_median"]}
                     for label in ("TorchScript", "ONNX")}
    o = out["setups"]["ONNX"]
    # the target is Genie's own memory: RSS less the audio server's shared segment (none on ALSA)
    out["targets"] = {"ready_s": TARGET_READY_S, "own_mb": TARGET_RSS_MB, "for": "the ONNX runtime",
                      "ready_pass": o["ready_s_median"] <= TARGET_READY_S,
                      "own_pass": o["own_mb_median"] <= TARGET_RSS_MB}
    return out


def format_startup(r: dict) -> str:
    lines = [f"genie run from launch to READY (systemd's notify) and resident memory once warm, "
             f"{r['repeats']} runs each, alternating; own = RSS less the JACK server's shared segment", "",
             f"{'setup':<12} {'READY median':>13} {'max':>7} {'own median':>11} {'RSS':>8} {'JACK shm':>9} {'peak':>8}"]
    for label, s in r["setups"].items():
        lines.append(f"{label:<12} {s['ready_s_median']:>11.2f} s {s['ready_s_max']:>5.2f} s "
                     f"{s['own_mb_median']:>8.0f} MB {s['rss_mb_median']:>5.0f} MB {s['shm_mb_median']:>6.0f} MB "
                     f"{s['peak_mb_max']:>5.0f} MB")
    lines.append("")
    for label, ratio in r["ratios"].items():
        lines.append(f"all models ({', '.join(r['models'])}) on {label} against thru: READY x{ratio['ready']:.1f}, "
                     f"own memory x{ratio['own']:.1f}")
    t, o = r["targets"], r["setups"]["ONNX"]
    lines.append(f"ONNX Runtime: READY {o['ready_s_median']:.2f} s (target <= {t['ready_s']:g} s: "
                 f"{'PASS' if t['ready_pass'] else 'FAIL'}), own memory {o['own_mb_median']:.0f} MB "
                 f"(target <= {t['own_mb']:g} MB: {'PASS' if t['own_pass'] else 'FAIL'})")
    return "\n".join(lines)
