"""systemd's service notification protocol (sd_notify), with the standard library only.

Under ``Type=notify`` systemd hands the service a datagram socket in ``$NOTIFY_SOCKET``; the
service says ``READY=1`` when it can play, ``RELOADING=1``/``READY=1`` around a reload,
``STOPPING=1`` on the way out, a ``STATUS=`` line for ``systemctl status``, and, with
``WatchdogSec=``, ``WATCHDOG=1`` at least every ``$WATCHDOG_USEC`` microseconds: a daemon whose
engine thread stalls stops pinging, and systemd restarts it. Outside systemd every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger("genie")


class Notifier:
    """The daemon's line to systemd. ``watchdog()`` is cheap enough for the engine thread's loop:
    it sends at most twice per watchdog interval."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = env.get("NOTIFY_SOCKET") or None
        if self.address and self.address.startswith("@"):  # Linux abstract namespace
            self.address = "\0" + self.address[1:]
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog_ns = int(usec) * 1000 if usec.isdigit() and int(usec) > 0 and mine else 0
        self._next_ping_ns = 0
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send ``KEY=value`` fields in one datagram; False when not under systemd or it failed."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(fields).encode(), self.address)
            return True
        except OSError as exc:  # systemd gone or the socket refused: say it once, go on
            log.debug("sd_notify failed: %s", exc)
            return False

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> bool:
        """Before a reload (``Type=notify-reload`` wants the monotonic time with it)."""
        return self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def watchdog(self, now_ns: int | None = None) -> None:
        """From the engine thread's loop: a ping every half watchdog interval."""
        if not self.watchdog_ns:
            return
        now = time.monotonic_ns() if now_ns is None else now_ns
        if now >= self._next_ping_ns:
            self._next_ping_ns = now + self.watchdog_ns // 2
            self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
