"""The control point: a private folder, a pid file written without following links, one daemon
per client name, and ``genie panic`` signalling only a genie."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from daemon import control


@pytest.fixture
def runtime(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    return tmp_path


def test_the_control_folder_is_private_and_the_pid_file_follows_no_link(runtime):
    path = control.claim("Genie")
    assert path.read_text() == str(os.getpid())
    assert os.stat(path.parent).st_mode & 0o777 == 0o700
    assert os.stat(path).st_mode & 0o777 == 0o600
    path.unlink()
    victim = runtime / "victim.txt"
    victim.write_text("precious")
    os.symlink(victim, path)  # planted by someone who could write there
    control.claim("Genie")
    assert victim.read_text() == "precious" and not path.is_symlink()


def test_a_folder_others_may_write_or_a_link_is_refused(runtime):
    (runtime / "genie").mkdir(mode=0o777)
    os.chmod(runtime / "genie", 0o777)
    with pytest.raises(control.ControlError, match="others may write"):
        control.claim("Genie")
    os.rmdir(runtime / "genie")
    os.symlink(runtime, runtime / "genie")
    with pytest.raises(control.ControlError, match="link"):
        control.claim("Genie")


def test_panic_signals_only_a_running_genie(runtime):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        path = control.pidfile_path("Genie", make=True)
        path.write_text(str(sleeper.pid))  # a pid that is not a genie
        with pytest.raises(control.ControlError, match="not a running genie"):
            control.daemon_pid("Genie")
        assert sleeper.poll() is None  # never signalled
    finally:
        sleeper.kill()
    path.unlink()
    with pytest.raises(control.ControlError, match="no running Genie"):
        control.daemon_pid("Genie")


def test_a_second_daemon_with_the_same_name_is_refused(runtime, monkeypatch):
    path = control.claim("Genie")
    path.write_text("4242")
    monkeypatch.setattr(control, "is_genie", lambda pid: pid == 4242)
    with pytest.raises(control.ControlError, match="runs already"):
        control.claim("Genie")
