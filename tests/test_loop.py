"""The one training loop: any model trains through it, and nothing in it touches the
caller's random numbers or configs."""

import dataclasses
import math

import pytest
import torch

from lslm.errors import LslmError
from lslm.loop import TrainConfig, TrainLoop
from lslm.model import GPT
from lslm.tasks.common import fit
from lslm.train import Trainer


def quiet(**kw) -> TrainConfig:
    return TrainConfig(**{"eval_interval": 0, "progress": False, "device": "cpu", **kw})


def test_a_tiny_classifier_and_a_tiny_gpt_train_through_the_same_loop(char_data, tiny_config):
    tok, data = char_data
    # A classifier: is the first of two numbers the larger?
    gen = torch.Generator().manual_seed(0)
    xs = torch.randn(256, 2, generator=gen)
    ys = (xs[:, 0] > xs[:, 1]).long()
    classifier = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))

    def classify_loss(net, batch):
        x, y = batch
        return torch.nn.functional.cross_entropy(net(x), y)

    rows = torch.Generator().manual_seed(1)

    def next_rows():
        i = torch.randint(0, 256, (32,), generator=rows)
        return xs[i], ys[i]

    gpt = GPT(tiny_config(tok.vocab_size), seed=0)
    blocks = torch.Generator().manual_seed(2)

    def next_blocks():
        from lslm.data import get_batch

        return get_batch(data["train"], 8, gpt.config.block_size, generator=blocks)

    seen = []
    for model, loss_fn, batches, lr in ((classifier, classify_loss, next_rows, 3e-2),
                                        (gpt, lambda net, b: net(*b)[1], next_blocks, 3e-3)):
        loop = TrainLoop(model, loss_fn, batches, quiet(max_iters=60, warmup_iters=5, lr=lr, min_lr=lr / 10),
                         callbacks=[lambda lp, rec: seen.append((type(lp.model).__name__, rec["step"]))])
        history = loop.fit()
        losses = history["train_loss"]
        assert len(losses) == 60 and history["step"] == list(range(1, 61))
        assert sum(losses[-10:]) / 10 < 0.7 * sum(losses[:10]) / 10, type(model).__name__
    assert ("Sequential", 60) in seen and ("GPT", 60) in seen
    # The language-model Trainer and the task models' fit() are that same loop.
    assert issubclass(Trainer, TrainLoop)
    kinds = []
    fit(classifier, classify_loss, lambda g: next_rows(), steps=2, callbacks=[lambda lp, rec: kinds.append(type(lp))])
    assert kinds == [TrainLoop, TrainLoop]


def test_building_a_trainer_a_task_model_or_a_pretrained_model_leaves_the_global_rng_alone(
    char_data, tiny_config, tmp_path, monkeypatch
):
    from lslm import Seq2Seq, Seq2SeqConfig
    from lslm.pretrained import char_lm
    from lslm.tasks import sentiment
    from lslm.tasks.qa import SpanQA

    tok, data = char_data
    torch.manual_seed(1234)
    before = torch.random.get_rng_state()

    gpt = GPT(tiny_config(tok.vocab_size), seed=3)
    Trainer(gpt, tok, data, quiet(max_iters=1, batch_size=2))
    sentiment.classifier(tok, gpt, pretrained=False, seed=0)
    sentiment.classifier(tok, gpt, pretrained=True, seed=0)
    SpanQA(GPT(tiny_config(tok.vocab_size), seed=4), seed=4)
    Seq2Seq(Seq2SeqConfig(), seed=5)
    monkeypatch.setenv("LSLM_CACHE", str(tmp_path / "cache"))
    char_lm(steps=2)  # trained and cached
    char_lm(steps=2)  # loaded from the cache
    assert torch.equal(torch.random.get_rng_state(), before)


