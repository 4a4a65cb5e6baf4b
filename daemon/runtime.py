"""Loads exported models and prepares the process to run them in real time.

This is the one module that knows the exported-model format: TorchScript today (``torch.jit.script``
step functions, see DESIGN.md "Exported models"). A processor asks for ``load_model(path)`` and
calls what it gets; an ONNX Runtime backend can be added here without touching a processor.

torch is imported inside the functions: the daemon core imports this module only when a processor
needs it, and ``import torch`` then happens once, in the main thread, at start-up.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import re
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

log = logging.getLogger("genie.runtime")

# torch's messages for TorchScript entry points: "`torch.jit.load` is deprecated. Please switch
# to ..." and, on Python 3.14+, "`torch.jit.save` is not supported in Python 3.14+ ...".
_TORCHSCRIPT_DEPRECATION = r"`torch\.jit\.\w+` is (deprecated|not supported)"


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


def load_model(path: str | Path) -> torch.jit.ScriptModule:
    """Load an exported model on the CPU, in eval mode; a bad file raises ModelFileError."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path}: not found")
    try:
        with _torchscript_quietly():
            module = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError, OSError, EOFError) as exc:
        raise ModelFileError(f"model file {path}: not a TorchScript model ({_one_line(exc)})") from None
    if not isinstance(module, torch.jit.ScriptModule):
        raise ModelFileError(f"model file {path}: not a TorchScript module")
    module.eval()
    return module


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
