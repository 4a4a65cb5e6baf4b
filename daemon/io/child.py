"""Child processes for tests, benchmarks and ``--headless``: start, wait for a ready line, stop."""

from __future__ import annotations

import os
import signal
import subprocess
import threading


def start_child(cmd: list[str], ready_mark: str, timeout_s: float, name: str,
                env: dict[str, str] | None = None) -> tuple[subprocess.Popen, list[str]]:
    """Start ``cmd``, collect its output lines on a thread, and wait for ``ready_mark``.

    Raises RuntimeError with the output so far when it exits or does not get ready in time.
    """
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})})
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if ready_mark in line:
                ready.set()
        ready.set()

    threading.Thread(target=read, name=f"{name}-log", daemon=True).start()
    if not ready.wait(timeout_s) or proc.poll() is not None:
        stop_child(proc)
        raise RuntimeError(f"{name} did not become ready:\n" + "\n".join(lines))
    return proc, lines


def stop_child(proc: subprocess.Popen | None, sig: int = signal.SIGTERM,
               timeout_s: float = 10.0) -> int:
    """Signal a child and wait for it (kill it past ``timeout_s``); returns its exit code."""
    if proc is None:
        return 0
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
