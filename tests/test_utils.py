"""The helpers lslm shares: eval mode, seeding, atomic writes, n-grams, error summaries."""

import os
import sys

import pytest
import torch

from lslm.errors import LslmError
from lslm.utils import atomic_write, error_summary, evaluating, ngrams, require, seeded


def test_evaluating_restores_the_mode_even_when_the_block_raises():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))
    with evaluating(model) as m:
        assert m is model and not model.training and not model[1].training
    assert model.training and model[1].training
    with pytest.raises(RuntimeError), evaluating(model):
        raise RuntimeError("boom")
    assert model.training
    model.eval()
    with evaluating(model):
        pass
    assert not model.training  # a model in eval mode stays there


def test_seeded_repeats_draws_and_leaves_the_callers_generator_alone():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    with seeded(7):
        a = torch.randn(3)
    assert torch.equal(torch.random.get_rng_state(), before)
    with seeded(7):
        b = torch.randn(3)
    assert torch.equal(a, b)
    torch.manual_seed(7)
    assert torch.equal(a, torch.randn(3))  # the same numbers as a global reseed gives
    torch.manual_seed(123)
    with seeded(None):
        c = torch.randn(3)  # the caller's own stream, advanced as usual
    torch.manual_seed(123)
    assert torch.equal(c, torch.randn(3))


def test_seeded_restores_the_generator_when_the_block_raises():
    before = torch.random.get_rng_state()
    with pytest.raises(ValueError), seeded(1):
        torch.randn(5)
        raise ValueError
    assert torch.equal(torch.random.get_rng_state(), before)


def test_atomic_write_replaces_the_file_or_leaves_it_alone(tmp_path):
    path = tmp_path / "sub" / "f.bin"
    assert atomic_write(path, lambda f: f.write(b"one")) == path
    assert path.read_bytes() == b"one"

    def half_then_fail(f):
        f.write(b"tw")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half_then_fail)
    assert path.read_bytes() == b"one"
    assert os.listdir(path.parent) == ["f.bin"]  # no temporary file left behind
    atomic_write(str(path), lambda f: f.write(b"two"))
    assert path.read_bytes() == b"two" and os.listdir(path.parent) == ["f.bin"]


def test_ngrams_counts_every_run():
    assert ngrams("a b a b".split(), 2) == {("a", "b"): 2, ("b", "a"): 1}
    assert ngrams("abca", 1) == {("a",): 2, ("b",): 1, ("c",): 1}
    assert ngrams(["a"], 2) == {}


def test_error_summary_is_one_short_line():
    assert error_summary(OSError("disk  full\nmore detail")) == "disk full"
    assert error_summary(TimeoutError()) == "TimeoutError"
    assert error_summary("connection refused") == "connection refused"
    assert error_summary("") == "unknown error"
    assert len(error_summary(ValueError("x" * 500))) == 120


def test_require_names_the_extra_to_install(monkeypatch):
    require("torch", "core", "anything")  # installed: no error
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if it were not installed
    with pytest.raises(LslmError, match=r"pip install 'lslm\[tensorboard\]'") as err:
        require("tensorboard", "tensorboard", "TensorBoard logging")
    assert "\n" not in str(err.value)
