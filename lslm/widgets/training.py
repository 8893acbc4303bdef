"""TrainingDashboard: loss, learning rate and speed curves that update while training runs.

    dash = TrainingDashboard()
    dash                                   # show it (end of a cell)
    Trainer(model, tok, data, cfg, callbacks=[dash.callback]).fit()

The callback runs in the training loop and sets the Image's value there; the kernel
sends that to the browser at once, so the curves move while the cell is still running.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from lslm.errors import LslmError

from .base import PlotWidget

TRAIN_COLUMNS = ("step", "train_loss", "lr", "tokens_per_sec")
EVAL_COLUMNS = ("eval_step", "val_loss", "eval_train_loss")


def empty_history() -> dict[str, list]:
    return {k: [] for k in (*TRAIN_COLUMNS, *EVAL_COLUMNS)}


def ema(values: list[float], alpha: float = 0.1) -> np.ndarray:
    """Exponential moving average with bias correction, so the first points are not dragged to 0."""
    out = np.empty(len(values))
    avg = 0.0
    for i, v in enumerate(values):
        avg = (1 - alpha) * avg + alpha * v
        out[i] = avg / (1 - (1 - alpha) ** (i + 1))
    return out


class TrainingDashboard(PlotWidget):
    """Live training curves: loss (train per step, validation per evaluation), lr, tokens/s.

    Pass ``dash.callback`` to ``Trainer(callbacks=[...])``. It redraws at most once per
    ``every`` seconds (0: after every step), and always after an evaluation and at the
    last step. It also waits at least 4x as long as the last redraw took, so drawing
    never takes more than about a fifth of the training time. ``update_from_history`` shows a
    finished (or resumed) run's history.
    """

    widget_name = "training-dashboard"
    has_output = True
    figsize = (11.0, 3.3)
    dpi = 80
    layout = None  # fixed panels placed by hand: it redraws inside the training loop

    def __init__(self, every: float = 0.5) -> None:
        super().__init__()
        if not isinstance(every, (int, float)) or not math.isfinite(every) or every < 0:
            raise LslmError(f"every is the number of seconds between redraws (>= 0), got {every!r}")
        self.every = float(every)
        self.history: dict[str, list] = empty_history()
        self.max_iters: int | None = None
        self._trainer: Any = None
        self._last_draw = -math.inf
        self._draw_seconds = 0.0
        self._set_children()
        self.redraw()

    # ----- feeding it ------------------------------------------------------------------
    def callback(self, trainer: Any, record: dict) -> None:
        """``Trainer`` callback: add ``record`` to the dashboard's history, redraw if due."""
        with self._lock:
            if trainer is not self._trainer:
                # A new (or resumed) run: start from everything it has, this record included.
                self._trainer = trainer
                self.history = _copy_history(trainer.history)
            else:
                _append(self.history, record)
            self.max_iters = getattr(getattr(trainer, "config", None), "max_iters", None)
            last = self.max_iters is not None and record.get("step", 0) >= self.max_iters
            due = (
                self.every <= 0
                or "val_loss" in record
                or last
                or time.monotonic() - self._last_draw >= max(self.every, 4 * self._draw_seconds)
            )
            if due:
                start = time.monotonic()
                self.redraw()
                # Measured after drawing: the pause between redraws is real training time.
                self._last_draw = time.monotonic()
                self._draw_seconds = self._last_draw - start

    def update_from_history(self, history: dict[str, list]) -> None:
        """Show a whole history (``trainer.history`` or a checkpoint's ``"history"``)."""
        _check_history(history)
        with self._lock:
            self._trainer = None
            self.history = _copy_history(history)
            self.redraw()

    def finish(self) -> None:
        """Redraw now with everything received (call after training if ``every`` is large)."""
        with self._lock:
            self.redraw()
            self._last_draw = time.monotonic()

    # ----- drawing ---------------------------------------------------------------------
    def prepare(self) -> dict[str, Any]:
        return {"history": _copy_history(self.history), "max_iters": self.max_iters}

    def figure_key(self) -> tuple[bool, bool, bool]:
        # Which curves (and so which legend) there are; only a new combination needs a new
        # Figure, every other redraw just moves the curves' data.
        h = self.frame["history"]
        return bool(h["step"]), len(h["step"]) > 5, bool(h["eval_step"])

    def draw(self, fig: Figure) -> dict[str, Any]:
        has_steps, smoothed, has_eval = self.figure_key()
        loss_ax, lr_ax, speed_ax = fig.subplots(1, 3)
        fig.subplots_adjust(left=0.05, right=0.985, bottom=0.15, top=0.8, wspace=0.25)
        lines: dict[str, Any] = {}
        if has_steps:
            lines["loss"], = loss_ax.plot([], [], color="C0", alpha=0.3, lw=0.8,
                                          label="train (each step)")
            if smoothed:
                lines["loss_ema"], = loss_ax.plot([], [], color="C0", lw=1.5,
                                                  label="train (smoothed)")
            lines["lr"], = lr_ax.plot([], [], color="C2")
            lines["speed"], = speed_ax.plot([], [], color="C4", alpha=0.3, lw=0.8)
            lines["speed_ema"], = speed_ax.plot([], [], color="C4", lw=1.5)
        if has_eval:
            lines["val"], = loss_ax.plot([], [], "o-", color="C1", ms=4, label="validation")
        if has_steps or has_eval:
            loss_ax.legend(fontsize=8)
        else:
            for ax in (loss_ax, lr_ax, speed_ax):
                ax.text(0.5, 0.5, "waiting for training…", ha="center", va="center",
                        transform=ax.transAxes, color="#888")
        lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        titles = ("loss (nats)", "learning rate", "tokens / second (smoothed)")
        for ax, title in zip((loss_ax, lr_ax, speed_ax), titles):
            # A fixed place, above an axis offset ("1e-3"): placing it measures every tick
            # label, at each redraw.
            ax.set_title(title, y=1.0, pad=14)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        handles = {"axes": (loss_ax, lr_ax, speed_ax), "lines": lines,
                   "headline": fig.suptitle(" ", fontsize=11)}
        self.update(fig, handles)
        return handles

    def update(self, fig: Figure, handles: dict[str, Any]) -> None:
        h, lines = self.frame["history"], handles["lines"]
        steps = h["step"]
        data = {"loss": (steps, h["train_loss"]), "lr": (steps, h["lr"]),
                "speed": (steps, h["tokens_per_sec"]), "val": (h["eval_step"], h["val_loss"])}
        if "loss_ema" in lines:
            data["loss_ema"] = (steps, ema(h["train_loss"]))
        if "speed_ema" in lines:
            data["speed_ema"] = (steps, ema(h["tokens_per_sec"]))
        for name, line in lines.items():
            line.set_data(*data[name])
        for ax in handles["axes"]:
            ax.relim()
            ax.autoscale_view()
        handles["headline"].set_text(self._headline())

    def _headline(self) -> str:
        h = self.frame["history"]
        if not h["step"] and not h["eval_step"]:
            return "no training steps yet"
        parts = [f"step {_last(h['step'], _last(h['eval_step'], 0))}"]
        if h["train_loss"]:
            parts.append(f"train loss {h['train_loss'][-1]:.3f}")
        if h["val_loss"]:
            parts.append(f"val loss {h['val_loss'][-1]:.3f}")
        return ", ".join(parts)

    def draw_html(self) -> str:
        h, total = self.frame["history"], self.frame["max_iters"]
        if not h["step"] and not h["eval_step"]:
            return '<div class="lslm-numbers">no training steps yet</div>'
        step = _last(h["step"], _last(h["eval_step"], 0))
        parts = [f"step {step:,}" + (f"/{total:,}" if total else "")]
        if h["train_loss"]:
            parts.append(f"train loss {h['train_loss'][-1]:.4f}")
        if h["val_loss"]:
            parts.append(f"val loss {h['val_loss'][-1]:.4f} (at step {h['eval_step'][-1]:,})")
        if h["lr"]:
            parts.append(f"lr {h['lr'][-1]:.2e}")
        if h["tokens_per_sec"]:
            parts.append(f"{ema(h['tokens_per_sec'][-50:])[-1]:,.0f} tokens/s")
        return '<div class="lslm-numbers">' + " · ".join(parts) + "</div>"

    def describe(self) -> str:
        return f"<TrainingDashboard: {self._headline() if self.frame else 'no data'}>"


def _last(values: list, default: Any) -> Any:
    return values[-1] if values else default


def _copy_history(history: dict[str, list]) -> dict[str, list]:
    copy = empty_history()
    for key in copy:
        copy[key] = list(history.get(key, []))
    return copy


def _check_history(history: Any) -> None:
    if not isinstance(history, dict):
        raise LslmError("a history is a dict of lists, like trainer.history: pass that")
    for columns in (TRAIN_COLUMNS, EVAL_COLUMNS):
        lengths = {k: len(history.get(k, [])) for k in columns}
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{k}: {n}" for k, n in lengths.items())
            raise LslmError(
                f"the history's columns have different lengths ({shown}): "
                "pass trainer.history or a checkpoint's history unchanged"
            )


def _append(history: dict[str, list], record: dict) -> None:
    """Add one Trainer record: a training step's numbers and/or an evaluation's."""
    if "train_loss" in record:
        for key in TRAIN_COLUMNS:
            history[key].append(record.get(key, math.nan))
    if "val_loss" in record:
        history["eval_step"].append(record.get("step", 0))
        history["val_loss"].append(record["val_loss"])
        history["eval_train_loss"].append(record.get("eval_train_loss", math.nan))
