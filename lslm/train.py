"""Training: forward pass, loss, backward pass, parameter update, repeated.

``Trainer`` wraps that loop with what a real run needs: AdamW with decoupled weight
decay, warmup + cosine learning rate, gradient clipping and accumulation, periodic
validation, a history for live plots, atomic checkpoints and exact resume.

Two tools of real training runs are built in:

* TensorBoard: ``Trainer(..., tensorboard="runs/tb")`` writes the losses, learning rate,
  throughput and attention maps that ``tensorboard --logdir runs/tb`` shows.
* Data parallelism: launched by ``torchrun`` (``torchrun --nproc_per_node=2 -m lslm train
  ...``), every process takes its slice of the same global batch, DistributedDataParallel
  averages the gradients, and only rank 0 writes checkpoints, logs and the progress bar.
"""

from __future__ import annotations

import math
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import torch

from lslm.checkpoint import check_vocab, checkpoint_file, load_checkpoint, load_state, save_checkpoint
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
    amp: bool = False  # bfloat16 autocast (on CPU, attention itself stays float32)
    compile: bool = False  # torch.compile the model: fewer, fused kernels after a slow first step
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


TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def launched_by_torchrun() -> bool:
    """True in a process started by ``torchrun`` (it sets RANK, WORLD_SIZE, MASTER_ADDR ...)."""
    return all(k in os.environ for k in TORCHRUN_VARS)


