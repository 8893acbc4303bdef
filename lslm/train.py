"""Training: forward pass, loss, backward pass, parameter update, repeated.

``Trainer`` wraps that loop with what a real run needs: AdamW with decoupled weight
decay, warmup + cosine learning rate, gradient clipping and accumulation, periodic
validation, a history for live plots, atomic checkpoints and exact resume.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import torch

from lslm.checkpoint import check_vocab, load_checkpoint, load_state, save_checkpoint
from lslm.data import get_batch
from lslm.errors import LslmError
from lslm.model import GPT, GPTConfig


@dataclass
class TrainConfig:
    """How to train. The defaults are the "baby" CPU configuration of the benchmark."""

    max_iters: int = 2000
    batch_size: int = 12
    grad_accum: int = 1  # micro-batches per update: a bigger batch without more memory
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    lr_decay_iters: int | None = None  # None: decay until max_iters
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # 0 turns clipping off
    eval_interval: int = 250  # 0 turns periodic evaluation off
    eval_iters: int = 20  # validation batches per evaluation
    checkpoint_interval: int = 0  # 0: checkpoint at each evaluation and at the end
    seed: int = 1337
    device: str = "auto"
    amp: bool = False  # bfloat16 autocast
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("max_iters", "batch_size", "grad_accum", "eval_iters"):
            if getattr(self, name) < 1 and not (name == "max_iters" and self.max_iters == 0):
                raise LslmError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.min_lr < 0:
            raise LslmError(f"lr must be > 0 and min_lr >= 0, got lr={self.lr}, min_lr={self.min_lr}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to ``lr``, then cosine decay down to ``min_lr``."""
    decay_iters = cfg.lr_decay_iters or cfg.max_iters
    if step < cfg.warmup_iters:
        return cfg.lr * (step + 1) / (cfg.warmup_iters + 1)
    if step >= decay_iters:
        return cfg.min_lr
    progress = (step - cfg.warmup_iters) / max(1, decay_iters - cfg.warmup_iters)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


