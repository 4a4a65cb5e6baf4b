"""ONNX artefacts beside the TorchScript ones (``genie export MODEL --format onnx``), and the
parity check between the two.

A model package describes each step function of its artefact as an :class:`OnnxFunction` (an
eager module whose ``forward`` is the function, example inputs, which axes vary) and the constants
a processor reads; :func:`export_onnx` writes ``NAME.onnx`` (the function ``forward``) and
``NAME.f.onnx`` for each other function ``f``, in the layout ``daemon.runtime.OnnxModel`` loads.
The exporter is torch's ``torch.export``-based one (``dynamo=True``; needs the ``onnx`` and
``onnxscript`` packages, in the ``dev`` and ``train`` extras), never the deprecated tracer.

Parity: a package runs the same whole sequence (a performance, a song of presses, a set of grooves)
through both artefacts with ``daemon.runtime.load_model``, each carrying its own state from step to
step, and :func:`max_difference` compares what a processor reads from them: probabilities (the
softmax of the logits it samples from), velocities, timings, latent codes. Raw logits and LSTM cell
states are not compared directly: they grow to tens, where float32 rounds to a few 1e-6, and the
two runtimes add in different orders (a difference of 3e-5 in a cell state of 56 after 300 presses
moved no probability by more than 2e-6).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from daemon import runtime

log = logging.getLogger("genie.export")

PARITY_TOLERANCE = 1e-5  # issue "At the gig": ONNX and TorchScript agree to 1e-5


@dataclass
class OnnxFunction:
    """One step function to export: ``module(*args)`` computes it eagerly."""

    name: str  # "forward", or the artefact's method name ("encode")
    module: nn.Module
    args: tuple[torch.Tensor, ...]  # example inputs, in the TorchScript method's order
    arg_names: Sequence[str]  # the TorchScript method's argument names
    output_names: Sequence[str]
    # argument -> {axis: (name, min, max)}: the axes that vary between calls (a batch, a cache)
    dynamic: dict[str, dict[int, tuple[str, int, int]]] = field(default_factory=dict)


class Method(nn.Module):
    """``module.name`` as a module's ``forward`` (torch.export exports ``forward`` only)."""

    def __init__(self, module: nn.Module, name: str) -> None:
        super().__init__()
        self.inner = module
        self.method = name

    def forward(self, *args: Any) -> Any:
        return getattr(self.inner, self.method)(*args)


