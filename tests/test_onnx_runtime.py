"""The ONNX runtime behind ``daemon.runtime.Model``, the exporter (``modelkit.onnx_export``), and
the shipped ONNX files' parity with the shipped TorchScript ones."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from daemon import runtime
from modelkit.onnx_export import OnnxFunction, PARITY_TOLERANCE, Method, export_onnx, max_difference

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
ROOT = Path(__file__).resolve().parents[1]


class Tiny(torch.nn.Module):
    """A step function with explicit state, and a second function: the shape of Genie's models."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(4, 3)
        self.embed = torch.nn.Embedding(5, 3)
        self.size: int = 3

    def forward(self, x: torch.Tensor, kind: torch.Tensor, state: torch.Tensor, scale: float
                ) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.proj(x) * scale + self.embed(kind) + state
        return y, state + 1

    @torch.jit.export
    def encode(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.embed(a) + 10 * self.embed(b)


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory) -> tuple[Path, Path]:
    torch.manual_seed(0)
    module = Tiny().eval()
    pt = tmp_path_factory.mktemp("tiny") / "tiny.pt"
    runtime.save_model(module, pt)
    kind = torch.zeros(2, dtype=torch.long)
    rows = {0: ("rows", 1, 64)}
    forward = OnnxFunction("forward", module, (torch.zeros(2, 4), kind, torch.zeros(2, 3), torch.tensor(1.0)),
                           ("x", "kind", "state", "scale"), ("y", "state_out"),
                           {"x": rows, "kind": rows, "state": rows})
    # one tensor passed for both arguments: the export must still keep them apart
    encode = OnnxFunction("encode", Method(module, "encode"), (kind, kind), ("a", "b"), ("z",),
                          {"a": rows, "b": rows})
    written = export_onnx(pt, [forward, encode], {"size": 3, "name": "tiny"})
    assert written == [pt.with_suffix(".onnx"), pt.with_name("tiny.encode.onnx")]
    return pt, written[0]


def _run(model: runtime.Model) -> list[np.ndarray]:
    step, encode = model.function(), model.function("encode")
    rng = np.random.default_rng(0)
    state, out = np.zeros((3, 3), np.float32), []
    for i in range(20):
        x = rng.standard_normal((3, 4)).astype(np.float32)
        y, state = step(x, rng.integers(0, 5, 3), state, 0.5 + i / 10)
        out += [y, encode(rng.integers(0, 5, 3), rng.integers(0, 5, 3))[0]]
    return out + [state]


def test_both_runtimes_give_the_same_numbers_through_one_interface(artefacts):
    pt, onnx = artefacts
    ts, ox = runtime.load_model(pt), runtime.load_model(onnx)
    assert (ts.format, ox.format) == ("torchscript", "onnx")
    a, b = _run(ts), _run(ox)
    assert all(isinstance(x, np.ndarray) for x in a + b)
    assert max_difference(a, b) <= PARITY_TOLERANCE
    assert ts.attr("size") == ox.attr("size") == 3
    assert ox.attr("name") == "tiny"


def test_one_tensor_given_for_two_arguments_stays_two_inputs(artefacts):
    """torch.export reads one tensor passed twice as one input (a drum model once took its style
    from its fill flag this way); the exporter passes copies."""
    _, onnx = artefacts
    encode = runtime.load_model(onnx).function("encode")
    assert not np.allclose(encode(np.array([1]), np.array([2]))[0], encode(np.array([2]), np.array([1]))[0])


def test_missing_functions_and_constants_are_one_line_errors(artefacts):
    pt, onnx = artefacts
    for path in (pt, onnx):
        model = runtime.load_model(path)
        with pytest.raises(runtime.ModelFileError, match="no function 'decode'"):
            model.function("decode")
        with pytest.raises(runtime.ModelFileError, match="no constant 'vocab'"):
            model.attr("vocab")


