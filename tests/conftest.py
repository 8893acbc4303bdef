"""Shared fixtures: small texts, tiny models and the Tiny Shakespeare copy in ../shared."""

import signal
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from lslm.train import cpp_compiler

SHARED_TINYSHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"

# For the tests that torch.compile on CPU (the quick recipe among them).
needs_cpp_compiler = pytest.mark.skipif(cpp_compiler() is None, reason="torch.compile on CPU needs a C++ compiler")


class Hang(Exception):
    """A test's code ran past its time limit (see ``time_limit``)."""


@contextmanager
def time_limit(seconds: float):
    """Fail a block that runs longer than ``seconds`` with ``Hang``, instead of hanging the
    suite (POSIX, where SIGALRM exists; elsewhere the block simply runs)."""
    if not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum, frame):
        raise Hang(f"still running after {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

# A short, repetitive text: a tiny model can learn it in a few dozen steps.
RHYME = (
    "Twinkle, twinkle, little star,\nHow I wonder what you are!\n"
    "Up above the world so high,\nLike a diamond in the sky.\n"
) * 40


@pytest.fixture
def rhyme() -> str:
    return RHYME


@pytest.fixture
def char_data():
    """(tokenizer, {"train", "val", "test"} tensors) for the rhyme."""
    return prepare_data_from_text(RHYME)


def prepare_data_from_text(text: str, kind: str = "char", vocab_size=None):
    from lslm.data import encode_splits, split_text
    from lslm.tokenizers import train_tokenizer

    tok = train_tokenizer(kind, text, vocab_size)
    return tok, encode_splits(split_text(text, 0.1, 0.1), tok)


@pytest.fixture
def tiny_config():
    from lslm.model import GPTConfig

    def make(vocab_size: int, **kw) -> GPTConfig:
        cfg = dict(vocab_size=vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=32)
        cfg.update(kw)
        return GPTConfig(**cfg)

    return make


@pytest.fixture(autouse=True)
def _seed_torch():
    """Every test starts from the same global random state."""
    torch.manual_seed(0)
    yield
