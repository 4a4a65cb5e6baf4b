"""The daemon's control point: a pid file in a private runtime folder, so ``genie panic`` signals
the right process and nobody else's files are touched.

The folder is ``$XDG_RUNTIME_DIR/genie`` (else ``/tmp/genie-<uid>``): made with mode 0700, and
refused when it is a link, belongs to someone else, or others may write to it (another local
user could otherwise plant links or pids there). The pid file is written without following
links; a second daemon with the same client name is refused while the first runs; ``genie panic``
signals a pid only when that process is a ``genie run``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class ControlError(Exception):
    """One line for the user."""


def _private(path: Path, make: bool) -> Path:
    if make:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise ControlError(f"{path}: not a folder of Genie's (a link or a file); remove it")
    if st.st_uid != os.getuid():
        raise ControlError(f"{path}: belongs to another user; remove it or set XDG_RUNTIME_DIR")
    if st.st_mode & 0o022:
        raise ControlError(f"{path}: others may write into it (mode {st.st_mode & 0o777:o}); "
                           "make it private (chmod 700) or set XDG_RUNTIME_DIR")
    return path


def control_dir(make: bool = True) -> Path:
    """The private folder of the pid files (checked; made when ``make``)."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    path = Path(xdg) / "genie" if xdg else Path(f"/tmp/genie-{os.getuid()}")
    if not make and not os.path.lexists(path):
        return path  # nothing runs: no pid file to find
    return _private(path, make)


def pidfile_path(client_name: str, make: bool = False) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in client_name) or "Genie"
    return control_dir(make) / f"{safe}.pid"


def is_genie(pid: int) -> bool:
    """Whether ``pid`` is a running ``genie run`` (Linux: its command line; elsewhere: alive)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return not Path("/proc").is_dir()
    except OSError:
        return False
    args = [a.decode(errors="replace") for a in cmdline if a]
    return "run" in args and any(a.endswith("genie") or a in ("daemon", "daemon.cli") for a in args)


def read_pid(path: Path) -> int | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd) as f:
        try:
            return int(f.read().strip())
        except ValueError:
            return None


def claim(client_name: str) -> Path:
    """Write this process's pid file; refuse when a daemon of that name runs already."""
    path = pidfile_path(client_name, make=True)
    other = read_pid(path)
    if other is not None and other != os.getpid() and is_genie(other):
        raise ControlError(f"a Genie named {client_name!r} runs already (pid {other}); give this one "
                           "another midi.client_name")
    if path.is_symlink():
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    return path


def daemon_pid(client_name: str) -> int:
    """The pid of the running daemon of that name, checked to be a ``genie run``."""
    path = pidfile_path(client_name)
    pid = read_pid(path)
    if pid is None:
        raise ControlError(f"no running Genie daemon found (pid file {path})")
    if not is_genie(pid):
        raise ControlError(f"the pid file {path} names pid {pid}, which is not a running genie; "
                           "no signal sent")
    return pid
