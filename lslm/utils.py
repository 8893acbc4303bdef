"""Small helpers that the rest of lslm shares, each written once.

* ``evaluating(model)``: eval mode inside a ``with`` block, the previous mode restored after,
  even when the block raises.
* ``seeded(seed)``: run a block with torch's global generator seeded, and leave the caller's
  generator exactly as it was (building a model draws its initial weights from it).
* ``atomic_write(path, write)``: write a file next to its final place, flush it to disk, then
  rename it over the old one, so a crash never leaves a half-written file.
* ``ngrams(tokens, n)``: count the n-grams of a sequence.
* ``error_summary(exc)``: an exception as one short line, for a one-line ``LslmError``.
* ``require(package, extra, purpose)``: a one-line ``LslmError`` naming the extra to install
  when an optional package is missing.
* ``DictConfig``: ``to_dict``/``from_dict`` for the config dataclasses that checkpoints store.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, fields
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

from lslm.errors import LslmError

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


def error_summary(exc: BaseException | object, limit: int = 120) -> str:
    """The first line of an exception's message, its runs of spaces collapsed, at most
    ``limit`` characters.

    An exception without a message gives its type's name (``TimeoutError``). Anything else
    that describes an error (``URLError.reason`` may be a plain string) is summarised the
    same way, or as ``unknown error`` when it is empty.
    """
    text = str(exc).strip()
    if not text:
        return type(exc).__name__ if isinstance(exc, BaseException) else "unknown error"
    return " ".join(text.splitlines()[0].split())[:limit]


def require(package: str, extra: str, purpose: str) -> None:
    """Check that an optional ``package`` is installed before ``purpose`` starts using it.

    Raises ``LslmError`` that says which extra of lslm installs it. Only looks the package
    up (cheap); importing it is left to the code that uses it.
    """
    try:
        found = importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):  # a broken install, or a module without a spec
        found = False
    if not found:
        raise LslmError(
            f"{purpose} needs the {package} package, which lslm's core install leaves out: "
            f"pip install 'lslm[{extra}]'"
        )


ConfigT = TypeVar("ConfigT", bound="DictConfig")


class DictConfig:
    """Mixed into a config dataclass: a plain dict out, and back in.

    ``from_dict`` ignores keys the dataclass does not have, so a checkpoint written by
    another version of lslm still loads its known fields.
    """

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[ConfigT], d: dict[str, Any]) -> ConfigT:
        if not isinstance(d, dict):
            raise LslmError(f"a {cls.__name__} is stored as a dict of its fields, got a {type(d).__name__}")
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in d.items() if k in known})
