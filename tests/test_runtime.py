"""``daemon.runtime``: loading exported TorchScript models, threads, warm-up, GC (ONNX: test_onnx_runtime.py)."""

from __future__ import annotations

import gc
import warnings
import zipfile

import pytest
import torch

from daemon import runtime


class Step(torch.nn.Module):
    """A step function with explicit state, the shape of every exported Genie model."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(4, 3)
        self.drop = torch.nn.Dropout(0.5)  # only inert in eval mode

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.drop(self.proj(x)) + state
        return y, state + 1


def scripted_file(tmp_path):
    torch.manual_seed(0)
    module = Step().eval()
    with warnings.catch_warnings():  # the test scripts with torch directly, not through runtime
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(module)
        path = tmp_path / "step.pt"
        torch.jit.save(scripted, str(path))
    return module, path


def test_load_model_gives_the_same_outputs(tmp_path):
    module, path = scripted_file(tmp_path)
    loaded = runtime.load_torchscript(path)
    assert isinstance(loaded, torch.jit.ScriptModule)
    assert not loaded.training  # eval mode: dropout is off, so outputs are deterministic
    x, state = torch.randn(2, 4), torch.zeros(2, 3)
    with torch.no_grad():
        want_y, want_state = module(x, state)
        got_y, got_state = loaded(x, state)
        again_y, _ = loaded(x, state)
    torch.testing.assert_close(got_y, want_y)
    torch.testing.assert_close(got_state, want_state)
    torch.testing.assert_close(again_y, got_y)


def test_save_model_round_trips(tmp_path):
    torch.manual_seed(1)
    module = Step().eval()
    path = tmp_path / "exported.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # exporting through runtime is quiet too
        runtime.save_model(module, path)
        loaded = runtime.load_torchscript(path)
    x, state = torch.randn(1, 4), torch.ones(1, 3)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, state)[0], module(x, state)[0])


def test_deprecation_warning_does_not_escape(tmp_path, recwarn):
    _, path = scripted_file(tmp_path)
    recwarn.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning at all would fail the load
        runtime.load_model(path)
    assert not [w for w in recwarn.list if "torch.jit" in str(w.message)]


def test_silencing_is_narrow(tmp_path):
    """Inside the quiet block, other warnings still reach the user; outside it, nothing changed."""
    with pytest.warns(DeprecationWarning, match="something else"):
        with runtime._torchscript_quietly():
            warnings.warn("something else is deprecated", DeprecationWarning)
    with pytest.warns(FutureWarning, match="torch.jit.load"):
        warnings.warn("`torch.jit.load` is deprecated. Please switch to `torch.export`.",
                      FutureWarning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with runtime._torchscript_quietly():  # the 2.14+ category is covered as well
            warnings.warn("`torch.jit.load` is deprecated. Please switch to `torch.export`.",
                          FutureWarning)


def _assert_one_line_naming(exc: BaseException, path) -> None:
    message = str(exc)
    assert str(path) in message
    assert "\n" not in message
    assert len(message) < 300


def test_missing_file_is_a_model_file_error(tmp_path):
    path = tmp_path / "absent.pt"
    with pytest.raises(runtime.ModelFileError, match="not found") as info:
        runtime.load_model(path)
    _assert_one_line_naming(info.value, path)
    assert isinstance(info.value, ValueError)  # the session turns ValueError into a user error


@pytest.mark.parametrize("kind", ["garbage", "empty", "truncated", "state_dict", "foreign_zip",
                                  "directory"])
def test_corrupt_file_is_a_model_file_error(tmp_path, kind):
    _, good = scripted_file(tmp_path)
    path = tmp_path / f"{kind}.pt"
    if kind == "garbage":
        path.write_bytes(b"\x00not a model at all" * 20)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        data = good.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "state_dict":  # a checkpoint, not an export: a zip, but no TorchScript inside
        torch.save(Step().state_dict(), path)
    elif kind == "foreign_zip":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("readme.txt", "hello")
    elif kind == "directory":
        path.mkdir()
    with pytest.raises(runtime.ModelFileError) as info:
        runtime.load_model(path)
    _assert_one_line_naming(info.value, path)


def test_configure_threads_uses_one_thread():
    before = torch.get_num_threads()
    try:
        runtime.configure_threads()  # inter-op may already be fixed in this process: no error
        assert torch.get_num_threads() == 1
        runtime.configure_threads()  # idempotent
    finally:
        torch.set_num_threads(before)


def test_warm_up_calls_the_step_n_times():
    calls = []
    assert runtime.warm_up(lambda: calls.append(1) or len(calls), 5) == 5
    assert len(calls) == 5
    assert runtime.warm_up(lambda: calls.append(1), 0) is None and len(calls) == 5
    with pytest.raises(ValueError):
        runtime.warm_up(lambda: None, -1)


def test_warm_up_runs_a_loaded_model(tmp_path):
    _, path = scripted_file(tmp_path)
    model = runtime.load_torchscript(path)
    module, _ = scripted_file(tmp_path)
    x, state = torch.ones(1, 4), torch.zeros(1, 3)
    calls = []

    def step():
        nonlocal state
        calls.append(1)
        _, state = model(x, state)
        return state

    with torch.no_grad():
        final_state = runtime.warm_up(step, 3)
        expected = torch.zeros(1, 3)
        for _ in range(3):
            _, expected = module(x, expected)
    assert len(calls) == 3
    torch.testing.assert_close(final_state, expected)  # three real steps of the loaded model


def test_freeze_gc_moves_live_objects_to_the_permanent_generation():
    gc.unfreeze()
    try:
        kept = [[i] for i in range(100)]  # containers: objects the collector tracks
        assert all(gc.is_tracked(k) for k in kept)
        runtime.freeze_gc()
        collected = {id(o) for generation in range(3) for o in gc.get_objects(generation)}
        assert not any(id(k) in collected for k in kept)  # frozen: out of every generation
        assert gc.get_freeze_count() >= len(kept)
    finally:
        gc.unfreeze()


def test_warm_up_refuses_a_model_with_nan_outputs(tmp_path):
    module, _ = scripted_file(tmp_path)
    with torch.no_grad():
        for p in module.parameters():
            p.fill_(float("nan"))
    path = tmp_path / "nan.pt"
    runtime.save_model(module, path)
    model = runtime.load_torchscript(path)
    x, state = torch.zeros(1, 4), torch.zeros(1, 3)
    with torch.no_grad(), pytest.raises(runtime.ModelFileError, match="not finite"):
        runtime.warm_up(lambda: model(x, state), 3)
