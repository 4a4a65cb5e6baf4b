"""Genie as a systemd service: the units shipped in ``daemon/systemd/``, written where systemd
reads them, with ``ExecStart`` pointing at the ``genie`` that installs them.

- ``user``: ``~/.config/systemd/user/genie.service`` for laptops and desktops with JACK or
  PipeWire (they run in the user's session: only a user service reaches them); the config is the
  user's (``~/.config/genie/config.toml``).
- ``system``: ``/etc/systemd/system/genie.service`` for an appliance box: its own user ``genie``,
  hardened, the ALSA sequencer, config in ``/etc/genie/config.toml``.

Both get the udev rule for game controllers. Nothing that exists is overwritten unless ``force``
(a config skeleton never is); every write goes through ``root`` so tests install into a folder.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent / "systemd"
UDEV_RULE = "99-genie-input.rules"
TEMPLATES = {"user": "genie.service", "system": "genie-system.service"}
TEMPLATE_EXEC = {"user": "%h/.local/bin/genie", "system": "/opt/genie/bin/genie"}

CONFIG_SKELETON = {
    "user": """# Genie's configuration (the README lists every key). Reload: systemctl --user reload genie
[midi]
api = "jack"            # JACK, or PipeWire's JACK layer
# connect = ["FLUID Synth*"]   # connect Genie out to your synth or DAW

[[processor]]
name = "pianogenie"
""",
    "system": """# Genie's configuration (the README lists every key). Reload: sudo systemctl reload genie
# The system service plays through the ALSA sequencer (it cannot reach a user's JACK server).
[midi]
api = "alsa"
# connect = ["FLUID Synth*"]   # connect Genie out to your synth
# inputs = ["Launchkey*"]      # a USB keyboard or pad controller, read when it is plugged in

[keyboard]
enabled = "off"         # no terminal under systemd; a local keyboard needs keyboard.source

[[processor]]
name = "pianogenie"
""",
}


@dataclass
class Plan:
    """What an install writes (path -> text) and what the user runs afterwards."""

    files: dict[Path, str] = field(default_factory=dict)
    keep: set[Path] = field(default_factory=set)  # written only where missing, never replaced
    commands: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def genie_executable() -> str:
    """The ``genie`` this process runs from (its venv's script), as an absolute path."""
    beside = Path(sys.executable).parent / "genie"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("genie")
    return str(Path(found).resolve()) if found else str(beside)


def unit_text(kind: str, executable: str) -> str:
    """The shipped unit of ``kind`` with ExecStart running ``executable``."""
    text = (HERE / TEMPLATES[kind]).read_text()
    return text.replace(TEMPLATE_EXEC[kind], executable)


def plan(kind: str, executable: str, home: Path) -> Plan:
    """The files a ``kind`` install writes for ``executable`` and the commands that enable it."""
    p = Plan()
    rule = (HERE / UDEV_RULE).read_text()
    if kind == "user":
        unit = home / ".config/systemd/user/genie.service"
        config = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "genie/config.toml"
        p.files = {unit: unit_text("user", executable), config: CONFIG_SKELETON["user"]}
        p.keep = {config}
        p.commands = ["systemctl --user daemon-reload", "systemctl --user enable --now genie",
                      "sudo loginctl enable-linger $USER   # headless: start at boot without a login",
                      f"sudo cp {HERE / UDEV_RULE} /etc/udev/rules.d/ && sudo udevadm control --reload"
                      " && sudo udevadm trigger --subsystem-match=input   # game controllers",
                      "journalctl --user -u genie -f   # the log"]
    else:
        unit = Path("/etc/systemd/system/genie.service")
        config = Path("/etc/genie/config.toml")
        p.files = {unit: unit_text("system", executable), config: CONFIG_SKELETON["system"],
                   Path("/etc/udev/rules.d") / UDEV_RULE: rule}
        p.keep = {config}
        p.commands = ["sudo useradd --system --no-create-home --shell /usr/sbin/nologin "
                      "--groups audio,input genie   # once: the service's own user",
                      "sudo udevadm control --reload && sudo udevadm trigger --subsystem-match=input",
                      "sudo systemctl daemon-reload", "sudo systemctl enable --now genie",
                      "journalctl -u genie -f   # the log"]
        if executable.startswith("/home/") or executable.startswith("/root/"):
            p.warnings.append(
                f"{executable} is under a home folder, which the system service cannot see "
                "(ProtectHome=yes): install Genie outside it first, e.g. sudo python3 -m venv "
                "/opt/genie && sudo /opt/genie/bin/pip install . , then run "
                "sudo /opt/genie/bin/genie service install --system")
    return p


def install(p: Plan, root: Path = Path("/"), force: bool = False) -> tuple[list[Path], list[Path]]:
    """Write the plan under ``root``: (written, left alone). Raises FileExistsError for a unit or
    rule that exists and differs, unless ``force``."""
    written, left = [], []
    targets = {path: root / path.relative_to(path.anchor) for path in p.files}
    for path, target in targets.items():  # every refusal before the first write
        if target.is_symlink() or (target.exists() and not target.is_file()):
            raise FileExistsError(f"{target} is not a regular file; Genie leaves it alone")
        if path in p.keep or force or not target.exists():
            continue
        if target.read_text() != p.files[path]:
            raise FileExistsError(f"{target} exists and differs (--force replaces it)")
    for path, target in targets.items():
        if target.exists() and (path in p.keep or target.read_text() == p.files[path]):
            left.append(target)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".genie-new")
        tmp.write_text(p.files[path])
        tmp.replace(target)
        written.append(target)
    return written, left


def installed(home: Path, root: Path = Path("/")) -> dict[str, Path]:
    """The Genie units installed on this machine: kind -> path."""
    found = {}
    for kind, path in (("user", home / ".config/systemd/user/genie.service"),
                       ("system", Path("/etc/systemd/system/genie.service"))):
        target = root / path.relative_to(path.anchor)
        if target.is_file() and "Genie MIDI instrument daemon" in target.read_text(errors="replace"):
            found[kind] = target
    return found


def exec_start(unit: Path) -> str | None:
    """The program an installed unit runs (its ExecStart's first word), %h expanded."""
    for line in unit.read_text(errors="replace").splitlines():
        if line.startswith("ExecStart="):
            return line.split("=", 1)[1].split()[0].replace("%h", str(Path.home()))
    return None