def test_training_draws_dropout_from_its_own_seed_not_the_callers(char_data, tiny_config):
    tok, data = char_data
    config = tiny_config(tok.vocab_size, dropout=0.2)
    curves = []
    for caller_seed in (0, 99):
        torch.manual_seed(caller_seed)
        trainer = Trainer(GPT(config, seed=7), tok, data, quiet(max_iters=6, batch_size=4, seed=5))
        state = torch.random.get_rng_state()
        curves.append(trainer.fit()["train_loss"])
        assert torch.equal(torch.random.get_rng_state(), state), "training moved the caller's generator"
    assert curves[0] == curves[1]
    # ... and the seed does decide the dropout masks.
    other = Trainer(GPT(config, seed=7), tok, data, quiet(max_iters=6, batch_size=4, seed=5))
    other.rng_state = other._seeded_rng_state(6)
    assert other.fit()["train_loss"] != curves[0]


def test_fit_never_changes_the_callers_config(char_data, tiny_config):
    tok, data = char_data
    config = quiet(max_iters=3, batch_size=2)
    kept = dataclasses.replace(config)
    trainer = Trainer(GPT(tiny_config(tok.vocab_size), seed=0), tok, data, config)
    trainer.fit(max_iters=5)
    assert trainer.step == 5 and trainer.config.max_iters == 5
    assert config == kept


def test_a_nan_loss_stops_any_model_with_one_message_after_backward():
    model = torch.nn.Linear(1, 1)
    loop = TrainLoop(model, lambda net, b: net(b).sum() * float("nan"), lambda: torch.ones(4, 1), quiet(max_iters=3))
    with pytest.raises(Exception, match="loss became nan at step 0"):
        loop.fit()
    assert loop.step == 0 and all(p.grad is None for p in model.parameters())


def test_ctrl_c_in_any_loop_keeps_what_was_learned():
    model = torch.nn.Linear(1, 1)

    def stop_at_3(loop, record):
        if record["step"] == 3:
            raise KeyboardInterrupt

    loop = TrainLoop(model, lambda net, b: (net(b) - 1).pow(2).mean(), lambda: torch.ones(4, 1),
                     quiet(max_iters=10), callbacks=[stop_at_3])
    history = loop.fit()
    assert loop.interrupted and loop.step == 3 and len(history["train_loss"]) == 3


@pytest.mark.parametrize("change", [
    {"lr": float("nan")}, {"lr": float("inf")}, {"lr": -1e-3}, {"lr": 0}, {"lr": "1e-3"},
    {"min_lr": float("nan")}, {"min_lr": -1.0},
    {"batch_size": 2.5}, {"batch_size": True}, {"batch_size": 0}, {"max_iters": -1}, {"max_iters": 1.0},
    {"grad_accum": 0}, {"eval_interval": -1}, {"eval_iters": 0}, {"warmup_iters": -1},
    {"checkpoint_interval": -5}, {"lr_decay_iters": -1}, {"lr_decay_iters": 2.0},
    {"beta1": 2}, {"beta1": 1.0}, {"beta2": -0.1}, {"beta2": float("nan")},
    {"weight_decay": -0.1}, {"weight_decay": float("nan")}, {"grad_clip": -1.0}, {"grad_clip": float("nan")},
    {"seed": -1}, {"seed": 2**63}, {"seed": 1.5},
    {"device": "banana"}, {"device": None}, {"device": "cuda:x"}, {"device": ""},
    {"amp": 1}, {"compile": "yes"}, {"progress": None},
])
def test_train_config_refuses_wrong_types_and_ranges(change):
    with pytest.raises(LslmError) as err:
        TrainConfig(**change)
    assert "\n" not in str(err.value)