def pick_device(device: str = "auto") -> str:
    """``auto`` picks cuda, then Apple's mps, then cpu."""
    if device != "auto":
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise LslmError(f"--device {device} was asked for but no CUDA GPU is visible: use --device cpu")
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: str) -> torch.optim.AdamW:
    """AdamW that decays matrices (weights, embeddings) but not norms and biases."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))


History = dict[str, list]


def new_history() -> History:
    """Columns for plotting. Train columns have one entry per step, eval columns per evaluation."""
    return {
        "step": [], "train_loss": [], "lr": [], "tokens_per_sec": [],
        "eval_step": [], "val_loss": [], "eval_train_loss": [],
    }


class Trainer:
    """Train a GPT on token tensors, with a history that callbacks can watch live.

    ``data`` maps "train" and "val" to 1-D tensors of token ids. Each callback is
    called as ``callback(trainer, record)`` after every step; ``record`` holds the
    step's numbers, plus ``val_loss`` when the step ended with an evaluation.
    """

    def __init__(
        self,
        model: GPT,
        tokenizer,
        data: dict[str, torch.Tensor],
        config: TrainConfig | None = None,
        out_dir: str | Path | None = None,
        callbacks: list[Callable] | None = None,
        meta: dict | None = None,
    ):
        self.config = config or TrainConfig()
        self.device = pick_device(self.config.device)
        self.model = model.to(self.device)
        self.tokenizer = tokenizer
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
        self.data = data
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.callbacks = list(callbacks or [])
        self.meta = dict(meta or {})  # e.g. the corpus name, so `lslm eval` can find it again
        self.optimizer = make_optimizer(self.model, self.config, self.device)
        self.history: History = new_history()
        self.step = 0
        self.interrupted = False
        torch.manual_seed(self.config.seed)  # dropout
        self.batch_gen = torch.Generator().manual_seed(self.config.seed)  # which blocks we train on

    # ----- the loop -------------------------------------------------------------------
    def autocast(self):
        if not self.config.amp:
            return nullcontext()
        return torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16)

    def batch(self, split: str, generator: torch.Generator | None = None):
        x, y = get_batch(
            self.data[split], self.config.batch_size, self.model.config.block_size,
            generator=generator or self.batch_gen,
        )
        return x.to(self.device), y.to(self.device)

    def train_step(self) -> float:
        """One parameter update: forward, backward (over grad_accum micro-batches), clip, step."""
        cfg = self.config
        lr = lr_at(self.step, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        total = 0.0
        for _ in range(cfg.grad_accum):
            x, y = self.batch("train")
            with self.autocast():
                _, loss = self.model(x, y)
            if not torch.isfinite(loss):
                self.optimizer.zero_grad(set_to_none=True)
                where = f"; the last good checkpoint is in {self.out_dir}" if self.out_dir else ""
                raise LslmError(
                    f"training stopped: the loss became {loss.item()} at step {self.step}. "
                    f"Lower the learning rate (now {lr:.2e}) or keep gradient clipping on{where}"
                )
            (loss / cfg.grad_accum).backward()
            total += loss.item() / cfg.grad_accum
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return total

    @torch.no_grad()
    def estimate_loss(self, split: str = "val") -> float:
        """Mean loss over ``eval_iters`` batches. The same batches every time, so curves compare."""
        gen = torch.Generator().manual_seed(self.config.seed + (1 if split == "val" else 2))
        self.model.eval()
        losses = []
        for _ in range(self.config.eval_iters):
            x, y = self.batch(split, gen)
            with self.autocast():
                losses.append(self.model(x, y)[1].item())
        self.model.train()
        return sum(losses) / len(losses)

    def evaluate_now(self, record: dict) -> None:
        record["val_loss"] = self.estimate_loss("val")
        record["eval_train_loss"] = self.estimate_loss("train")
        h = self.history
        h["eval_step"].append(self.step)
        h["val_loss"].append(record["val_loss"])
        h["eval_train_loss"].append(record["eval_train_loss"])

    def fit(self, max_iters: int | None = None) -> History:
        """Train until ``max_iters`` updates in total (including any resumed ones).

        Ctrl-C (or the notebook's stop button) ends training early but keeps the model,
        the history and, with ``out_dir``, a checkpoint; ``self.interrupted`` tells.
        """
        cfg = self.config
        if max_iters is not None:
            cfg.max_iters = max_iters
        tokens_per_step = cfg.batch_size * cfg.grad_accum * self.model.config.block_size
        bar = None
        if cfg.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.max_iters, initial=self.step, desc="training", unit="it")
        self.interrupted = False
        try:
            if self.step == 0 and cfg.eval_interval:
                record = {"step": 0}
                self.evaluate_now(record)
                self._notify(record)
            while self.step < cfg.max_iters:
                t0 = time.perf_counter()
                loss = self.train_step()
                dt = time.perf_counter() - t0
                record = {
                    "step": self.step, "train_loss": loss,
                    "lr": lr_at(self.step - 1, cfg), "tokens_per_sec": tokens_per_step / dt,
                }
                for key in ("step", "train_loss", "lr", "tokens_per_sec"):
                    self.history[key].append(record[key])
                last = self.step == cfg.max_iters
                if cfg.eval_interval and (self.step % cfg.eval_interval == 0 or last):
                    self.evaluate_now(record)
                    if bar is not None:
                        bar.set_postfix(loss=f"{loss:.3f}", val=f"{record['val_loss']:.3f}")
                every = cfg.checkpoint_interval or cfg.eval_interval
                if self.out_dir is not None and every and self.step % every == 0 and not last:
                    self.save()
                if bar is not None:
                    bar.update(1)
                self._notify(record)
        except KeyboardInterrupt:
            self.interrupted = True
            self.optimizer.zero_grad(set_to_none=True)
            where = f"; checkpoint saved in {self.out_dir}" if self.out_dir else ""
            print(f"Interrupted at step {self.step}: the model and history are kept{where}.")
        finally:
            if bar is not None:
                bar.close()
        if self.out_dir is not None:
            self.save()
        return self.history

    def _notify(self, record: dict) -> None:
        for callback in self.callbacks:
            callback(self, record)

    # ----- checkpoints ----------------------------------------------------------------
    def save(self, path: str | Path | None = None) -> Path:
        """Write an atomic checkpoint of everything needed to resume exactly."""
        target = Path(path) if path is not None else self.out_dir
        if target is None:
            raise LslmError("no checkpoint folder: pass out_dir to Trainer or a path to save()")
        return save_checkpoint(
            target,
            model={k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            optimizer=self.optimizer.state_dict(),
            rng={"torch": torch.get_rng_state(), "batch": self.batch_gen.get_state()},
            model_config=self.model.config.to_dict(),
            train_config=self.config.to_dict(),
            tokenizer=self.tokenizer.state(),
            history=self.history,
            step=self.step,
            meta=self.meta,
        )

    @classmethod
    def resume(
        cls,
        path: str | Path,
        data: dict[str, torch.Tensor],
        out_dir: str | Path | None = None,
        callbacks: list[Callable] | None = None,
        **overrides,
    ) -> "Trainer":
        """Rebuild a Trainer from a checkpoint so that ``fit`` continues the same curve.

        ``overrides`` may change TrainConfig fields such as ``max_iters`` or ``progress``.
        """
        from lslm.tokenizers import tokenizer_from_state

        ckpt = load_checkpoint(path)
        model = GPT(GPTConfig.from_dict(ckpt["model_config"]))
        load_state(model, ckpt["model"], path)
        tokenizer = tokenizer_from_state(ckpt["tokenizer"])
        config = TrainConfig.from_dict({**ckpt["train_config"], **overrides})
        trainer = cls(model, tokenizer, data, config, out_dir if out_dir is not None else path,
                      callbacks, meta=ckpt.get("meta"))
        trainer.optimizer.load_state_dict(ckpt["optimizer"])
        trainer.history = ckpt["history"]
        trainer.step = int(ckpt["step"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        trainer.batch_gen.set_state(ckpt["rng"]["batch"])
        return trainer
