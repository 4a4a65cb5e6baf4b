"""Genie under systemd: the notify protocol (READY, watchdog, reload, stopping) against a notify
socket of the test's own (no systemd runs here), SIGHUP reloads through real JACK ports, journald
priority prefixes, the shipped units (security rating, verify) and ``genie service install``."""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from jack_helpers import NOTE_OFF, NOTE_ON, config_text, sounding_after

from daemon import service as svc
from daemon.sdnotify import Notifier

MS = 1_000_000


class NotifySocket:
    """What systemd listens on: a datagram socket; ``messages`` are the datagrams' fields."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, list[str]]] = []

    def read(self, seconds: float) -> list[list[str]]:
        end, got = time.monotonic() + seconds, []
        while time.monotonic() < end:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            got.append(data.decode().split("\n"))
            self.messages.append((time.monotonic(), got[-1]))
        return got

    def wait_for(self, field: str, seconds: float) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if any(field in m for m in self.read(0.1)):
                return True
        return False

    def close(self) -> None:
        self.sock.close()


def test_notifier_speaks_sd_notify_and_paces_the_watchdog(tmp_path):
    sock = NotifySocket(tmp_path / "notify")
    try:
        n = Notifier({"NOTIFY_SOCKET": str(sock.path), "WATCHDOG_USEC": "1000000"})
        assert n.enabled and n.watchdog_ns == 1_000_000_000
        assert n.ready("playing thru")
        for t in range(0, 2_000_000_000, 10_000_000):  # the engine loop, every 10 ms for 2 s
            n.watchdog(t)
        n.stopping()
        got = sock.read(0.3)
        assert got[0] == ["READY=1", "STATUS=playing thru"]
        assert sum(m == ["WATCHDOG=1"] for m in got) == 4  # every half interval, not every loop
        assert got[-1] == ["STOPPING=1"]
    finally:
        sock.close()
    assert not Notifier({}).enabled and not Notifier({}).ready()  # outside systemd: nothing
    other = Notifier({"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "5", "WATCHDOG_PID": "1"})
    assert other.watchdog_ns == 0  # the watchdog is another process's
    assert Notifier({"NOTIFY_SOCKET": "@abstract"}).address == "\0abstract"


@pytest.mark.jack
def test_genie_run_tells_systemd_ready_pings_the_watchdog_and_says_stopping(rig, tmp_path):
    from daemon.rigs.loopback import GenieProcess

    sock = NotifySocket(tmp_path / "notify")
    try:
        env = {**rig.env, "NOTIFY_SOCKET": str(sock.path), "WATCHDOG_USEC": "400000"}
        g = GenieProcess([], env=env, config=str(rig.write_config(config_text())))
        rig.daemons.append(g)
        g.start()
        got = sock.read(1.2)
        ready = [m for m in got if m[0] == "READY=1"]  # (the engine may ping the watchdog first)
        assert len(ready) == 1 and ready[0][1].startswith("STATUS=playing thru"), got
        pings = [t for t, m in sock.messages if m == ["WATCHDOG=1"]]
        assert len(pings) >= 4  # every 200 ms from the engine thread's loop
        g.proc.send_signal(signal.SIGHUP)
        got = sock.read(3.0)
        fields = [f for m in got for f in m]
        assert any(f == "RELOADING=1" for f in fields) and "READY=1" in fields
        assert any(f.startswith("MONOTONIC_USEC=") for f in fields)
        assert g.stop() == 0
        assert ["STOPPING=1"] in [m for m in sock.read(0.3)] + [m for _, m in sock.messages]
    finally:
        sock.close()


@pytest.mark.jack
def test_sighup_reloads_the_processors_without_closing_the_ports_or_leaving_a_note(rig):
    g = rig.genie(config_text('name = "thru"\nout_channel = 1'))
    c = rig.client()
    c.send((NOTE_ON, 60, 100))
    assert c.take(1) == [(NOTE_ON, 60, 100)]
    Path(g.config).write_text(config_text('name = "thru"\nout_channel = 2'))
    g.proc.send_signal(signal.SIGHUP)
    ended = c.take(1, 5.0)  # the held note ends as the old processor goes
    assert ended and ended[0][:2] in ((NOTE_OFF, 60), (NOTE_ON, 60)) and (ended[0][0] == NOTE_OFF
                                                                          or ended[0][2] == 0)
    deadline = time.monotonic() + 5
    while "reloaded" not in g.log and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "reloaded: thru" in g.log
    c.send((NOTE_OFF, 60, 0))  # the release of the note held across the reload: nothing sounds
    c.send((NOTE_ON, 64, 100))  # the same ports, the new setup: channel 2
    c.send((NOTE_OFF, 64, 0))
    got = c.take(6, 2.0)
    assert (NOTE_ON | 1, 64, 100) in got, got
    assert sounding_after([(NOTE_ON, 60, 100)] + ended + got) == set()

    Path(g.config).write_text("[midi\nbroken")  # a bad config: one line, and it plays on
    g.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while "reload refused" not in g.log and time.monotonic() < deadline:
        time.sleep(0.05)
    refused = [line for line in g.log.splitlines() if "reload refused" in line]
    assert len(refused) == 1 and "Traceback" not in g.log
    c.send((NOTE_ON, 65, 100))
    assert (NOTE_ON | 1, 65, 100) in c.take(1, 2.0)
    c.send((NOTE_OFF, 65, 0))
    Path(g.config).write_text(config_text('name = "thru"', midi='input_port = "Other in"'))
    g.proc.send_signal(signal.SIGHUP)  # ports cannot change on a reload: refused, said why
    deadline = time.monotonic() + 5
    while len([ln for ln in g.log.splitlines() if "reload refused" in ln]) < 2 \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "restart Genie for that" in g.log
    assert g.stop() == 0


def test_log_lines_carry_journald_priorities_when_stderr_is_the_journal(tmp_path, monkeypatch):
    from daemon.cli import JournaldFormatter, under_journald

    with open(tmp_path / "stderr", "w") as f:
        st = os.fstat(f.fileno())
        monkeypatch.setattr(sys, "stderr", f)
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert under_journald()
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino + 1}")
        assert not under_journald()  # a child of the service whose stderr went elsewhere
    fmt = JournaldFormatter("%(name)s: %(message)s")
    for level, prefix in ((logging.ERROR, "<3>"), (logging.WARNING, "<4>"), (logging.INFO, "<6>"),
                          (logging.DEBUG, "<7>")):
        rec = logging.LogRecord("genie", level, __file__, 1, "two\nlines", None, None)
        assert fmt.format(rec) == f"{prefix}genie: two\n{prefix}lines"


# ---- the units ----------------------------------------------------------------------------------

analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")


@analyze
def test_the_system_unit_is_rated_safe_and_both_units_verify_clean(tmp_path):
    system = tmp_path / "genie.service"
    system.write_text(svc.unit_text("system", svc.genie_executable()))
    out = subprocess.run(["systemd-analyze", "security", "--offline=true", str(system)],
                         capture_output=True, text=True, timeout=60)
    level = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out.stdout + out.stderr)
    assert level and float(level.group(1)) <= 2.0, out.stdout[-2000:]
    user = tmp_path / "user" / "genie.service"
    user.parent.mkdir()
    user.write_text(svc.unit_text("user", svc.genie_executable()))
    for unit in (system, user):
        done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0 and not done.stderr.strip(), (unit, done.stderr)
    for kind in ("user", "system"):
        text = svc.unit_text(kind, "/x/bin/genie")
        assert "Type=notify" in text and "WatchdogSec=" in text and "ExecReload=" in text
        assert "\nNice=" not in text  # refused to a user's manager under Debian's limits


def test_service_install_writes_the_unit_config_and_rule_and_never_overwrites(tmp_path):
    from daemon.cli import cli
    from daemon.config import load_config

    runner = CliRunner()
    root = tmp_path / "root"
    done = runner.invoke(cli, ["service", "install", "--system", "--root", str(root)])
    assert done.exit_code == 0, done.output
    unit = root / "etc/systemd/system/genie.service"
    config = root / "etc/genie/config.toml"
    assert unit.is_file() and config.is_file() and (root / "etc/udev/rules.d/99-genie-input.rules").is_file()
    assert f"ExecStart={svc.genie_executable()} run" in unit.read_text()
    assert "sudo systemctl enable --now genie" in done.output
    cfg = load_config(str(config))  # the skeleton is a config Genie accepts
    assert cfg.midi.api == "alsa"
    config.write_text("# mine\n")
    again = runner.invoke(cli, ["service", "install", "--system", "--root", str(root)])
    assert again.exit_code == 0 and config.read_text() == "# mine\n"  # a config is never replaced
    unit.write_text(unit.read_text() + "# edited\n")
    refused = subprocess.run([sys.executable, "-m", "daemon", "service", "install", "--system",
                              "--root", str(root)], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "exists and differs" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1  # one line, no traceback
    assert unit.read_text().endswith("# edited\n")
    forced = runner.invoke(cli, ["service", "install", "--system", "--root", str(root), "--force"])
    assert forced.exit_code == 0 and not unit.read_text().endswith("# edited\n")
    assert config.read_text() == "# mine\n"

    user_root = tmp_path / "user-root"
    done = runner.invoke(cli, ["service", "install", "--user", "--root", str(user_root)])
    assert done.exit_code == 0, done.output
    units = list(user_root.rglob("genie.service"))
    assert len(units) == 1 and ".config/systemd/user" in str(units[0])
    assert "loginctl enable-linger" in done.output
    assert svc.installed(Path.home(), user_root) == {"user": units[0]}
    assert svc.exec_start(units[0]) == svc.genie_executable()
    load_config(str(next(user_root.rglob("genie/config.toml"))))

    from daemon.commands.doctor import check_service

    found = check_service(Path.home(), user_root)
    assert [f.level for f in found] == ["ok"] and "user service" in found[0].what
    units[0].write_text(units[0].read_text().replace(svc.genie_executable(), "/gone/genie"))
    found = check_service(Path.home(), user_root)
    assert found[0].level == "fail" and "/gone/genie" in found[0].what


def test_service_install_refuses_a_link_before_writing_anything(tmp_path):
    root = tmp_path / "root"
    plan = svc.plan("system", "/opt/genie/bin/genie", tmp_path / "home")
    rule = root / "etc/udev/rules.d/99-genie-input.rules"
    rule.parent.mkdir(parents=True)
    rule.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(FileExistsError, match="not a regular file"):
        svc.install(plan, root)
    assert not (root / "etc/systemd/system/genie.service").exists()  # nothing written first
    assert not (tmp_path / "elsewhere").exists()  # nor through the link