@contextlib.contextmanager
def _quietly() -> Iterator[None]:
    """torch.export and onnxscript talk on stdout, warnings and logging; an export says one line."""
    loggers = [logging.getLogger(n) for n in ("torch", "torch.onnx", "torch.export", "onnxscript", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _structure(module: nn.Module, shapes: tuple) -> tuple:
    """``dynamic_shapes`` shaped as ``forward``'s parameters: one entry holding them all for
    ``forward(*args)`` (:class:`Method`)."""
    import inspect

    params = inspect.signature(module.forward).parameters.values()
    return (shapes,) if any(p.kind is p.VAR_POSITIONAL for p in params) else shapes


def _export_one(fn: OnnxFunction, path: Path, attrs: dict[str, Any]) -> Path:
    dims: dict[tuple[str, int, int], Any] = {}
    shapes = {}
    for name in fn.arg_names:
        axes = fn.dynamic.get(name)
        shapes[name] = ({axis: dims.setdefault(d, torch.export.Dim(d[0], min=d[1], max=d[2]))
                         for axis, d in axes.items()} if axes else None)
    with _quietly(), torch.inference_mode(False), torch.no_grad():
        # distinct tensors: torch.export takes one tensor passed twice for one input, read twice
        args = tuple(a.clone() for a in fn.args)
        program = torch.onnx.export(fn.module.eval(), args, dynamo=True, input_names=list(fn.arg_names),
                                    output_names=list(fn.output_names), dynamic_shapes=_structure(fn.module, tuple(shapes[n] for n in fn.arg_names)) if fn.dynamic else None,
                                    optimize=True, verbose=False)
    meta = {runtime.META_INPUTS: json.dumps(list(fn.arg_names)), runtime.META_FUNCTION: fn.name,
            runtime.META_ATTRS: json.dumps(attrs, sort_keys=True)}
    proto = program.model_proto
    _check_dynamic(fn, proto)
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    path.parent.mkdir(parents=True, exist_ok=True)
    import onnx

    onnx.save_model(proto, str(path))
    return path


def _check_dynamic(fn: OnnxFunction, proto: Any) -> None:
    """Every axis meant to vary is variable in the graph: where torch.export specializes one (a
    bidirectional LSTM fixes its length), the exporter would silently keep the example's size."""
    inputs = {i.name: i for i in proto.graph.input}
    for name, axes in fn.dynamic.items():
        dims = inputs[name].type.tensor_type.shape.dim if name in inputs else []
        for axis in axes:
            if axis >= len(dims) or not dims[axis].dim_param:
                raise ValueError(f"{fn.name}: axis {axis} of {name!r} came out fixed in the ONNX graph")


def export_onnx(torchscript: str | Path, functions: Iterable[OnnxFunction], attrs: dict[str, Any]) -> list[Path]:
    """Write the ONNX files of the artefact ``torchscript`` (``NAME.pt``) beside it: one per
    function, each carrying the constants ``attrs`` a processor reads with ``Model.attr``."""
    written = []
    for fn in functions:
        written.append(_export_one(fn, runtime.onnx_file(torchscript, fn.name), attrs))
        log.info("wrote %s", written[-1])
    return written


def probabilities(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in float64 (what a processor samples from)."""
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def max_difference(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
    """The largest absolute difference between two runs' outputs (same shapes, same order)."""
    if len(a) != len(b):
        raise ValueError(f"the runs gave {len(a)} and {len(b)} outputs")
    worst = 0.0
    for x, y in zip(a, b):
        x, y = np.asarray(x), np.asarray(y)
        if x.shape != y.shape:
            raise ValueError(f"outputs of shapes {x.shape} and {y.shape}")
        if x.size:
            worst = max(worst, float(np.abs(x.astype(np.float64) - y.astype(np.float64)).max()))
    return worst


def export_checked(torchscript: str | Path, functions: Iterable[OnnxFunction], attrs: dict[str, Any],
                   run: Any) -> tuple[list[Path], float]:
    """:func:`export_onnx`, then ``run`` (a whole sequence through a ``daemon.runtime.Model``,
    returning its outputs) on both artefacts: the files written and the largest difference.
    Beyond :data:`PARITY_TOLERANCE` the ONNX files are removed and ValueError says by how much."""
    written = export_onnx(torchscript, functions, attrs)
    diff = max_difference(run(runtime.load_model(torchscript)), run(runtime.load_model(written[0])))
    if not diff <= PARITY_TOLERANCE:
        for p in written:
            p.unlink(missing_ok=True)
        raise ValueError(f"{Path(torchscript).name}: ONNX and TorchScript differ by {diff:.3g} "
                         f"(tolerance {PARITY_TOLERANCE:g}); nothing written")
    log.info("%s: ONNX agrees with TorchScript to %.2g over the parity sequence", Path(torchscript).name, diff)
    return written, diff


def card_section(written: dict[str, float], sequence: str) -> str:
    """The model card's section on the ONNX files: which, what they are, how well they agree.
    ``written``: file name -> largest difference from TorchScript; ``sequence``: what parity ran."""
    if not written:
        return ""
    diff = max(written.values())
    return (f"## ONNX (the torch-free runtime)\n\n{', '.join(f'`{n}`' for n in sorted(written))}: the same step "
            f"functions as ONNX, written from the TorchScript artefact by `genie export ... --format onnx` "
            f"(torch's `torch.export` exporter). `genie run` loads them where torch is not installed (the "
            f"`onnx` extra) or where a processor's `weights` names them: the same model, its choices the same but for float rounding. "
            f"Parity over {sequence}: what the processor samples from (probabilities, velocities, timings, "
            f"codes) agrees with TorchScript to {diff:.1e} (tolerance {PARITY_TOLERANCE:g}; a test checks "
            f"it on every run of the suite).\n\n")
