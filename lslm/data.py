"""Corpora, train/val/test splits and random training batches.

Three built-in corpora:

* ``"python-docs"`` (the default): the documentation CPython ships for ``help()``
  (``pydoc_data``), about 460,000 characters of English. No download, no install.
* ``"tinyshakespeare"``: the 1.1 MB corpus from char-rnn, downloaded once into
  ``cache_dir()`` and checked against its sha256.
* ``"world"``: 10,000 stories of the story world (``lslm.world``), about 6 MB, written
  on the spot from a fixed seed (a few seconds), the same on every machine.

Anything else is read as a UTF-8 text file or a folder of ``.txt`` files: regular files only
(a FIFO or a device such as ``/dev/zero`` would block or never end) and at most
``MAX_CORPUS_BYTES`` in all, so a corpus never exhausts memory before training starts.
"""

from __future__ import annotations

import codecs
import functools
import hashlib
import http.client
import math
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

import torch

from .errors import LslmError
from .files import read_bytes
from .utils import atomic_write, error_summary

if TYPE_CHECKING:
    from .tokenizers import Tokenizer

EMBEDDED = "python-docs"
TINYSHAKESPEARE = "tinyshakespeare"
WORLD = "world"
WORLD_STORIES = 10_000  # the built-in "world" corpus: stories from seed WORLD_SEED
WORLD_SEED = 0
BUILT_IN_CORPORA = (EMBEDDED, TINYSHAKESPEARE, WORLD)
TINYSHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
TINYSHAKESPEARE_SIZE = 1_115_394
DOWNLOAD_TIMEOUT_S = 15
# A char-level corpus becomes one int64 per character, and a Python list of them on the way:
# 200 MiB of text already needs several GB of memory to tokenize.
MAX_CORPUS_BYTES = 200 * 2**20

_ENV_HINT = "set LSLM_TINYSHAKESPEARE=/path/to/tinyshakespeare.txt"
# reStructuredText heading underlines: a line made only of *, = or -.
_UNDERLINE = re.compile(r"([*=-])\1{2,}")


@functools.lru_cache(maxsize=1)
def python_docs_text() -> str:
    """The embedded English corpus: CPython's pydoc topics, cleaned, in a fixed order."""
    try:
        from pydoc_data.topics import topics
    except ImportError:
        raise LslmError(
            "this Python was installed without pydoc_data: "
            "use the tinyshakespeare corpus or a text file of your own"
        ) from None
    parts = []
    for key in sorted(topics):  # sorted: the same text on every run
        lines = [line.rstrip() for line in topics[key].splitlines()]
        body = "\n".join(line for line in lines if not _UNDERLINE.fullmatch(line))
        parts.append(re.sub(r"\n{3,}", "\n\n", body).strip("\n"))
    return "\n\n".join(parts)


@functools.lru_cache(maxsize=2)
def world_text(stories: int = WORLD_STORIES, seed: int = WORLD_SEED) -> str:
    """``stories`` stories of the story world as one corpus (``lslm.world.corpus_text``):
    one story per line, a blank line between stories. Deterministic: no download, no cache file."""
    from lslm.world import corpus_text

    return corpus_text(stories, seed)


def cache_dir() -> Path:
    """Where downloads go: ``$LSLM_CACHE``, else ``~/.cache/lslm``."""
    env = os.environ.get("LSLM_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lslm"


@contextmanager
def build_lock(folder: Path) -> Iterator[None]:
    """Hold ``<folder>.lock`` while this process builds what ``folder`` will hold.

    Two notebooks running at once (two kernels in JupyterLab) may both ask for a shared
    model that is not cached yet: the second waits here, then finds the first one's file and
    loads it instead of training it again on the same cores. Where no lock file can be made
    (a read-only cache), it goes on without one.
    """
    from filelock import FileLock

    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(folder.parent / f"{folder.name}.lock"))
        lock.acquire()
    except OSError:
        lock = None
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _checked_copy(path: Path, origin: str) -> Path:
    """``path`` if it is an unmodified tinyshakespeare, else an LslmError naming ``origin``."""
    if not path.is_file():
        raise LslmError(
            f"{path} ({origin}) is not a file: give the path to a copy of {TINYSHAKESPEARE_URL}"
        )
    size = path.stat().st_size
    if size == TINYSHAKESPEARE_SIZE:  # only then worth hashing: a huge file would take long
        got = _sha256(path)
        if got == TINYSHAKESPEARE_SHA256:
            return path
        found = f"its sha256 is {got}"
    else:
        found = f"it has {size:,} bytes"
    raise LslmError(
        f"{path} ({origin}) is not tinyshakespeare: {found}, expected sha256 "
        f"{TINYSHAKESPEARE_SHA256} ({TINYSHAKESPEARE_SIZE:,} bytes): "
        f"use an unmodified copy of {TINYSHAKESPEARE_URL}"
    )


