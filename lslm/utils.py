"""Small helpers that the rest of lslm shares, each written once.

* ``evaluating(model)``: eval mode inside a ``with`` block, the previous mode restored after,
  even when the block raises.
* ``seeded(seed)``: run a block with torch's global generator seeded, and leave the caller's
  generator exactly as it was (building a model draws its initial weights from it).
* ``atomic_write(path, write)``: write a file next to its final place, flush it to disk, then
  rename it over the old one, so a crash never leaves a half-written file.
* ``ngrams(tokens, n)``: count the n-grams of a sequence.
* ``error_summary(exc)``: an exception as one short line, for a one-line ``LslmError``.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@contextmanager
def evaluating(model: "torch.nn.Module") -> Iterator["torch.nn.Module"]:
    """Put ``model`` in eval mode (dropout off) for the block; restore its mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        if was_training:
            model.train()


@contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Seed torch's global generator for the block, then put the caller's state back.

    ``seed=None`` runs the block with the caller's generator, untouched. CUDA generators
    are forked too when a GPU is in use.
    """
    import torch

    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=_cuda_devices()):
        torch.manual_seed(seed)
        yield


def _cuda_devices() -> list[int]:
    import torch

    # fork_rng saves every visible GPU's state; only do that once CUDA is already running.
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return list(range(torch.cuda.device_count()))
    return []


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it, then rename it
    over ``path``. On any failure (Ctrl-C included) the temporary file is removed and the
    old ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def ngrams(tokens: Sequence[Hashable], n: int) -> Counter:
    """How often each run of ``n`` consecutive tokens occurs in ``tokens``."""
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def error_summary(exc: BaseException, limit: int = 120) -> str:
    """The first line of an exception's message (or its type's name), at most ``limit`` chars."""
    text = str(exc).strip()
    first = text.splitlines()[0].strip() if text else type(exc).__name__
    return first[:limit]
