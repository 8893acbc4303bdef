"""TensorBoard logging as a training callback.

``Trainer(..., tensorboard="runs/tb")`` adds a ``TensorBoardLogger``: it writes the losses,
learning rate, throughput and attention maps that ``tensorboard --logdir runs/tb`` shows.
TensorBoard's writer is imported only when a log is asked for (the import is slow).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lslm.data import get_batch
from lslm.utils import evaluating, require


class TensorBoardLogger:
    """Write each step's numbers, and an attention picture per evaluation, to ``log_dir``."""

    def __init__(self, log_dir: str | Path, attention: bool = True):
        # tensorboard is an extra: say so now, not at the first log step of a long run.
        require("tensorboard", "tensorboard", "TensorBoard logging")
        self.log_dir = Path(log_dir)
        self.attention = attention
        self.writer: Any = None

    def open(self, trainer: Any) -> Any:
        """The ``SummaryWriter``, made on first use. After a resume it hides the events that a
        crashed run logged after its last checkpoint (``purge_step``), since those steps are redone."""
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            purge = trainer.step + 1 if trainer.step else None
            self.writer = SummaryWriter(str(self.log_dir), purge_step=purge)
        return self.writer

    def __call__(self, trainer: Any, record: dict) -> None:
        writer = self.open(trainer)
        step = record["step"]
        if "train_loss" in record:
            writer.add_scalar("train/loss", record["train_loss"], step)
            writer.add_scalar("lr", record["lr"], step)
            if "tokens_per_sec" in record:
                writer.add_scalar("tokens_per_sec", record["tokens_per_sec"], step)
        if "val_loss" in record:
            writer.add_scalar("val/loss", record["val_loss"], step)
            if "eval_train_loss" in record:
                writer.add_scalar("train/eval_loss", record["eval_train_loss"], step)
            if self.attention:
                self.log_attention(trainer, step)

    @torch.no_grad()
    def log_attention(self, trainer: Any, step: int) -> None:
        """One grey image per layer, its heads side by side: the attention of a fixed
        validation block. Row = query, column = key; each row is scaled so that the key
        it attends to most is white (raw weights of long rows would be too faint to see)."""
        model = trainer.model
        x, _ = get_batch(trainer.data["val"], 1, model.config.block_size,
                         generator=torch.Generator().manual_seed(trainer.config.seed))
        with evaluating(model):
            _, attention = model.features(x.to(trainer.device), return_attention=True)
        scale = max(1, 128 // x.size(1))  # blow small maps up so they are visible
        for layer, weights in enumerate(attention):
            img = weights[0, :, None].float().cpu()  # (heads, 1, T, T), values in [0, 1]
            img = img / img.amax(dim=-1, keepdim=True).clamp_min(1e-9)
            img = img.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
            self.writer.add_images(f"attention/layer_{layer}", img, step, dataformats="NCHW")

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
