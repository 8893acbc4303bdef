"""Pretraining a GPT language model: ``Trainer``.

``Trainer`` is the library's one training loop (``lslm.loop.TrainLoop``: AdamW with
decoupled weight decay, warmup + cosine learning rate, gradient clipping and accumulation,
callbacks, Ctrl-C) fed with blocks of token ids. It adds what a real pretraining run needs:
periodic validation, a history for live plots, atomic checkpoints and exact resume
(``lslm.checkpoint``), and two tools of real training runs:

* TensorBoard: ``Trainer(..., tensorboard="runs/tb")`` adds a ``TensorBoardLogger`` callback
  that writes what ``tensorboard --logdir runs/tb`` shows.
* Data parallelism: launched by ``torchrun`` (``torchrun --nproc_per_node=2 -m lslm train
  ...``), every process takes its slice of the same global batch, DistributedDataParallel
  averages the gradients, and only rank 0 writes checkpoints, logs and the progress bar.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import nullcontext
from pathlib import Path

import torch

from lslm import distributed
from lslm.checkpoint import check_vocab, checkpoint_file, resume_trainer, save_trainer
from lslm.data import get_batch
from lslm.devices import check_cpp_compiler, compile_options, cpp_compiler, pick_device  # noqa: F401
from lslm.distributed import TORCHRUN_VARS, distributed_env, launched_by_torchrun  # noqa: F401
from lslm.errors import LslmError
from lslm.loop import Callback, TrainConfig, TrainLoop, lr_at, make_optimizer, stop_signals  # noqa: F401
from lslm.model import GPT
from lslm.tensorboard import TensorBoardLogger
from lslm.utils import error_summary, evaluating

# Also importable from here: the names a training script reaches for next to Trainer.
__all__ = [
    "Trainer", "TrainConfig", "TrainLoop", "History", "new_history", "lm_loss", "lr_at", "make_optimizer",
    "pick_device", "cpp_compiler", "compile_options", "distributed_env", "launched_by_torchrun", "TORCHRUN_VARS",
]

History = dict[str, list]


def new_history() -> History:
    """Columns for plotting. Train columns have one entry per step, eval columns per evaluation."""
    return {
        "step": [], "train_loss": [], "lr": [], "tokens_per_sec": [],
        "eval_step": [], "val_loss": [], "eval_train_loss": [],
    }


def lm_loss(net: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """The language-model loss: cross-entropy of every next token."""
    return net(*batch)[1]


class Trainer(TrainLoop):
    """Train a GPT on token tensors, with a history that callbacks can watch live.

    ``data`` maps "train" and "val" to 1-D tensors of token ids. Each callback is called as
    ``callback(trainer, record)`` after every step; ``record`` holds the step's numbers, plus
    ``val_loss`` when the step ended with an evaluation.
    """

    def __init__(
        self,
        model: GPT,
        tokenizer,
        data: dict[str, torch.Tensor],
        config: TrainConfig | None = None,
        out_dir: str | Path | None = None,
        callbacks: list[Callback] | None = None,
        meta: dict | None = None,
        tensorboard: str | Path | None = None,
        tensorboard_attention: bool = True,
    ):
        config = config or TrainConfig()
        self.rank, self.world_size, local_rank = distributed_env()
        self.distributed = launched_by_torchrun()  # even with one process: same code path
        device = pick_device(config.device)
        if self.distributed:
            if config.batch_size % self.world_size:
                raise LslmError(
                    f"batch_size {config.batch_size} does not split evenly over "
                    f"{self.world_size} processes: pick a multiple of {self.world_size}"
                )
            device = distributed.init_distributed(device, local_rank)
        check_vocab(model.config.vocab_size, tokenizer.vocab_size, "the model")
        for split in ("train", "val"):
            if split not in data:
                raise LslmError(f"data needs a {split!r} tensor of token ids")
            n, b = len(data[split]), model.config.block_size
            if n < b + 1:
                raise LslmError(
                    f"the {split} split has {n} tokens but block_size is {b}: "
                    "use a longer corpus or a smaller --block-size"
                )
        model = model.to(device)
        # The module that trains: DDP wraps the model so backward() averages gradients
        # across processes, and the compiled module shares its parameters; self.model stays
        # the plain GPT (saved, evaluated, returned).
        net: torch.nn.Module = distributed.wrap(model, device) if self.distributed else model
        if config.compile:
            if device == "cpu":
                check_cpp_compiler()
            net = torch.compile(net, options=compile_options(device))
        self.data = data
        self.batch_gen = torch.Generator().manual_seed(config.seed)  # which blocks we train on
        self.tensorboard_log = None
        if tensorboard is not None and self.rank == 0:
            self.tensorboard_log = TensorBoardLogger(tensorboard, attention=tensorboard_attention)
        logs = [self.tensorboard_log] if self.tensorboard_log is not None else []
        super().__init__(model, lm_loss, lambda: self.batch("train"), config, device=device,
                         net=net, callbacks=logs + list(callbacks or []))
        self.tokenizer = tokenizer
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.meta = dict(meta or {})  # e.g. the corpus name, so `lslm eval` can find it again
        self.history: History = new_history()
        # True while out_dir still holds another run's checkpoint that this run replaces
        # (`lslm train --overwrite`): a run interrupted before its first save keeps that one.
        self.overwrite_pending = False

    @property
    def is_main(self) -> bool:
        """True in the process that writes checkpoints, logs and the progress bar (rank 0)."""
        return self.rank == 0

    # ----- batches and evaluation -------------------------------------------------------
    def batch(self, split: str, generator: torch.Generator | None = None):
        """A batch of ``batch_size`` blocks; with several processes, this process's slice of it.

        Every process draws the same global batch from the same seeded generator, then keeps
        its own rows, so the processes together see exactly what one process would.
        """
        x, y = get_batch(
            self.data[split], self.config.batch_size, self.model.config.block_size,
            generator=generator or self.batch_gen,
        )
        if self.world_size > 1:
            rows = slice(self.rank * len(x) // self.world_size, (self.rank + 1) * len(x) // self.world_size)
            x, y = x[rows], y[rows]
        return x.to(self.device), y.to(self.device)

    def reduce(self, value: float) -> float:
        return distributed.mean(value, self.world_size, self.device) if self.distributed else value

    def no_sync(self, last_micro_batch: bool):
        # With DDP, gradients are averaged across processes once, at the last micro-batch.
        return self.net.no_sync() if self.distributed and not last_micro_batch else nullcontext()

    def estimate_loss(self, split: str = "val") -> float:
        """Mean loss over ``eval_iters`` batches. The same batches every time, so curves compare."""
        gen = torch.Generator().manual_seed(self.config.seed + (1 if split == "val" else 2))
        return self.mean_loss(self.batch(split, gen) for _ in range(self.config.eval_iters))

    @torch.no_grad()
    def mean_loss(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
        """The model's mean loss over ``(x, y)`` batches, in eval mode (and across processes)."""
        with evaluating(self.model):
            losses = []
            for x, y in batches:
                with self.autocast():
                    losses.append(self.model(x.to(self.device), y.to(self.device))[1].item())  # any batch's device
        return self.reduce(sum(losses) / len(losses))

    def evaluate(self) -> dict:
        return {"val_loss": self.estimate_loss("val"), "eval_train_loss": self.estimate_loss("train")}

    def _step_record(self, loss: float, seconds: float) -> dict:
        tokens = self.config.batch_size * self.config.grad_accum * self.model.config.block_size
        return {**super()._step_record(loss, seconds), "tokens_per_sec": tokens / seconds}

    # ----- the loop, with checkpoints -------------------------------------------------
    def after_step(self, record: dict) -> None:
        every = self.config.checkpoint_interval or self.config.eval_interval
        last = self.step == self.config.max_iters
        if self.out_dir is not None and every and self.step % every == 0 and not last:
            self.save()

    def divergence_hint(self) -> str:
        if self.out_dir is None or not checkpoint_file(self.out_dir).exists():
            return ""  # nothing saved yet: there is no good checkpoint to point to
        if self.overwrite_pending:
            return f"; {self.out_dir} still holds the previous run, untouched"
        return f"; the last good checkpoint is in {self.out_dir}"

    def fit(self, max_iters: int | None = None) -> History:
        """Train until ``max_iters`` updates in total (including any resumed ones).

        Ctrl-C (or the notebook's stop button, SIGTERM, SIGHUP) ends training early but
        keeps the model, the history and, with ``out_dir``, a checkpoint; ``self.interrupted``
        tells. With ``overwrite_pending``, a run interrupted before its first checkpoint
        leaves the previous run's checkpoint in ``out_dir`` as it was.
        """
        if self.tensorboard_log is not None:
            self.tensorboard_log.open(self)  # before the first step, so a resume purges from there
        try:
            super().fit(max_iters)
        finally:
            if self.tensorboard_log is not None:
                self.tensorboard_log.flush()
        if self.out_dir is None or not self.is_main:
            return self.history
        if self.interrupted and self.overwrite_pending:
            print(f"Nothing of this run was saved: {self.out_dir} still holds the previous run.")
            return self.history
        # A stop signal now waits for the save to finish (a second one still stops at once).
        with stop_signals(lambda signum: setattr(self, "stop_signal", signum)):
            self.save()
        if self.interrupted:
            print(f"Checkpoint saved in {self.out_dir} at step {self.step}.")
        return self.history

    def writer(self):
        """The TensorBoard ``SummaryWriter`` (rank 0 with ``tensorboard`` set), else None."""
        return self.tensorboard_log.open(self) if self.tensorboard_log is not None else None

    def close(self, wait: bool = True) -> None:
        """Close the TensorBoard log and leave the torchrun job's process group, if any.

        ``wait=False`` skips the final barrier: after an error only some processes may
        reach it, and waiting for the others would hang.
        """
        if self.tensorboard_log is not None:
            self.tensorboard_log.close()
        if self.distributed:
            distributed.leave(wait)

    # ----- checkpoints ----------------------------------------------------------------
    def save(self, path: str | Path | None = None) -> Path:
        """Write an atomic checkpoint of everything needed to resume exactly (rank 0 only).

        A failed write (a full disk ...) is a one-line ``LslmError``; the file it would
        have replaced is left as it was.
        """
        try:
            saved = save_trainer(self, path)
        except (OSError, RuntimeError) as e:  # torch reports some failed writes as RuntimeError
            target = checkpoint_file(path if path is not None else self.out_dir)
            before = ("the checkpoint already there is intact" if target.exists()
                      else "there was no earlier checkpoint")
            raise LslmError(
                f"could not save a checkpoint to {target} ({error_summary(e)}): nothing was "
                f"saved and {before}; free some disk space or pick another --out"
            ) from None
        if path is None:
            self.overwrite_pending = False
        return saved

    @classmethod
    def resume(cls, path: str | Path, data: dict[str, torch.Tensor], out_dir: str | Path | None = None,
               callbacks: list[Callback] | None = None, tensorboard: str | Path | None = None,
               checkpoint: dict | None = None, **overrides) -> "Trainer":
        """Rebuild a Trainer from a checkpoint so that ``fit`` continues the same curve.

        ``overrides`` may change TrainConfig fields such as ``max_iters`` or ``progress``;
        ``checkpoint`` is the already loaded checkpoint, which saves reading the file twice.
        """
        return resume_trainer(cls, path, data, out_dir=out_dir, checkpoint=checkpoint,
                              callbacks=callbacks, tensorboard=tensorboard, **overrides)