def tinyshakespeare_path(path: str | Path | None = None, *, download: bool = True) -> Path:
    """A checked local copy of tinyshakespeare, downloading it into ``cache_dir()`` if needed.

    Looks at, in order: ``path``; ``$LSLM_TINYSHAKESPEARE``; the cached copy; a download
    from ``$LSLM_TINYSHAKESPEARE_URL`` (default ``TINYSHAKESPEARE_URL``).
    """
    if path is not None:
        return _checked_copy(Path(path).expanduser(), "the path given")
    if env := os.environ.get("LSLM_TINYSHAKESPEARE"):
        return _checked_copy(Path(env).expanduser(), "set in LSLM_TINYSHAKESPEARE")

    url = os.environ.get("LSLM_TINYSHAKESPEARE_URL") or TINYSHAKESPEARE_URL
    cached = cache_dir() / "tinyshakespeare.txt"
    if cached.is_file():
        if cached.stat().st_size == TINYSHAKESPEARE_SIZE and _sha256(cached) == TINYSHAKESPEARE_SHA256:
            return cached
        cached.unlink()  # damaged: fetch a fresh copy
    not_here = "tinyshakespeare is not on this machine and could not be downloaded"
    where = f"save input.txt from {url} as {cached}, or {_ENV_HINT}"
    if not download:
        raise LslmError(f"{not_here} (downloads are turned off): {where}")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LslmError(
            f"cannot create the cache folder {cached.parent} ({error_summary(e)}): "
            f"set LSLM_CACHE to a folder you can write, or {_ENV_HINT}"
        ) from None
    _download(url, cached, not_here, where)
    return cached


def _download(url: str, dest: Path, not_here: str, where: str) -> None:
    """Fetch ``url`` into ``dest`` through ``atomic_write``: the file appears only once it is
    complete and its sha256 matches, so the cache never holds a partial or wrong file."""

    def stream(out: IO[bytes]) -> None:
        digest = hashlib.sha256()
        size = 0
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            # Stop early on something far too big: it cannot be the right file.
            while size <= 2 * TINYSHAKESPEARE_SIZE and (chunk := response.read(1 << 16)):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
        if digest.hexdigest() != TINYSHAKESPEARE_SHA256:  # raising here discards the file
            raise LslmError(
                f"the file downloaded from {url} is not tinyshakespeare "
                f"(sha256 {digest.hexdigest()}, expected {TINYSHAKESPEARE_SHA256}): {where}"
            )

    try:
        atomic_write(dest, stream)
    except LslmError:
        raise
    except urllib.error.HTTPError as e:
        raise LslmError(f"{not_here} (HTTP {e.code} {error_summary(e.reason)}): {where}") from None
    except urllib.error.URLError as e:
        raise LslmError(f"{not_here} ({error_summary(e.reason)}): {where}") from None
    except (OSError, ValueError, http.client.HTTPException) as e:  # timeouts, resets, bad URLs
        raise LslmError(f"{not_here} ({error_summary(e)}): {where}") from None


def _missing(path: Path) -> LslmError:
    return LslmError(
        f"no such file or folder: {path}: check the path, "
        f"or use a built-in corpus ({EMBEDDED!r}, {TINYSHAKESPEARE!r} or {WORLD!r})"
    )


def _decode(path: Path, raw: bytes) -> str:
    if b"\0" in raw:  # checked before decoding: UTF-8 text never contains NUL bytes
        raise LslmError(
            f"{path} looks binary (it contains NUL bytes; UTF-16 does too): give a UTF-8 text file"
        )
    bom = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    try:
        text = raw[bom:].decode("utf-8")
    except UnicodeDecodeError as e:
        # The offset only: the file may be private, so none of its bytes go into the message.
        raise LslmError(
            f"{path} is not valid UTF-8 (at byte offset {bom + e.start}): re-save it as UTF-8 text"
        ) from None
    if not text.strip():
        raise LslmError(f"{path} is empty (or only whitespace): give a file with some text in it")
    return text.replace("\r\n", "\n")


def _cannot_read(path: Path, e: OSError) -> LslmError:
    return LslmError(f"cannot read {path} ({error_summary(e.strerror or e)}): check its permissions")


