"""Layering rules from DESIGN.md, checked on the source."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL_PACKAGES = {"markov", "pianogenie", "drumvae", "musiclm"}
ALLOWED_FOR_MODELS = {"daemon.processor", "daemon.runtime", "daemon.events"}
# modules of the contract that daemon.processor re-exports; leaves that import only daemon.events
CONTRACT_PARTS = {"daemon.transport"}
SHARED = "modelkit"  # what the model packages share; of the daemon, only the model-file formats
ALLOWED_FOR_SHARED = {"daemon.runtime"}  # (the ONNX export writes the layout the runtime reads)


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # ``from daemon import runtime`` imports the module daemon.runtime
            names |= {f"{node.module}.{a.name}" for a in node.names
                      if _module_file(f"{node.module}.{a.name}") is not None}
    return names


def test_daemon_never_imports_a_model_package():
    for path in (ROOT / "daemon").rglob("*.py"):
        bad = {n for n in imports_of(path) if n.split(".")[0] in MODEL_PACKAGES}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def _module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _daemon_reach(path: Path, seen: set[str]) -> set[str]:
    """The daemon modules ``path`` imports, directly or through other modules of this project."""
    reached = set()
    for name in imports_of(path):
        top = name.split(".")[0]
        if top not in {"daemon", SHARED, *MODEL_PACKAGES} or name in seen:
            continue
        seen.add(name)
        if top == "daemon":
            reached.add(name)
        target = _module_file(name)
        if target is not None:
            reached |= _daemon_reach(target, seen)
    return reached


def test_model_packages_reach_only_the_processor_contract_runtime_and_events():
    """Checked transitively: what a model package imports may not import more of the daemon."""
    for pkg in [*MODEL_PACKAGES, SHARED]:
        allowed = ALLOWED_FOR_SHARED if pkg == SHARED else ALLOWED_FOR_MODELS
        for path in (ROOT / pkg).rglob("*.py"):
            direct = {n for n in imports_of(path) if n.split(".")[0] == "daemon" and n != "daemon"}
            assert direct <= allowed, f"{path.relative_to(ROOT)} imports {sorted(direct - allowed)}"
            bad = {n for n in _daemon_reach(path, set())
                   if n not in allowed | CONTRACT_PARTS and n != "daemon"}
            if pkg == SHARED:
                bad = {n for n in _daemon_reach(path, set()) if n not in ALLOWED_FOR_SHARED | {"daemon"}}
            assert not bad, f"{path.relative_to(ROOT)} reaches {sorted(bad)}"


def test_the_allowlist_check_sees_through_an_allowed_module(tmp_path):
    """The daemon modules a model may import must not themselves pull in the engine."""
    for name in ALLOWED_FOR_MODELS:
        reached = _daemon_reach(_module_file(name), set())
        assert reached <= ALLOWED_FOR_MODELS | CONTRACT_PARTS | {"daemon"}, (name, reached)


def test_daemon_prints_nothing_outside_the_cli():
    for path in (ROOT / "daemon").rglob("*.py"):
        if "commands" in path.parts or "bench" in path.parts or path.name == "cli.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                raise AssertionError(f"print() in {path.relative_to(ROOT)}:{node.lineno}")


def test_no_bare_except_in_daemon():
    for path in (ROOT / "daemon").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ExceptHandler):
                assert node.type is not None, f"bare except in {path}:{node.lineno}"


def _modules_after(argv: list[str]) -> set[str]:
    code = ("import sys\nfrom daemon.cli import main\nsys.argv = ['genie', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('MODULES:' + ','.join(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch',))), file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                       timeout=120, env={"JACK_NO_START_SERVER": "1", "PATH": "/usr/bin:/bin",
                                         "HOME": str(ROOT)})
    marker = [line for line in r.stderr.splitlines() if line.startswith("MODULES:")]
    assert marker, r.stderr
    return {m for m in marker[-1][len("MODULES:"):].split(",") if m}


def test_help_ports_and_doctor_do_not_import_torch():
    # Plug-in commands (genie.commands, genie.train, ...) are loaded to list their help; they
    # import torch only when they run.
    for argv in (["--help"], ["ports"], ["doctor"], ["run", "--help"]):
        assert _modules_after(argv) == set(), argv
