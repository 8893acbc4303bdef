"""What the task modules share: reading TSV files, splitting examples, a training loop."""

from __future__ import annotations

import csv
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch

from lslm.errors import LslmError

__all__ = ["LslmError", "read_tsv", "split_examples", "fit"]

T = TypeVar("T")


def read_tsv(path: str | Path, columns: int = 2) -> list[tuple[str, ...]]:
    """Rows of a tab-separated file, each with exactly ``columns`` fields.

    A first row that reads like a header (e.g. ``text<TAB>label``) is skipped only if
    you remove it yourself; every row counts as data, so a header row would become an
    example. Blank lines are skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise LslmError(f"no file at {path}: give the path of a .tsv file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise LslmError(f"{path} is not UTF-8 text (byte {e.start}): save it as UTF-8") from None
    rows = []
    reader = csv.reader(text.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE)
    for line_no, row in enumerate(reader, start=1):
        if not row or all(not field.strip() for field in row):
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
    callback: Callable[[int, float], None] | None = None,
    progress: bool = False,
) -> list[float]:
    """Train a task model: AdamW, linear warmup then cosine decay to lr/10 (the
    Trainer's ``lr_at`` schedule), gradient clipping.

    ``sample_batch(generator)`` draws a batch; ``loss_fn(model, batch)`` returns the
    scalar loss. Returns the loss of every step; ``callback(step, loss)`` sees them live,
    and ``progress=True`` shows a progress bar.
    """
    from lslm.train import TrainConfig, lr_at, make_optimizer

    if steps < 1:
        raise LslmError(f"steps must be at least 1, got {steps}")
    warmup = max(1, steps // 10) if warmup is None else warmup
    cfg = TrainConfig(max_iters=steps, lr=lr, min_lr=lr / 10, warmup_iters=warmup,
                      weight_decay=weight_decay, beta1=0.9, beta2=0.99)
    # The per-tensor loop, not the fused kernel: the stored notebook results were made with it.
    optimizer = make_optimizer(model, cfg, "cpu", fused=False)
    params = [p for p in model.parameters() if p.requires_grad]
    generator = torch.Generator().manual_seed(seed)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc="training", unit="step")
    losses = []
    model.train()
    try:
        for step in range(steps):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, cfg)
            loss = loss_fn(model, sample_batch(generator))
            if not torch.isfinite(loss):
                raise LslmError(f"the loss became {loss.item()} at step {step}: lower lr (now {lr})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            optimizer.step()
            losses.append(loss.item())
            if bar is not None:
                bar.update(1)
                if step % 20 == 0 or step == steps - 1:
                    bar.set_postfix(loss=f"{losses[-1]:.3f}")
            if callback is not None:
                callback(step, losses[-1])
    finally:
        if bar is not None:
            bar.close()
    model.eval()
    return losses