def read_text(path: str | Path) -> str:
    """A UTF-8 text file, or every ``.txt`` file in a folder (by name, joined by a blank line).

    Only regular files are read (a FIFO or a device is refused before it is opened for
    reading), at most ``MAX_CORPUS_BYTES`` in all.
    """
    if str(path) == "":  # Path("") is the current folder: never read that by accident
        raise LslmError("the corpus path is empty: give a .txt file, a folder of them, or a built-in name")
    path = Path(path).expanduser()
    try:
        if not path.exists():
            raise _missing(path)
        if not path.is_dir():
            return _decode(path, read_bytes(path, MAX_CORPUS_BYTES, "corpus"))
        # Every entry but folders: a FIFO or a device named *.txt is refused, not skipped.
        files = sorted(p for p in path.glob("*.txt") if not p.is_dir())
        total = sum(p.stat().st_size for p in files)
    except OSError as e:  # a folder on the way that we may not enter, ...
        raise _cannot_read(path, e) from None
    if not files:
        raise LslmError(
            f"the folder {path} has no .txt files: put your text in .txt files there, "
            "or give one file"
        )
    if total > MAX_CORPUS_BYTES:
        raise LslmError(
            f"the .txt files in {path} hold {total / 2**20:.1f} MiB, above lslm's corpus limit "
            f"of {MAX_CORPUS_BYTES // 2**20} MiB: train on a part of them"
        )
    texts, left = [], MAX_CORPUS_BYTES
    for p in files:
        raw = read_bytes(p, left, "corpus")  # bounded by what is left, in case a file grew
        left -= len(raw)
        texts.append(_decode(p, raw))
    return "\n\n".join(texts)


def load_corpus(source: str | Path | None = None) -> str:
    """The text of a built-in corpus ("python-docs", "tinyshakespeare", "world") or of a file
    or folder."""
    if source is None or (isinstance(source, str) and source == EMBEDDED):
        return python_docs_text()
    if isinstance(source, str) and source == TINYSHAKESPEARE:
        return read_text(tinyshakespeare_path())
    if isinstance(source, str) and source == WORLD:
        return world_text(WORLD_STORIES, WORLD_SEED)
    return read_text(source)


@dataclass(frozen=True)
class Splits:
    """A text cut into three contiguous parts: train, then val, then test."""

    train: str
    val: str
    test: str


def split_text(text: str, val_frac: float = 0.05, test_frac: float = 0.05) -> Splits:
    """Cut ``text`` into train (the start), val (the next part) and test (the end).

    ``val_frac`` and ``test_frac`` are the fractions of characters in val and test.

    Contiguous rather than shuffled: val and test then hold text the model never saw,
    not sentences overlapping with training ones.
    """
    for name, frac in (("val_frac", val_frac), ("test_frac", test_frac)):
        if not (isinstance(frac, (int, float)) and math.isfinite(frac) and frac >= 0):
            raise LslmError(f"{name} must be a number >= 0, not {frac!r}")
    if val_frac + test_frac >= 1:
        raise LslmError(
            f"val_frac + test_frac is {val_frac + test_frac:g}, which leaves no training text: "
            "keep it below 1"
        )
    n_val, n_test = int(len(text) * val_frac), int(len(text) * test_frac)
    n_train = len(text) - n_val - n_test
    val_end = n_train + n_val
    return Splits(train=text[:n_train], val=text[n_train:val_end], test=text[val_end:])


def get_batch(
    data: torch.Tensor,
    batch_size: int,
    block_size: int,
    generator: torch.Generator | None = None,
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size`` random blocks of ``block_size`` tokens (x), and each one token later (y).

    x[b, t] is followed by y[b, t] in the text: the target for every position at once.
    """
    if data.dim() != 1:
        raise LslmError(
            f"get_batch needs a 1-D tensor of token ids, not one of shape {tuple(data.shape)}"
        )
    if batch_size < 1 or block_size < 1:
        raise LslmError(
            f"batch_size and block_size must be at least 1 (got {batch_size} and {block_size})"
        )
    n = len(data)
    if n < block_size + 1:
        raise LslmError(
            f"the text has {n} tokens but block_size is {block_size}: "
            "use a longer corpus or a smaller --block-size"
        )
    # Each block needs block_size + 1 tokens (its targets reach one further).
    starts = torch.randint(n - block_size, (batch_size,), generator=generator)
    x, y = blocks_at(data, starts, block_size)
    return x.to(device), y.to(device)


def blocks_at(
    data: torch.Tensor, starts: torch.Tensor, block_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The blocks of ``block_size`` tokens that begin at ``starts`` (x), and each one token later (y)."""
    index = starts[:, None] + torch.arange(block_size)  # (len(starts), block_size)
    return data[index], data[index + 1]


def encode_splits(splits: Splits, tokenizer: Tokenizer) -> dict[str, torch.Tensor]:
    """Each split as a 1-D long tensor of token ids: {"train": ..., "val": ..., "test": ...}."""
    return {
        name: torch.tensor(tokenizer.encode(getattr(splits, name)), dtype=torch.long)
        for name in ("train", "val", "test")
    }