def test_the_file_chooses_the_runtime(artefacts, tmp_path, monkeypatch):
    pt, onnx = artefacts
    assert runtime.choose_file(pt) == pt  # torch here: TorchScript by default
    assert runtime.choose_file(onnx) == onnx
    lone = tmp_path / "lone.onnx"
    lone.write_bytes(onnx.read_bytes())
    assert runtime.choose_file(tmp_path / "lone.pt") == lone  # no .pt: the .onnx beside it
    assert runtime.load_model(tmp_path / "lone.pt").format == "onnx"
    monkeypatch.setattr(runtime, "torch_installed", lambda: False)  # a torch-free install
    assert runtime.choose_file(pt) == onnx
    assert runtime.load_model(pt).format == "onnx"
    with pytest.raises(runtime.ModelFileError, match="torch is not installed"):
        runtime.load_torchscript(pt)


@pytest.mark.parametrize("kind", ["garbage", "empty", "truncated", "torchscript"])
def test_a_corrupt_onnx_file_is_one_line(artefacts, tmp_path, kind):
    pt, onnx = artefacts
    path = tmp_path / f"{kind}.onnx"
    data = {"garbage": b"\x00not a model" * 40, "empty": b"", "truncated": onnx.read_bytes()[:300],
            "torchscript": pt.read_bytes()}[kind]
    path.write_bytes(data)
    with pytest.raises(runtime.ModelFileError) as info:
        runtime.load_model(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_non_finite_numpy_outputs_are_refused():
    with pytest.raises(runtime.ModelFileError, match="not finite"):
        runtime.check_finite((np.ones(3, np.float32), np.array([np.nan], np.float32)))
    runtime.check_finite((np.ones(3, np.float32), np.arange(3)))


def test_an_axis_the_export_fixed_is_refused(tmp_path):
    """Where torch.export fixes an axis meant to vary (here a reshape to the example's size; in
    Piano Genie's encoder, its LSTM's length), it falls back to a graph that takes only the
    example's size: the exporter refuses rather than write it."""

    class Fixed(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.reshape(1, 21) * 2

    pt = tmp_path / "fixed.pt"
    fn = OnnxFunction("forward", Fixed(), (torch.zeros(1, 7, 3),), ("x",), ("y",), {"x": {1: ("length", 1, 512)}})
    with pytest.raises(ValueError, match="axis 1 of 'x' came out fixed"):
        export_onnx(pt, [fn], {})
    assert not runtime.onnx_file(pt).exists()


# ---- the shipped models ----------------------------------------------------------------------

def _shipped():
    from drumvae import export as drum
    from musiclm import export as lm
    from pianogenie import export as pg

    return [(ROOT / "pianogenie" / "weights" / pg.DECODER_FILE, pg.decoder_parity_run),
            (ROOT / "pianogenie" / "weights" / pg.VQ_DECODER_FILE, pg.decoder_parity_run),
            (ROOT / "drumvae" / "weights" / drum.MODEL_FILE, drum.parity_run),
            (ROOT / "musiclm" / "weights" / lm.MODEL_FILE, lm.parity_run)]


@pytest.mark.parametrize("pt,run", _shipped(), ids=["pianogenie", "pianogenie-vq", "drumvae", "musiclm"])
def test_shipped_onnx_agrees_with_shipped_torchscript_over_a_whole_sequence(pt, run):
    """A song of 300 presses, 40 grooves under every transform, 600 tokens past the context window:
    what each processor samples from agrees to 1e-5 (and the ONNX file is not stale)."""
    onnx = runtime.onnx_file(pt)
    assert onnx.is_file(), f"{onnx.name} is not shipped beside {pt.name}: genie export ... --format onnx"
    diff = max_difference(run(runtime.load_model(pt)), run(runtime.load_model(onnx)))
    assert diff <= PARITY_TOLERANCE, diff


def test_genie_export_format_onnx_converts_the_torchscript_beside_it(tmp_path):
    from daemon.cli import cli

    (tmp_path / "pianogenie_decoder.pt").write_bytes((ROOT / "pianogenie" / "weights" / "pianogenie_decoder.pt").read_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = CliRunner().invoke(cli, ["export", "pianogenie", "--format", "onnx", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "agrees with TorchScript to" in result.output
    assert (tmp_path / "pianogenie_decoder.onnx").is_file()
    model = runtime.load_model(tmp_path / "pianogenie_decoder.onnx")
    assert model.format == "onnx" and model.attr("num_buttons") == 8
