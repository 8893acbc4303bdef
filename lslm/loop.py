"""The training loop that every model in lslm trains with.

A step is always the same: set the learning rate, run ``grad_accum`` micro-batches forward
and backward, check that the loss is a finite number, clip the gradients, take an optimizer
step. ``TrainLoop`` does that for any model. It is given

* ``loss_fn(net, batch)``, which returns a scalar loss for one batch, and
* ``next_batch()``, which returns the next batch,

and it adds what every run wants: a warmup + cosine learning rate, AdamW, bfloat16 autocast,
a progress bar, periodic evaluation, callbacks, and a clean stop on Ctrl-C, SIGTERM and
SIGHUP. ``lslm.train.Trainer`` (language model pretraining with checkpoints, data parallelism
and TensorBoard) is a ``TrainLoop``; so is ``lslm.tasks.common.fit``, which trains the task
models.

Every callback is called as ``callback(loop, record)`` after each step, where ``record``
holds ``step`` (updates done so far), ``train_loss`` and ``lr``, plus what the evaluation
returned when the step ended with one.

Dropout draws its random numbers from torch's global generator. The loop keeps a generator
state of its own, seeded with ``config.seed``, and swaps it in only while it steps: training
never moves the caller's random numbers, and a run gives the same masks wherever it runs.
"""

from __future__ import annotations

import math
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from typing import Any

import torch

from lslm.devices import fused_adamw_available
from lslm.errors import LslmError, real_number, shown, whole_number
from lslm.progress import progress_bar
from lslm.utils import DictConfig