def test_train_config_accepts_every_sensible_value():
    import numpy as np

    cfg = TrainConfig(max_iters=0, lr=1, min_lr=0, warmup_iters=0, eval_interval=0, grad_clip=0,
                      weight_decay=0, beta1=0.0, beta2=np.float64(0.999), seed=2**63 - 1,
                      batch_size=np.int64(4), lr_decay_iters=10, device="cuda:1")
    assert cfg.lr == 1.0 and type(cfg.batch_size) is int and type(cfg.beta2) is float
    for device in ("auto", "cpu", "cuda", "mps"):
        TrainConfig(device=device)


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_stop_after_the_step_like_ctrl_c(name, capsys):
    import os
    import signal

    sig = getattr(signal, name, None)
    if sig is None:
        pytest.skip(f"{name} does not exist on this platform")

    class Escaped(Exception):
        pass

    def escaped(signum, frame):  # what fit() must replace: reaching it means the signal escaped
        raise Escaped(name)

    def signal_at_3(loop, record):
        if record["step"] == 3:
            os.kill(os.getpid(), sig)

    previous = signal.signal(sig, escaped)
    try:
        loop = TrainLoop(torch.nn.Linear(1, 1), lambda net, b: (net(b) - 1).pow(2).mean(),
                         lambda: torch.ones(4, 1), quiet(max_iters=10), callbacks=[signal_at_3])
        history = loop.fit()
        assert loop.interrupted and loop.stop_signal == sig
        assert loop.step == 3 and len(history["train_loss"]) == 3  # the step in flight was finished
        assert f"Interrupted at step 3 by {name}" in capsys.readouterr().out
        assert signal.getsignal(sig) is escaped  # the handler there was is back
        loop.fit()  # a later fit starts afresh and runs to the end
        assert not loop.interrupted and loop.stop_signal is None and loop.step == 10
    finally:
        signal.signal(sig, previous)


def test_a_loop_in_another_thread_trains_without_signal_handlers():
    import threading

    done = []
    loop = TrainLoop(torch.nn.Linear(1, 1), lambda net, b: (net(b) - 1).pow(2).mean(),
                     lambda: torch.ones(4, 1), quiet(max_iters=3))
    worker = threading.Thread(target=lambda: done.append(loop.fit()))
    worker.start()
    worker.join(60)
    assert done and loop.step == 3 and not loop.interrupted


# ----- fused AdamW where torch has none (torch before 2.4 on cpu and mps) -------------------------
# What torch 2.2 and 2.3 list as the devices with fused optimizer kernels
# (torch/utils/_foreach_utils.py): no cpu, no mps. torch 2.4 added both.
OLD_TORCH_FUSED_DEVICES = ["cuda", "xpu", "privateuseone"]


@pytest.fixture
def torch_without_cpu_fused(monkeypatch):
    """This torch, told the device list of torch 2.2: its own AdamW then refuses fused=True on
    CPU, as torch 2.2 does, and lslm's capability check reads the same list."""
    _pretend_old_torch(monkeypatch)


def _pretend_old_torch(monkeypatch) -> None:
    from importlib import import_module

    listed = lambda: list(OLD_TORCH_FUSED_DEVICES)  # noqa: E731
    # Both places that read the list: torch's own check, and the name AdamW's module bound.
    for module in ("torch.utils._foreach_utils", "torch.optim.optimizer"):
        monkeypatch.setattr(import_module(module), "_get_fused_kernels_supported_devices", listed)
    # And the kernels themselves, which torch 2.2 has for CUDA only.
    for name in ("_fused_adam_", "_fused_adamw_"):
        kernel = getattr(torch, name)

        def cuda_only(params, *args, _kernel=kernel, _name=name, **kwargs):
            if params and params[0].device.type != "cuda":
                raise NotImplementedError(f"Could not run 'aten::{_name}' with arguments from the "
                                          f"'{params[0].device.type.upper()}' backend")
            return _kernel(params, *args, **kwargs)

        monkeypatch.setattr(torch, name, cuda_only)


def _linear_loop(**kw) -> TrainLoop:
    gen = torch.Generator().manual_seed(0)
    xs = torch.randn(64, 3, generator=gen)
    ys = xs @ torch.tensor([[1.0], [-2.0], [0.5]])
    model = torch.nn.Linear(3, 1)
    return TrainLoop(model, lambda net, b: (net(b[0]) - b[1]).pow(2).mean(), lambda: (xs, ys),
                     quiet(max_iters=40, warmup_iters=2, lr=0.1, min_lr=0.01, weight_decay=0.0), **kw)


def _uses_fused(loop: TrainLoop) -> bool:
    return all(bool(group.get("fused")) for group in loop.optimizer.param_groups)


