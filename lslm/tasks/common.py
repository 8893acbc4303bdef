"""What the task modules share: reading TSV files, a word vocabulary, splitting examples,
a training loop."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch

from lslm.devices import model_device, to_device
from lslm.errors import LslmError
from lslm.files import MAX_TEXT_BYTES, read_text, split_lines
from lslm.loop import Callback, TrainConfig, TrainLoop

__all__ = ["LslmError", "WordVocab", "read_tsv", "split_examples", "fit"]

T = TypeVar("T")


def read_tsv(path: str | Path, columns: int = 2) -> list[tuple[str, ...]]:
    """Rows of a tab-separated file, each with exactly ``columns`` fields.

    A first row that reads like a header (e.g. ``text<TAB>label``) is skipped only if
    you remove it yourself; every row counts as data, so a header row would become an
    example. Blank lines are skipped.

    The file must be UTF-8 (a byte order mark at the start is dropped), a regular file of
    at most ``lslm.files.MAX_TEXT_BYTES``. Rows end at ``\\n`` or ``\\r\\n`` only: other
    line separators (U+2028, U+0085 ...) are text inside a field. Fields are split at
    every tab, with no quoting, and stripped of surrounding white space.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise LslmError(f"no file at {path}: give the path of a .tsv file")
    text = read_text(path, MAX_TEXT_BYTES, "TSV file")
    rows = []
    for line_no, line in enumerate(split_lines(text), start=1):
        row = line.split("\t")
        if all(not field.strip() for field in row):
            continue
        if len(row) != columns:
            raise LslmError(
                f"{path}, line {line_no}: expected {columns} tab-separated columns, found "
                f"{len(row)}: separate the fields with one tab each"
            )
        rows.append(tuple(field.strip() for field in row))
    if not rows:
        raise LslmError(f"{path} holds no rows: put one example per line, fields separated by tabs")
    return rows


class WordVocab:
    """Whole words <-> integer ids: the special tokens first, then every other word once.

    The one vocabulary of the task modules, with the method names of
    ``lslm.tokenizers.Tokenizer``: ``encode`` takes a sentence (split on white space) or a
    list of words split already, ``decode`` gives the words back, and ``vocab_size`` (also
    ``len``) counts the ids. A word not seen when the vocabulary was built becomes ``UNK``.

    ``<pad>`` fills short sentences up to the batch's length, ``<bos>`` starts a
    decoder's input, ``<eos>`` ends a sentence. A subclass may choose other special tokens
    (``None`` for one it does not use) and keep the words in the order given instead of
    sorting them.
    """

    PAD: str | None = "<pad>"
    BOS: str | None = "<bos>"
    EOS: str | None = "<eos>"
    UNK: str = "<unk>"
    SPECIALS: tuple[str, ...] = (PAD, BOS, EOS, UNK)  # ids 0, 1, 2, 3
    SORT = True  # sorted: the ids do not depend on the order the sentences came in

    def __init__(self, words: Iterable[str]):
        new = dict.fromkeys(w for w in words if w not in self.SPECIALS)  # ordered, no repeats
        self.itos = [*self.SPECIALS, *(sorted(new) if self.SORT else new)]
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = (
            None if token is None else self.stoi[token]
            for token in (self.PAD, self.BOS, self.EOS, self.UNK)
        )

    @classmethod
    def from_sentences(cls, sentences: Iterable[str]) -> "WordVocab":
        """The vocabulary of every word in ``sentences`` (split on white space)."""
        return cls(w for s in sentences for w in s.split())

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, words: str | Sequence[str]) -> list[int]:
        """Word ids, without special tokens added; unknown words become ``UNK``."""
        if isinstance(words, str):
            words = words.split()
        return [self.stoi.get(w, self.unk_id) for w in words]

    def decode(self, ids: Iterable[int]) -> str:
        """Words up to the first ``EOS``, skipping ``PAD`` and ``BOS``."""
        words = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i not in (self.pad_id, self.bos_id):
                words.append(self.itos[i])
        return " ".join(words)


def split_examples(
    examples: Sequence[T], val_frac: float = 0.1, test_frac: float = 0.1, seed: int = 0
) -> dict[str, list[T]]:
    """Shuffle with ``seed`` and cut into train/val/test; each split gets at least one example."""
    if len(examples) < 3:
        raise LslmError(f"need at least 3 examples to make train/val/test splits, got {len(examples)}")
    if not (0 < val_frac < 1 and 0 < test_frac < 1 and val_frac + test_frac < 1):
        raise LslmError(f"val_frac and test_frac must be in (0, 1) and sum below 1, got {val_frac}, {test_frac}")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(len(examples) * val_frac))
    n_test = max(1, round(len(examples) * test_frac))
    picked = [examples[i] for i in order]
    return {
        "train": picked[n_val + n_test :],
        "val": picked[:n_val],
        "test": picked[n_val : n_val + n_test],
    }


def fit(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor],
    sample_batch: Callable[[torch.Generator], Any],
    steps: int,
    lr: float = 1e-3,
    weight_decay: float = 0.01,
    warmup: int | None = None,
    grad_clip: float = 1.0,
    seed: int = 0,
    callbacks: list[Callback] | None = None,
    progress: bool = False,
    amp: bool = False,
) -> list[float]:
    """Train a task model with the library's one loop (``lslm.loop.TrainLoop``): AdamW,
    linear warmup then cosine decay to lr/10, gradient clipping.

    ``sample_batch(generator)`` draws a batch from a generator seeded with ``seed``;
    ``loss_fn(model, batch)`` returns the scalar loss. Returns the loss of every step; each
    callback is called as ``callback(loop, record)`` after every step, and ``progress=True``
    shows a progress bar; ``amp`` trains under bfloat16 autocast. The model is left in the
    mode it was in.
    """
    if steps < 1:
        raise LslmError(f"steps must be at least 1, got {steps}")
    warmup = max(1, steps // 10) if warmup is None else warmup
    cfg = TrainConfig(max_iters=steps, lr=lr, min_lr=lr / 10, warmup_iters=warmup,
                      weight_decay=weight_decay, beta1=0.9, beta2=0.99, grad_clip=grad_clip,
                      eval_interval=0, seed=seed, progress=progress, amp=amp)
    generator = torch.Generator().manual_seed(seed)
    device = model_device(model)  # batches are drawn on the CPU and follow the model
    # The per-tensor AdamW: its rounding differs slightly from the fused kernel's, and the
    # notebooks' stored task results (and the margins they assert) are measured with it.
    loop = TrainLoop(model, loss_fn, lambda: to_device(sample_batch(generator), device), cfg,
                     device=str(device), callbacks=callbacks, fused=False)
    loop.fit()
    return loop.history["train_loss"]