@dataclass
class TrainConfig(DictConfig):
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
        # Types as well as ranges, each field once: a NaN learning rate, a batch of 2.5 or
        # device="banana" would otherwise fail (or train wrongly) long after this line. numpy
        # numbers are welcome and stored as plain int and float, so the config saves as JSON.
        top = 2**63 - 1  # torch counts in int64
        for name, low in (("max_iters", 0), ("batch_size", 1), ("grad_accum", 1), ("eval_iters", 1),
                          ("warmup_iters", 0), ("eval_interval", 0), ("checkpoint_interval", 0)):
            setattr(self, name, whole_number(name, getattr(self, name), minimum=low, maximum=top))
        if self.lr_decay_iters is not None:
            self.lr_decay_iters = whole_number("lr_decay_iters", self.lr_decay_iters, minimum=0, maximum=top)
        self.seed = whole_number("seed", self.seed, minimum=0, maximum=top)
        self.lr = real_number("lr", self.lr, low=0.0)
        if self.lr == 0:
            raise LslmError("lr must be > 0, got 0: a zero learning rate never changes the weights")
        self.min_lr = real_number("min_lr", self.min_lr, low=0.0)
        self.weight_decay = real_number("weight_decay", self.weight_decay, low=0.0)
        self.grad_clip = real_number("grad_clip", self.grad_clip, low=0.0)
        for name in ("beta1", "beta2"):
            setattr(self, name, real_number(name, getattr(self, name), 0.0, 1.0, high_open=True))
        for name in ("amp", "compile", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise LslmError(f"{name} must be True or False, got {shown(getattr(self, name))}")
        if not isinstance(self.device, str) or not re.fullmatch(r"auto|cpu|mps|cuda(:\d{1,4})?", self.device):
            raise LslmError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {shown(self.device)}")


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to ``lr``, then cosine decay down to ``min_lr``."""
    decay_iters = cfg.lr_decay_iters or cfg.max_iters
    if step < cfg.warmup_iters:
        return cfg.lr * (step + 1) / (cfg.warmup_iters + 1)
    if step >= decay_iters:
        return cfg.min_lr
    progress = (step - cfg.warmup_iters) / max(1, decay_iters - cfg.warmup_iters)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


def make_optimizer(
    model: torch.nn.Module, cfg: TrainConfig, device: str, fused: bool | None = None
) -> torch.optim.AdamW:
    """AdamW that decays matrices (weights, embeddings) but not norms and biases.

    ``fused=None`` takes the fused kernel where this torch has one for ``device`` (cuda;
    cpu and mps from torch 2.4, see ``lslm.devices.fused_adamw_available``) and torch's
    default loop elsewhere; ``True`` asks for it (an ``LslmError`` where there is none);
    ``False`` keeps the per-tensor loop. Frozen parameters (``requires_grad=False``) are left out.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    settings = {"lr": cfg.lr, "betas": (cfg.beta1, cfg.beta2)}
    # The fused kernel updates every tensor in one pass: same maths as the textbook
    # per-tensor loop (tests/test_train.py checks), several times faster on small models.
    # Older torch lacks it on cpu and mps (Intel Macs stop at 2.2.2): there, fall back.
    available = fused_adamw_available(device)
    if fused and not available:
        raise LslmError(
            f"fused=True: torch {torch.__version__} has no fused AdamW for {device} (cpu and mps "
            "have one from torch 2.4): pass fused=None to fall back, or upgrade torch"
        )
    if fused is not None:
        return torch.optim.AdamW(groups, **settings, fused=fused)
    if available:
        try:
            return torch.optim.AdamW(groups, **settings, fused=True)
        except (RuntimeError, TypeError):  # a torch that checks its devices when built, and refuses
            pass
    return torch.optim.AdamW(groups, **settings)  # torch's default: foreach where it has it


Callback = Callable[["TrainLoop", dict], None]

# A job scheduler stops a run with SIGTERM, a closed terminal (or laptop lid, over ssh) sends
# SIGHUP: both would kill the process and lose every step since the last checkpoint.
# Windows has no SIGHUP, so only the signals this platform has are caught.
STOP_SIGNAL_NAMES = ("SIGTERM", "SIGHUP")


def stop_signal_numbers() -> tuple[int, ...]:
    """The stop signals this platform has (SIGTERM everywhere, SIGHUP not on Windows)."""
    return tuple(getattr(signal, name) for name in STOP_SIGNAL_NAMES if hasattr(signal, name))


STOP_SIGNALS = stop_signal_numbers()


@contextmanager
def stop_signals(handler: Callable[[int], None]) -> Iterator[None]:
    """Call ``handler(signum)`` on SIGTERM or SIGHUP (where it exists: not on Windows) inside
    the block, as ``stop_signal_numbers`` finds them when it starts; a second signal raises
    KeyboardInterrupt at once (a step that never ends should not need SIGKILL). The handlers
    there were come back after the block. Python lets only the main thread set handlers, so
    elsewhere (a worker thread) the block runs with the signals as they are."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        received.append(signum)
        if len(received) > 1:
            raise KeyboardInterrupt
        handler(signum)

    previous = {}
    try:
        for sig in stop_signal_numbers():
            previous[sig] = signal.signal(sig, on_signal)
        yield
    finally:
        for sig, old in previous.items():
            # None: a handler set outside Python, which cannot be put back; the default is closest.
            signal.signal(sig, old if old is not None else signal.SIG_DFL)


class TrainLoop:
    """Train ``model`` on batches from ``next_batch()`` by the loss that ``loss_fn`` gives.

    ``net`` is the module the forward pass runs through (a compiled or data-parallel wrapper
    of ``model``; ``model`` itself by default). ``evaluate(loop)``, when given, returns a dict
    of numbers every ``eval_interval`` steps and at the last one. The config is copied, so
    nothing here changes the caller's ``TrainConfig``.
    """

    progress_desc = "training"
    stop_signal: int | None = None  # the signal that stopped the last fit(), if one did

    def __init__(
        self,
        model: torch.nn.Module,
        loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor],
        next_batch: Callable[[], Any],
        config: TrainConfig,
        *,
        device: str = "cpu",
        net: torch.nn.Module | None = None,
        callbacks: list[Callback] | None = None,
        evaluate: Callable[["TrainLoop"], dict] | None = None,
        fused: bool | None = None,
    ):
        self.config = replace(config)
        self.model = model
        self.net = net if net is not None else model
        self.loss_fn = loss_fn
        self.next_batch = next_batch
        self.device = device
        self.callbacks = list(callbacks or [])
        self.evaluator = evaluate
        self.optimizer = make_optimizer(model, self.config, device, fused)
        self.history: dict[str, list] = {"step": [], "train_loss": [], "lr": []}
        self.step = 0
        self.interrupted = False
        self.rng_state = self._seeded_rng_state(self.config.seed)

    # ----- hooks a subclass may change ------------------------------------------------
    @property
    def is_main(self) -> bool:
        """True in the process that shows the progress bar (the only one, unless distributed)."""
        return True

    def reduce(self, value: float) -> float:
        """The mean of ``value`` over processes: the value itself with one process."""
        return value

    def no_sync(self, last_micro_batch: bool):
        """A context for a micro-batch's backward pass (data parallelism skips syncing)."""
        return nullcontext()

    def evaluate(self) -> dict:
        """Numbers to add to the step's record and the history (none by default)."""
        return self.evaluator(self) if self.evaluator is not None else {}

    def after_step(self, record: dict) -> None:
        """Called after each step, before the callbacks (a checkpoint, a log line ...)."""

    def divergence_hint(self) -> str:
        """What to add to the error when the loss stops being a number."""
        return ""

    # ----- random numbers ---------------------------------------------------------------
    def _accelerator(self) -> str | None:
        kind = torch.device(self.device).type
        return None if kind == "cpu" else kind

    def _seeded_rng_state(self, seed: int) -> dict[str, torch.Tensor]:
        # A fresh generator seeded with ``seed`` has the state torch.manual_seed(seed) would
        # give the global one, and making it touches nothing else.
        state = {"cpu": torch.Generator().manual_seed(seed).get_state()}
        if self._accelerator():
            state[self._accelerator()] = torch.Generator(device=self.device).manual_seed(seed).get_state()
        return state

    def _capture_rng(self) -> dict[str, torch.Tensor]:
        state = {"cpu": torch.get_rng_state()}
        if self._accelerator():
            state[self._accelerator()] = getattr(torch, self._accelerator()).get_rng_state(self.device)
        return state

    @contextmanager
    def own_rng(self) -> Iterator[None]:
        """Run the block on this loop's random numbers; the caller's are put back after."""
        kind = self._accelerator()
        devices = [torch.device(self.device).index or 0] if kind else []
        with torch.random.fork_rng(devices=devices, device_type=kind or "cuda"):
            torch.set_rng_state(self.rng_state["cpu"])
            if kind:
                getattr(torch, kind).set_rng_state(self.rng_state[kind], self.device)
            try:
                yield
            finally:
                self.rng_state = self._capture_rng()

    # ----- one step -------------------------------------------------------------------
    def autocast(self):
        if not self.config.amp:
            return nullcontext()
        return torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16)

    def train_step(self) -> float:
        """One parameter update: forward, backward (over grad_accum micro-batches), clip, step."""
        cfg = self.config
        lr = lr_at(self.step, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if not self.model.training:  # train() walks every module: not free on small models
            self.model.train()
        total = 0.0
        with self.own_rng():
            for micro in range(cfg.grad_accum):
                batch = self.next_batch()
                with self.no_sync(micro == cfg.grad_accum - 1):
                    with self.autocast():
                        loss = self.loss_fn(self.net, batch)
                    (loss / cfg.grad_accum).backward()
                total += loss.item() / cfg.grad_accum
        # Checked after backward and averaged first, so every process takes the same decision.
        total = self.reduce(total)
        if not math.isfinite(total):
            self.optimizer.zero_grad(set_to_none=True)
            raise LslmError(
                f"training stopped: the loss became {total} at step {self.step}. Lower the "
                f"learning rate (now {lr:.2e}) or keep gradient clipping on{self.divergence_hint()}"
            )
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return total

    # ----- the loop -------------------------------------------------------------------
    def _evaluate_into(self, record: dict) -> None:
        numbers = self.evaluate()
        if numbers:
            record.update(numbers)
            self.history.setdefault("eval_step", []).append(self.step)
            for key, value in numbers.items():
                self.history.setdefault(key, []).append(value)

    def _step_record(self, loss: float, seconds: float) -> dict:
        return {"step": self.step, "train_loss": loss, "lr": lr_at(self.step - 1, self.config)}

    def fit(self, max_iters: int | None = None) -> dict[str, list]:
        """Train until ``max_iters`` updates in total (resumed ones included); the history.

        The model is left in the mode (training or eval) it was in. Ctrl-C (or the notebook's
        stop button) ends training early but keeps the model and the history;
        ``self.interrupted`` tells. SIGTERM and SIGHUP do the same once the current step is
        done (see ``stop_signals``), and ``self.stop_signal`` says which came.
        """
        if max_iters is not None:
            self.config = replace(self.config, max_iters=max_iters)
        cfg = self.config
        bar = None
        if cfg.progress and self.is_main:
            bar = progress_bar(cfg.max_iters, initial=self.step, desc=self.progress_desc)
        self.interrupted = False
        self.stop_signal = None
        was_training = self.model.training
        try:
            with stop_signals(lambda signum: setattr(self, "stop_signal", signum)):
                self._run_steps(cfg, bar)
        except KeyboardInterrupt:
            self.interrupted = True
            self.optimizer.zero_grad(set_to_none=True)
            by = f" by {signal.Signals(self.stop_signal).name}" if self.stop_signal else ""
            print(f"Interrupted at step {self.step}{by}: the model and history are kept{self.interrupt_note()}.")
        finally:
            if bar is not None:
                bar.close()
            self.model.train(was_training)
        return self.history

    def _run_steps(self, cfg: TrainConfig, bar: Any) -> None:
        if self.step == 0 and cfg.eval_interval:
            record = {"step": 0}
            self._evaluate_into(record)
            self._notify(record)
        while self.step < cfg.max_iters and not self._stop_agreed():
            t0 = time.perf_counter()
            loss = self.train_step()
            record = self._step_record(loss, time.perf_counter() - t0)
            for key, value in record.items():
                self.history.setdefault(key, []).append(value)
            last = self.step == cfg.max_iters
            if cfg.eval_interval and (self.step % cfg.eval_interval == 0 or last):
                self._evaluate_into(record)
            self.after_step(record)
            if bar is not None:
                if "val_loss" in record:
                    bar.set_postfix(loss=f"{loss:.3f}", val=f"{record['val_loss']:.3f}")
                elif self.step % 20 == 0 or last:
                    bar.set_postfix(loss=f"{loss:.3f}")
                bar.update(1)
            self._notify(record)
        if self.stop_signal is not None:
            raise KeyboardInterrupt  # the step is done: leave the way Ctrl-C does

    def _stop_agreed(self) -> bool:
        # All processes stop after the same step, or one would wait forever for the others.
        if self.reduce(0.0 if self.stop_signal is None else 1.0) > 0:
            self.stop_signal = self.stop_signal or signal.SIGTERM  # another process got it
        return self.stop_signal is not None

    def interrupt_note(self) -> str:
        """What to add to the message printed after Ctrl-C."""
        return ""

    def _notify(self, record: dict) -> None:
        for callback in self.callbacks:
            callback(self, record)
