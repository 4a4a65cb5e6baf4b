"""Loads exported models and prepares the process to run them in real time.

This is the one module that knows the exported-model formats (DESIGN.md "Exported models"):

- TorchScript (``.pt``, ``torch.jit.script`` step functions): what the project ships and runs by
  default;
- ONNX (``.onnx``, written beside it by ``genie export MODEL --format onnx``), run by ONNX Runtime
  without torch: the light install for a Raspberry Pi.

The file decides the runtime. A processor asks for ``load_model(path)`` and gets a :class:`Model`
with the same interface for both: ``function(name)`` gives a step function on numpy arrays that
returns a tuple of numpy arrays, ``attr(name)`` a constant of the artefact (sizes, a vocabulary).
Where torch is not installed, or the ``.pt`` file is absent, an ``.onnx`` file beside it is loaded
instead. An ONNX artefact holds one function per file: ``forward`` in ``NAME.onnx``, any other
function ``f`` in ``NAME.f.onnx``; each file's metadata names the function's arguments
(``genie.inputs``, in the TorchScript method's order) and the constants (``genie.attrs``).

torch and onnxruntime are imported inside the functions: the daemon core imports this module only
when a processor needs it, and the import then happens once, in the main thread, at start-up.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import json
import logging
import re
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

log = logging.getLogger("genie.runtime")

# torch's messages for TorchScript entry points: "`torch.jit.load` is deprecated. Please switch
# to ..." and, on Python 3.14+, "`torch.jit.save` is not supported in Python 3.14+ ...".
_TORCHSCRIPT_DEPRECATION = r"`torch\.jit\.\w+` is (deprecated|not supported)"

ONNX_SUFFIX = ".onnx"
TORCHSCRIPT_SUFFIX = ".pt"
# ONNX metadata keys written by the exporter (modelkit.onnx_export) and read here
META_INPUTS = "genie.inputs"
META_ATTRS = "genie.attrs"
META_FUNCTION = "genie.function"

StepFunction = Callable[..., tuple[np.ndarray, ...]]


class ModelFileError(ValueError):
    """A model file is missing, corrupt, or not in the exported format; one line naming the file."""


@contextlib.contextmanager
def _torchscript_quietly() -> Iterator[None]:
    """Silence torch's TorchScript deprecation warning, and only that, around our jit calls.

    TorchScript is deprecated upstream (a DeprecationWarning in torch 2.13, a FutureWarning in
    2.14+). We keep it on purpose until the ONNX Runtime backend lands here, and the warning would
    otherwise appear at every start of ``genie run``, where the user can do nothing about it.
    ``catch_warnings`` changes process-wide state, so this is only used at start-up and export,
    never on the engine thread while it plays.
    """
    with warnings.catch_warnings():
        for category in (DeprecationWarning, FutureWarning):
            warnings.filterwarnings("ignore", message=_TORCHSCRIPT_DEPRECATION, category=category)
        yield


def _one_line(exc: BaseException) -> str:
    """The first sentence of an exception's message (torch's run to several lines, and some
    start with a C++ location such as "[enforce fail at inline_container.cc:180] . ")."""
    text = re.sub(r"^\[enforce fail at [^\]]*\][\s.]*", "", str(exc).strip())
    text = text.splitlines()[0] if text else type(exc).__name__
    return text.split(". ")[0].rstrip(".")


def configure_threads() -> None:
    """One intra-op thread (and one inter-op thread where torch still allows setting it).

    Our models are small and run one step per event: extra threads only add wake-up latency and
    compete with the engine thread for the GIL and the cores.
    """
    import torch

    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError as exc:  # torch allows it once, before any inter-op work has started
        log.debug("inter-op threads left at %d: %s", torch.get_num_interop_threads(), _one_line(exc))


def torch_installed() -> bool:
    """torch can be imported (without importing it: a torch-free install never pays for it)."""
    return importlib.util.find_spec("torch") is not None


def onnx_file(path: str | Path, function: str = "forward") -> Path:
    """Where the ONNX file of ``function`` of the artefact ``NAME.pt`` (or ``NAME.onnx``) lies:
    ``NAME.onnx`` for ``forward``, ``NAME.function.onnx`` for any other."""
    path = Path(path)
    stem = path.with_suffix("").name
    return path.with_name(f"{stem}{ONNX_SUFFIX}" if function == "forward" else f"{stem}.{function}{ONNX_SUFFIX}")


def choose_file(path: str | Path) -> Path:
    """The artefact to load for ``path``: ``path`` itself, or the ``.onnx`` file beside a ``.pt``
    when torch is not installed or the ``.pt`` file is absent (a torch-free install)."""
    path = Path(path)
    if path.suffix == TORCHSCRIPT_SUFFIX:
        onnx = onnx_file(path)
        if onnx.is_file() and (not path.exists() or not torch_installed()):
            return onnx
    return path


def formats_of(path: str | Path) -> dict[str, Path]:
    """The artefact ``NAME.pt`` in each format this machine can run: {"torchscript": NAME.pt,
    "onnx": NAME.onnx}, each present only where its file and its runtime are (benchmarks compare them)."""
    path = Path(path)
    found = {}
    if path.with_suffix(TORCHSCRIPT_SUFFIX).is_file() and torch_installed():
        found["torchscript"] = path.with_suffix(TORCHSCRIPT_SUFFIX)
    if onnx_file(path).is_file() and importlib.util.find_spec("onnxruntime") is not None:
        found["onnx"] = onnx_file(path)
    return found


def load_torchscript(path: str | Path) -> torch.jit.ScriptModule:
    """The TorchScript module itself, on the CPU, in eval mode (export, evaluation and benchmarks
    use it with torch tensors); a bad file raises ModelFileError."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path}: not found")
    if not torch_installed():
        raise ModelFileError(f"model file {path}: a TorchScript model, and torch is not installed "
                             f"(install torch, or export it with `genie export --format onnx`)")
    import torch

    try:
        with _torchscript_quietly():
            module = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError, OSError, EOFError) as exc:
        raise ModelFileError(f"model file {path}: not a TorchScript model ({_one_line(exc)})") from None
    if not isinstance(module, torch.jit.ScriptModule):
        raise ModelFileError(f"model file {path}: not a TorchScript module")
    module.eval()
    return module


