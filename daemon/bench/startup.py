"""``genie bench startup``: seconds from launch to READY, and resident memory once warm.

``genie run`` is started on a private JACK dummy server with a systemd notify socket of the
bench's own: READY is the moment the daemon says ``READY=1`` there (its ports open, every
processor loaded and warm), the time systemd would wait. Resident memory (VmRSS, and the peak
VmHWM) is read from ``/proc`` right after. Two setups alternate, ``--repeats`` times each:

- ``thru``: no model: the floor (Python, rtmidi, the engine);
- every processor with shipped model files, all loaded at once (``switch = "program"``: one plays,
  all are warm), as a box that offers them all at a gig.

Targets (issue "At the gig"): READY within 1 s and 150 MB resident with the ONNX runtime; the
TorchScript runtime is what ships today, and the figures say what it costs beside the floor.
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


def model_processors() -> list[str]:
    """Processors installed with model files beside them (the shipped models)."""
    import importlib.util
    from importlib.metadata import entry_points

    from daemon.processor import ENTRY_POINT_GROUP, is_model_file

    names = []
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        spec = importlib.util.find_spec(ep.module)
        weights = Path(spec.origin).parent / "weights" if spec and spec.origin else None
        if ep.name not in names and weights and weights.is_dir() and any(is_model_file(p) and p.name.startswith(ep.name)
                                                  for p in weights.iterdir()):
            names.append(ep.name)
    return names


def _config(workdir: Path, label: str, processors: list[str]) -> Path:
    path = workdir / f"{label}.toml"
    tables = "".join(f'[[processor]]\nname = "{p}"\n\n' for p in processors)
    path.write_text('[midi]\napi = "jack"\nclient_name = "Genie bench"\n\n[engine]\nswitch = "program"\n\n'
                    '[keyboard]\nenabled = "off"\n\n[gamepad]\nenabled = "off"\n\n' + tables)
    return path


def _memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", float("nan")), fields.get("VmHWM", float("nan"))


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
            rss, peak = _memory_mb(genie.proc.pid)
        finally:
            code = genie.stop()
        if code != 0:
            raise RuntimeError(f"genie run exited with {code}:\n{genie.log[-2000:]}")
    finally:
        sock.close()
    return {"ready_s": ready_s, "rss_mb": rss, "peak_mb": peak}


def run_startup(repeats: int = 3, period: int = 256, rate: int = 48000,
                progress: Callable[[int], None] | None = None,
                status: Callable[[str], None] | None = None) -> dict:
    from daemon.io.jack import DummyServer

    say = status or (lambda msg: None)
    models = model_processors()
    setups = {"thru": ["thru"], "all models": models}
    runs: dict[str, list[dict]] = {label: [] for label in setups}
    with tempfile.TemporaryDirectory(prefix="genie-bench-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        os.chmod(workdir, 0o700)
        server = DummyServer(name=SERVER_NAME, period=period, rate=rate)
        say(f"starting JACK dummy server {SERVER_NAME!r}")
        server.start()
        stack.callback(server.stop)
        configs = {label: _config(workdir, label.replace(" ", "-"), procs) for label, procs in setups.items()}
        for _ in range(repeats):
            for label, config in configs.items():  # alternating: a drift in the machine hits both
                say(f"genie run: {label}")
                runs[label].append(_one(config, workdir))
                if progress:
                    progress(1)
    out = {"runtime": "torchscript", "models": models, "repeats": repeats, "setups": {}}
    for label, rows in runs.items():
        out["setups"][label] = {
            "processors": setups[label],
            "ready_s_median": statistics.median(r["ready_s"] for r in rows),
            "ready_s_max": max(r["ready_s"] for r in rows),
            "rss_mb_median": statistics.median(r["rss_mb"] for r in rows),
            "peak_mb_max": max(r["peak_mb"] for r in rows),
        }
    base, full = out["setups"]["thru"], out["setups"]["all models"]
    out["ratio_ready"] = full["ready_s_median"] / base["ready_s_median"]
    out["ratio_rss"] = full["rss_mb_median"] / base["rss_mb_median"]
    out["onnx"] = None  # no ONNX runtime yet: its column stays empty
    out["targets"] = {"ready_s": TARGET_READY_S, "rss_mb": TARGET_RSS_MB, "for": "the ONNX runtime"}
    return out


def format_startup(r: dict) -> str:
    lines = [f"genie run from launch to READY (systemd's notify) and resident memory once warm, "
             f"{r['repeats']} runs each, alternating; runtime: {r['runtime']}", "",
             f"{'setup':<12} {'READY median':>13} {'max':>7} {'RSS median':>11} {'peak':>8}"]
    for label, s in r["setups"].items():
        lines.append(f"{label:<12} {s['ready_s_median']:>11.2f} s {s['ready_s_max']:>5.2f} s "
                     f"{s['rss_mb_median']:>8.0f} MB {s['peak_mb_max']:>5.0f} MB")
    lines += ["", f"all models ({', '.join(r['models'])}) against thru: READY x{r['ratio_ready']:.1f}, "
              f"memory x{r['ratio_rss']:.1f}",
              f"targets with ONNX Runtime: READY <= {TARGET_READY_S:g} s, <= {TARGET_RSS_MB:g} MB "
              "(no ONNX runtime yet: not measured)"]
    return "\n".join(lines)
