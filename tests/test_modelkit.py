"""modelkit: the shared training loop resumes exactly, checkpoints load strictly, configs are strict."""

from dataclasses import dataclass, field

import pytest
import torch
from torch import nn

from modelkit import configs
from modelkit.checkpoints import CheckpointError, load_checkpoint, save_atomic
from modelkit.loop import LoopConfig, learning_rate, train_loop


class LineTask:
    """y = 3x - 1 with noise; batches a pure function of the step."""

    label = "line"

    def build_model(self):
        return nn.Linear(1, 1)

    def model_args(self):
        return {"in": 1}

    def config(self):
        return {"task": "line"}

    def meta(self):
        return {"split": "none"}

    def batch(self, step, rank, world):
        g = torch.Generator().manual_seed(step)
        x = torch.randn(16, 1, generator=g)
        return x, 3 * x - 1 + 0.01 * torch.randn(16, 1, generator=g)

    def loss(self, net, batch, step):
        x, y = batch
        mse = ((net(x) - y) ** 2).mean()
        return mse, {"mse": mse}

    def validate(self, model):
        x = torch.linspace(-1, 1, 32)[:, None]
        return {"loss": float(((model(x) - (3 * x - 1)) ** 2).mean())}


def test_loop_learns_and_resumes_exactly(tmp_path):
    straight = train_loop(LineTask(), LoopConfig(out_dir=str(tmp_path / "a"), steps=60, lr=0.05, ckpt_every=20,
                                                 eval_every=20, log_every=10), progress=False)
    assert straight["best_val"] < 0.05
    train_loop(LineTask(), LoopConfig(out_dir=str(tmp_path / "b"), steps=20, lr=0.05, ckpt_every=20,
                                      eval_every=20, log_every=10), progress=False)
    resumed = train_loop(LineTask(), LoopConfig(out_dir=str(tmp_path / "b"), steps=60, lr=0.05, ckpt_every=20,
                                                eval_every=20, log_every=10), progress=False)
    assert resumed["step"] == 60
    for k in straight["model"]:
        assert torch.equal(straight["model"][k], resumed["model"][k]), k
    assert (tmp_path / "b" / "best.pt").is_file()


def test_checkpoints_load_weights_only_and_refuse_bad_files(tmp_path):
    save_atomic({"w": torch.ones(2), "step": 3}, tmp_path / "c.pt")
    assert load_checkpoint(tmp_path / "c.pt")["step"] == 3
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")

    torch.save({"obj": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError):  # arbitrary objects are not unpickled
        load_checkpoint(tmp_path / "evil.pt")


class Evil:
    """Any class: a checkpoint holding one is refused, not unpickled."""


@dataclass
class Inner:
    size: int = 4


@dataclass
class Outer:
    lr: float = 1.0
    inner: Inner = field(default_factory=Inner)


def test_configs_are_strict_and_say_what_a_resume_ignores():
    assert configs.from_dict(Outer, {"inner": {"size": 8}}).inner.size == 8
    with pytest.raises(ValueError, match="unknown key.*colour"):
        configs.from_dict(Outer, {"colour": 1})
    with pytest.raises(ValueError, match="inner.*unknown key.*depth"):
        configs.from_dict(Outer, {"inner": {"depth": 1}})
    cfg, ignored = configs.resume_config(Outer, {"lr": 1.0, "inner": {"size": 4}}, {}, {"lr": 2.0})
    assert cfg.lr == 1.0 and ignored == ["lr"]


def test_learning_rate_warms_up_and_decays():
    cfg = LoopConfig(lr=1.0, steps=100, warmup_steps=10, decay="cosine", min_lr_ratio=0.1)
    assert learning_rate(cfg, 0) == pytest.approx(0.1)
    assert learning_rate(cfg, 10) == pytest.approx(1.0)
    assert learning_rate(cfg, 100) == pytest.approx(0.1)
    assert learning_rate(cfg, 55) < learning_rate(cfg, 20)


def test_a_cosine_tail_starts_where_decay_start_says():
    cfg = LoopConfig(lr=1.0, steps=100, decay="cosine", decay_start=60, min_lr_ratio=0.1)
    assert [learning_rate(cfg, s) for s in (0, 30, 60)] == [1.0, 1.0, 1.0]  # constant until the tail
    assert learning_rate(cfg, 80) == pytest.approx(0.55)  # half way down
    assert learning_rate(cfg, 100) == pytest.approx(0.1) and learning_rate(cfg, 130) == pytest.approx(0.1)


def test_a_card_says_how_busy_the_machine_was_when_it_was_timed():
    from modelkit.timing import load_words, machine_load

    load = machine_load(0.2)
    assert load["cpus"] >= 1 and 0 <= load["busy"] <= 1
    assert "a quiet machine" in load_words({"cpus": 2, "busy": 0.02})
    assert "pessimistic" in load_words({"cpus": 2, "busy": 0.6})
    assert "pessimistic" in load_words(None)  # a result from before the load was recorded
