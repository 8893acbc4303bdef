"""The one training loop: any model trains through it, and nothing in it touches the
caller's random numbers or configs."""

import dataclasses

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