class Model:
    """An exported model: step functions on numpy arrays, and its constants by name."""

    format = ""
    path: Path

    def function(self, name: str = "forward") -> StepFunction:
        """The function ``name`` of the artefact: numpy arrays (or numbers) in, a tuple of numpy
        arrays out. A function the artefact lacks raises ModelFileError."""
        raise NotImplementedError

    def attr(self, name: str) -> Any:
        """A constant of the artefact (an int, float, str or bool); dotted names reach into
        submodules (``model.n_layer``). One it lacks raises ModelFileError."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path}>"


class TorchScriptModel(Model):
    """A TorchScript artefact behind :class:`Model`: numpy in and out, torch inside."""

    format = "torchscript"

    def __init__(self, module: torch.jit.ScriptModule, path: Path) -> None:
        self.module = module
        self.path = path

    def function(self, name: str = "forward") -> StepFunction:
        import torch

        method = getattr(self.module, name, None)
        if method is None or not hasattr(method, "schema"):
            raise ModelFileError(f"model file {self.path}: has no function {name!r}")
        kinds = [str(arg.type) for arg in method.schema.arguments[1:]]  # without self
        to_number = {"int": int, "float": float, "bool": bool}

        def call(*args: Any) -> tuple[np.ndarray, ...]:
            inputs = [to_number[k](a) if k in to_number else torch.from_numpy(np.ascontiguousarray(a))
                      for a, k in zip(args, kinds)]
            with torch.inference_mode():
                out = method(*inputs)
            return tuple(o.numpy() for o in out) if isinstance(out, tuple) else (out.numpy(),)

        return call

    def attr(self, name: str) -> Any:
        value: Any = self.module
        for part in name.split("."):
            if not hasattr(value, part):
                raise ModelFileError(f"model file {self.path}: has no constant {name!r}")
            value = getattr(value, part)
        return value


class OnnxModel(Model):
    """An ONNX artefact run by ONNX Runtime: one session per function, one thread each."""

    format = "onnx"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sessions: dict[str, tuple[Any, list[str]]] = {}
        session, _ = self._session("forward")
        meta = session.get_modelmeta().custom_metadata_map
        try:
            self._attrs = json.loads(meta.get(META_ATTRS, "{}"))
        except json.JSONDecodeError:
            raise ModelFileError(f"model file {path}: its constants ({META_ATTRS}) are not JSON") from None

    def _file(self, name: str) -> Path:
        return onnx_file(self.path, name)

    def _session(self, name: str) -> tuple[Any, list[str]]:
        if name in self._sessions:
            return self._sessions[name]
        import onnxruntime as ort

        path = self._file(name)
        if not path.is_file():
            raise ModelFileError(f"model file {path}: not found" if name == "forward"
                                 else f"model file {self.path}: has no function {name!r} ({path.name} not found)")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # one step per event: threads only add wake-ups
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only: the daemon's log is for the musician
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            meta = session.get_modelmeta().custom_metadata_map
            names = json.loads(meta[META_INPUTS]) if META_INPUTS in meta else [i.name for i in session.get_inputs()]
        except Exception as exc:  # onnxruntime's errors share no base class but Exception
            raise ModelFileError(f"model file {path}: not an ONNX model ({_one_line(exc)})") from None
        self._sessions[name] = (session, names)
        return session, names

    def function(self, name: str = "forward") -> StepFunction:
        session, names = self._session(name)
        dtypes = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(float)": np.float32,
                  "tensor(double)": np.float64, "tensor(bool)": np.bool_}
        declared = {i.name: dtypes.get(i.type, None) for i in session.get_inputs()}
        missing = set(declared) - set(names)
        if missing:
            raise ModelFileError(f"model file {self._file(name)}: inputs {sorted(missing)} are not "
                                 f"among its function's arguments {names}")
        run = session.run

        def call(*args: Any) -> tuple[np.ndarray, ...]:
            # an argument the graph does not read (e.g. the position of a relative model) is not fed
            feed = {n: np.asarray(a, declared[n]) for n, a in zip(names, args) if n in declared}
            return tuple(run(None, feed))

        return call

    def attr(self, name: str) -> Any:
        if name not in self._attrs:
            raise ModelFileError(f"model file {self.path}: has no constant {name!r}")
        return self._attrs[name]


def load_model(path: str | Path) -> Model:
    """Load an exported model, TorchScript or ONNX as the file says (see :func:`choose_file`);
    a missing or bad file raises ModelFileError (one line naming the file)."""
    path = choose_file(path)
    if path.suffix == ONNX_SUFFIX:
        if importlib.util.find_spec("onnxruntime") is None:
            raise ModelFileError(f"model file {path}: an ONNX model, and ONNX Runtime is not installed "
                                 "(pip install onnxruntime)")
        if not path.is_file():
            raise ModelFileError(f"model file {path}: not found")
        model: Model = OnnxModel(path)
    else:
        model = TorchScriptModel(load_torchscript(path), path)
    log.debug("loaded %s (%s)", path, model.format)
    return model


def save_model(module: torch.nn.Module, path: str | Path) -> torch.jit.ScriptModule:
    """Export ``module`` in the format :func:`load_model` reads (scripted, never traced)."""
    import torch

    with _torchscript_quietly():
        scripted = module if isinstance(module, torch.jit.ScriptModule) else torch.jit.script(module)
        torch.jit.save(scripted, str(path))
    return scripted


def _finite(result: Any) -> bool:
    """Every tensor (or float array) in ``result`` (nested tuples and lists too) is finite."""
    if isinstance(result, (tuple, list)):
        return all(_finite(r) for r in result)
    if isinstance(result, np.ndarray):
        return not np.issubdtype(result.dtype, np.floating) or bool(np.isfinite(result).all())
    if hasattr(result, "isfinite") and hasattr(result, "all") and hasattr(result, "dtype"):
        if getattr(result.dtype, "is_floating_point", False):
            return bool(result.isfinite().all())
    return True


def warm_up(fn: Callable[[], Any], n: int) -> Any:
    """Call a step function ``n`` times (allocators, kernels, caches), and return its last result.

    A model whose outputs are not finite (NaN or infinite weights: a corrupt or diverged file)
    is refused here with ModelFileError, before it plays."""
    if n < 0:
        raise ValueError(f"warm-up count must be >= 0, got {n}")
    result = None
    first_ns = last_ns = 0
    for i in range(n):
        t0 = time.perf_counter_ns()
        result = fn()
        last_ns = time.perf_counter_ns() - t0
        if i == 0:
            first_ns = last_ns
    if n:
        log.debug("warm-up: %d calls, first %.2f ms, last %.2f ms", n, first_ns / 1e6, last_ns / 1e6)
        check_finite(result)
    return result


def check_finite(result: Any, what: str = "the model") -> Any:
    """``result`` unchanged when every tensor in it is finite; else ModelFileError (one line)."""
    if not _finite(result):
        raise ModelFileError(f"{what}'s outputs are not finite numbers (NaN or infinite weights: "
                             "a corrupt or diverged model file)")
    return result


def freeze_gc() -> None:
    """Collect once, then move every object alive now out of the collector's sight.

    Start-up leaves many long-lived objects (modules, weights, the config); freezing them makes
    later collections scan only what the performance allocates, so GC pauses stay short.
    """
    gc.collect()
    gc.freeze()