def test_fused_adamw_is_taken_where_this_torch_has_it():
    from lslm.devices import fused_adamw_available

    assert fused_adamw_available("cuda")  # every torch since 2.0
    major, minor = (int(part) for part in torch.__version__.split(".")[:2])
    assert fused_adamw_available("cpu") == ((major, minor) >= (2, 4))
    assert _uses_fused(_linear_loop()) == fused_adamw_available("cpu")


def test_training_falls_back_to_torchs_default_adamw_where_fused_is_missing(torch_without_cpu_fused):
    from lslm.devices import fused_adamw_available

    # The simulation bites: asked for fused on CPU, this torch now refuses, as 2.2 does.
    param = torch.nn.Parameter(torch.ones(2))
    param.grad = torch.ones(2)
    with pytest.raises(RuntimeError, match="supported devices"):
        torch.optim.AdamW([param], fused=True).step()
    assert not fused_adamw_available("cpu") and fused_adamw_available("cuda:0")

    loop = _linear_loop()
    assert not _uses_fused(loop)
    losses = loop.fit()["train_loss"]
    assert len(losses) == 40 and losses[-1] < 0.1 * losses[0]
    with pytest.raises(LslmError, match="no fused AdamW for cpu.*torch 2.4") as err:
        _linear_loop(fused=True)
    assert "\n" not in str(err.value)


def test_a_torch_that_refuses_fused_when_the_optimizer_is_built_gets_the_default(monkeypatch):
    # torch 2.2 checks the devices in AdamW's constructor; a list that says yes while the
    # constructor says no (a private API drifting) must not stop training either.
    built = []

    class RefusingAdamW(torch.optim.AdamW):
        def __init__(self, params, *args, fused=None, **kwargs):
            if fused:
                raise RuntimeError("`fused=True` requires all the params to be floating point Tensors of "
                                   f"supported devices: {OLD_TORCH_FUSED_DEVICES}.")
            built.append(fused)
            super().__init__(params, *args, fused=fused, **kwargs)

    monkeypatch.setattr("lslm.loop.fused_adamw_available", lambda device: True)
    monkeypatch.setattr(torch.optim, "AdamW", RefusingAdamW)
    loop = _linear_loop()
    assert built == [None] and not _uses_fused(loop)
    assert loop.fit()["train_loss"][-1] < 0.1 * loop.history["train_loss"][0]


def test_a_run_saved_with_fused_adamw_resumes_where_torch_has_none(char_data, tiny_config, tmp_path, monkeypatch):
    from lslm.devices import fused_adamw_available

    if not fused_adamw_available("cpu"):
        pytest.skip("this torch has no fused AdamW on CPU to save a run with")
    tok, data = char_data
    trainer = Trainer(GPT(tiny_config(tok.vocab_size), seed=0), tok, data, quiet(max_iters=3, batch_size=2),
                      out_dir=tmp_path / "run")
    trainer.fit()
    trainer.save()
    assert _uses_fused(trainer)
    _pretend_old_torch(monkeypatch)  # and resume it "on torch 2.2"
    resumed = Trainer.resume(tmp_path / "run", data, max_iters=5)
    assert not _uses_fused(resumed) and resumed.step == 3
    resumed.fit()
    assert resumed.step == 5 and all(math.isfinite(x) for x in resumed.history["train_loss"])


# ----- platforms without SIGHUP (Windows) -----------------------------------------------------------
def test_training_stops_on_sigterm_where_sighup_does_not_exist(monkeypatch, capsys):
    import os
    import signal

    from lslm.loop import stop_signal_numbers

    if not hasattr(signal, "SIGHUP"):
        pytest.skip("no SIGHUP here to take away")
    monkeypatch.delattr(signal, "SIGHUP")
    assert stop_signal_numbers() == (signal.SIGTERM,)

    def sigterm_at_2(loop, record):
        if record["step"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    loop = TrainLoop(torch.nn.Linear(1, 1), lambda net, b: (net(b) - 1).pow(2).mean(), lambda: torch.ones(4, 1),
                     quiet(max_iters=10), callbacks=[sigterm_at_2])
    loop.fit()
    assert loop.interrupted and loop.step == 2 and loop.stop_signal == signal.SIGTERM
    assert "Interrupted at step 2 by SIGTERM" in capsys.readouterr().out