def distributed_env() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` as ``torchrun`` sets them; ``(0, 1, 0)`` otherwise."""
    if not launched_by_torchrun():
        return 0, 1, 0
    return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))


def init_distributed(device: str, local_rank: int) -> str:
    """Join the torchrun job's process group (nccl on CUDA, gloo on CPU); the device to use."""
    import torch.distributed as dist

    if device.startswith("cuda"):
        if device == "cuda":
            device = f"cuda:{local_rank}"  # one GPU per process
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device == "cpu":
        backend = "gloo"
    else:
        raise LslmError(f"multi-process training runs on cpu or cuda, not {device}: pass --device cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return device


def make_optimizer(
    model: torch.nn.Module, cfg: TrainConfig, device: str, fused: bool | None = None
) -> torch.optim.AdamW:
    """AdamW that decays matrices (weights, embeddings) but not norms and biases.

    ``fused=None`` takes the fused kernel where torch has one (cpu, cuda); ``False`` keeps
    the per-tensor loop.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    # The fused kernel updates every tensor in one pass: same maths as the textbook
    # per-tensor loop (tests/test_train.py checks), several times faster on small models.
    if fused is None:
        fused = device.split(":")[0] in ("cpu", "cuda")
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused)


def cpp_compiler() -> str | None:
    """The C++ compiler torch.compile could build CPU kernels with ($CXX first), or None."""
    import shutil

    for name in (os.environ.get("CXX", ""), "g++", "c++", "clang++"):
        path = shutil.which(name) if name else None
        if path:
            return path
    return None


def check_cpp_compiler() -> None:
    """torch.compile on CPU writes C++ and builds it: say so clearly when no compiler is there."""
    if cpp_compiler() is None:
        raise LslmError(
            "compile=True (--compile, or the 'quick' recipe) needs a C++ compiler on CPU and none "
            "was found: install g++ or clang++, or train without compiling (--no-compile, compile=False)"
        )


def compile_options(device: str) -> dict:
    """Inductor settings for ``torch.compile`` on ``device``.

    On CPU, ``cpp_wrapper`` calls the generated kernels from C++ rather than from a Python
    function: at the baby configuration that Python glue cost 1-2 ms of a 25-30 ms step
    (benchmarks/RESULTS.md, fifth session).
    """
    return {"cpp_wrapper": True} if device.split(":")[0] == "cpu" else {}


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
        tensorboard: str | Path | None = None,
        tensorboard_attention: bool = True,
    ):
        self.config = config or TrainConfig()
        self.rank, self.world_size, local_rank = distributed_env()
        self.distributed = launched_by_torchrun()  # even with one process: same code path
        self.device = pick_device(self.config.device)
        if self.distributed:
            if self.config.batch_size % self.world_size:
                raise LslmError(
                    f"batch_size {self.config.batch_size} does not split evenly over "
                    f"{self.world_size} processes: pick a multiple of {self.world_size}"
                )
            self.device = init_distributed(self.device, local_rank)
        self.model = model.to(self.device)
        # The module that trains: DDP wraps the model so backward() averages gradients
        # across processes; self.model stays the plain GPT (saved, evaluated, returned).
        self.net: torch.nn.Module = self.model
        if self.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [torch.device(self.device)] if self.device.startswith("cuda") else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)  # copies rank 0's weights
        if self.config.compile:
            if self.device == "cpu":
                check_cpp_compiler()
            # The compiled module shares the model's parameters; checkpoints still save self.model.
            self.net = torch.compile(self.net, options=compile_options(self.device))
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
        self.tensorboard = Path(tensorboard) if tensorboard is not None else None
        self.tensorboard_attention = tensorboard_attention
        self._writer = None  # a SummaryWriter, made on first use (only on rank 0)
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

    @property
    def is_main(self) -> bool:
        """True in the process that writes checkpoints, logs and the progress bar (rank 0)."""
        return self.rank == 0

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

    def mean_over_processes(self, value: float) -> float:
        """The mean of ``value`` over all processes (itself when there is one)."""
        if not self.distributed:
            return value
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)  # a sum: gloo has no average
        return t.item() / self.world_size

    def train_step(self) -> float:
        """One parameter update: forward, backward (over grad_accum micro-batches), clip, step."""
        cfg = self.config
        lr = lr_at(self.step, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if not self.model.training:  # train() walks every module: not free at this size
            self.model.train()
        total = 0.0
        for micro in range(cfg.grad_accum):
            x, y = self.batch("train")
            # With DDP, gradients are averaged across processes once, at the last micro-batch.
            last = micro == cfg.grad_accum - 1
            sync = self.net.no_sync() if self.distributed and not last else nullcontext()
            with sync:
                with self.autocast():
                    _, loss = self.net(x, y)
                (loss / cfg.grad_accum).backward()
            total += loss.item() / cfg.grad_accum
        # Checked after backward so that every process takes the same decision.
        total = self.mean_over_processes(total)
        if not math.isfinite(total):
            self.optimizer.zero_grad(set_to_none=True)
            where = f"; the last good checkpoint is in {self.out_dir}" if self.out_dir else ""
            raise LslmError(
                f"training stopped: the loss became {total} at step {self.step}. "
                f"Lower the learning rate (now {lr:.2e}) or keep gradient clipping on{where}"
            )
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return total

    def estimate_loss(self, split: str = "val") -> float:
        """Mean loss over ``eval_iters`` batches. The same batches every time, so curves compare."""
        gen = torch.Generator().manual_seed(self.config.seed + (1 if split == "val" else 2))
        return self.mean_loss(self.batch(split, gen) for _ in range(self.config.eval_iters))

    @torch.no_grad()
    def mean_loss(self, batches) -> float:
        """The model's mean loss over ``(x, y)`` batches, in eval mode (and across processes)."""
        self.model.eval()
        losses = []
        for x, y in batches:
            with self.autocast():
                losses.append(self.model(x, y)[1].item())
        self.model.train()
        return self.mean_over_processes(sum(losses) / len(losses))

    def evaluate_now(self, record: dict) -> None:
        record["val_loss"] = self.estimate_loss("val")
        record["eval_train_loss"] = self.estimate_loss("train")
        h = self.history
        h["eval_step"].append(self.step)
        h["val_loss"].append(record["val_loss"])
        h["eval_train_loss"].append(record["eval_train_loss"])
        writer = self.writer()
        if writer is not None:
            writer.add_scalar("val/loss", record["val_loss"], self.step)
            writer.add_scalar("train/eval_loss", record["eval_train_loss"], self.step)
            if self.tensorboard_attention:
                self.log_attention(writer)

    # ----- TensorBoard ----------------------------------------------------------------
    def writer(self):
        """The TensorBoard ``SummaryWriter`` (rank 0 with ``tensorboard`` set), else None."""
        if self.tensorboard is None or not self.is_main:
            return None
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter  # slow import: only when asked

            # purge_step: after a resume, TensorBoard hides the events a crashed run logged
            # after its last checkpoint, since those steps are now redone.
            purge = self.step + 1 if self.step else None
            self._writer = SummaryWriter(str(self.tensorboard), purge_step=purge)
        return self._writer

    @torch.no_grad()
    def log_attention(self, writer) -> None:
        """One grey image per layer, its heads side by side: the attention of a fixed
        validation block. Row = query, column = key; each row is scaled so that the key
        it attends to most is white (raw weights of long rows would be too faint to see)."""
        x, _ = get_batch(self.data["val"], 1, self.model.config.block_size,
                         generator=torch.Generator().manual_seed(self.config.seed))
        self.model.eval()
        _, attention = self.model.features(x.to(self.device), return_attention=True)
        self.model.train()
        scale = max(1, 128 // x.size(1))  # blow small maps up so they are visible
        for layer, weights in enumerate(attention):
            img = weights[0, :, None].float().cpu()  # (heads, 1, T, T), values in [0, 1]
            img = img / img.amax(dim=-1, keepdim=True).clamp_min(1e-9)
            img = img.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
            writer.add_images(f"attention/layer_{layer}", img, self.step, dataformats="NCHW")

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
        if cfg.progress and self.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.max_iters, initial=self.step, desc="training", unit="it")
        self.interrupted = False
        self.writer()  # opened before the first step, so a resume purges from the right step
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
                writer = self.writer()
                if writer is not None:
                    writer.add_scalar("train/loss", loss, self.step)
                    writer.add_scalar("lr", record["lr"], self.step)
                    writer.add_scalar("tokens_per_sec", record["tokens_per_sec"], self.step)
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
            if self._writer is not None:
                self._writer.flush()
        if self.out_dir is not None:
            self.save()
        return self.history

    def _notify(self, record: dict) -> None:
        # Every process calls them, with the same (averaged) numbers.
        for callback in self.callbacks:
            callback(self, record)

    def close(self, wait: bool = True) -> None:
        """Close the TensorBoard log and leave the torchrun job's process group, if any.

        ``wait=False`` skips the final barrier: after an error only some processes may
        reach it, and waiting for the others would hang.
        """
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self.distributed:
            import torch.distributed as dist

            if dist.is_initialized():
                if wait:
                    dist.barrier()  # nobody leaves while rank 0 still writes the last checkpoint
                dist.destroy_process_group()

    # ----- checkpoints ----------------------------------------------------------------
    def save(self, path: str | Path | None = None) -> Path:
        """Write an atomic checkpoint of everything needed to resume exactly.

        With several processes only rank 0 writes (they all hold the same weights).
        """
        target = Path(path) if path is not None else self.out_dir
        if target is None:
            raise LslmError("no checkpoint folder: pass out_dir to Trainer or a path to save()")
        if not self.is_main:
            return checkpoint_file(target)
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
        tensorboard: str | Path | None = None,
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
                      callbacks, meta=ckpt.get("meta"), tensorboard=tensorboard)
        trainer.optimizer.load_state_dict(ckpt["optimizer"])
        trainer.history = ckpt["history"]
        trainer.step = int(ckpt["step"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        trainer.batch_gen.set_state(ckpt["rng"]["batch"])
        return trainer
