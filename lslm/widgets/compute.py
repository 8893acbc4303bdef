"""ComputeEstimator: pick a model, a token budget and hardware; see the days and the memory."""

from __future__ import annotations

import html
import math
from typing import Any

import ipywidgets as widgets
from matplotlib.figure import Figure

from lslm.errors import LslmError
from lslm.model import count_params
from lslm.scale import ACCELERATORS, GB, PRESETS, RECOMPUTE, Estimate, estimate, human_time

from .base import PlotWidget

MEMORY_COLOURS = {"weights": "#4c72b0", "gradients": "#dd8452", "optimizer": "#55a868",
                  "activations": "#c44e52", "total": "#999999"}
CUSTOM = "custom"


class ComputeEstimator(PlotWidget):
    """Sliders for parameters, tokens, accelerator, device count and utilisation (MFU).

    The text says how long training takes and what it costs in device-hours; the chart
    shows what one device must hold: its share of the weights, gradients and optimizer
    state (sharded over all devices) and its own activations, against its memory.
    Choosing a preset sets every control at once; moving a control afterwards changes
    only that control. With a parameter count that is not a preset's, the model's shape
    is a GPT-3-like guess (``lslm.scale.shape_for_params``).
    """

    widget_name = "compute-estimator"
    has_output = True
    figsize = (7.0, 2.8)

    def __init__(self, preset: str = "GPT-3 175B") -> None:
        super().__init__()
        if preset not in PRESETS:
            raise LslmError(f"unknown preset {preset!r}: pick one of {', '.join(PRESETS)}")
        self._applying = False
        self._add_control("preset", widgets.Dropdown(options=[*PRESETS, CUSTOM], value=preset),
                          redraw=False)
        self.preset.observe(self._on_preset, names="value")
        self._add_control("params", widgets.FloatLogSlider(
            value=1e9, base=10, min=5, max=12.5, step=0.05, readout_format=".3g"), "parameters")
        self._add_control("tokens", widgets.FloatLogSlider(
            value=1e9, base=10, min=5, max=13.5, step=0.05, readout_format=".3g"))
        self._add_control("accelerator", widgets.Dropdown(options=list(ACCELERATORS)))
        self._add_control("n_devices", widgets.BoundedIntText(value=1, min=1, max=100_000),
                          "devices")
        self._add_control("mfu", widgets.FloatSlider(
            value=0.4, min=0.05, max=0.8, step=0.01, readout_format=".0%"), "utilisation (MFU)")
        self._add_control("micro_batch", widgets.IntSlider(value=1, min=1, max=128),
                          "micro-batch (sequences)")
        self._add_control("recompute", widgets.Dropdown(options=list(RECOMPUTE)),
                          "activation recompute")
        self._set_children(
            [self.preset],
            [self.params, self.tokens],
            [self.accelerator, self.n_devices, self.mfu],
            [self.micro_batch, self.recompute],
        )
        self._apply_preset(preset)

    # ----- presets -----------------------------------------------------------------------
    def _on_preset(self, change: dict) -> None:
        if change["new"] != CUSTOM:
            self._apply_preset(change["new"])

    def _apply_preset(self, name: str) -> None:
        """Set every control from preset ``name`` with one redraw at the end."""
        p = PRESETS[name]
        with self._lock:
            self._applying = True
            try:
                self.params.value = float(count_params(p.config))
                self.tokens.value = float(p.tokens)
                self.accelerator.value = p.accelerator
                self.n_devices.value = p.n_devices
                self.mfu.value = p.mfu
                self.micro_batch.value = p.micro_batch
                self.recompute.value = p.recompute
            finally:
                self._applying = False
            self.redraw()

    def _on_control(self, change: dict) -> None:
        if not self._applying:
            self.redraw()

    # ----- computing and drawing -----------------------------------------------------------
    def prepare(self) -> dict[str, Any]:
        name = self.preset.value
        n_params = float(self.params.value)
        model: Any = n_params
        shape = "GPT-3-like shape guessed from the parameter count"
        if name != CUSTOM:
            p = PRESETS[name]
            if abs(count_params(p.config) - n_params) <= 1e-6 * n_params:
                model, shape = p.config, f"the {name} preset's shape"
        est = estimate(model, float(self.tokens.value), self.accelerator.value,
                       int(self.n_devices.value), float(self.mfu.value),
                       micro_batch=int(self.micro_batch.value), recompute=self.recompute.value)
        return {"estimate": est, "shape": shape, "preset": name}

    @property
    def result(self) -> Estimate:
        """The ``Estimate`` on screen now."""
        return self.frame["estimate"]

    def figure_key(self) -> str:
        return "memory"  # one kept Figure: every frame has the same five bars

    def draw(self, fig: Figure) -> dict[str, Any]:
        names = ["total", "activations", "optimizer", "gradients", "weights"]  # weights on top
        ax = fig.add_subplot()
        bars = list(ax.barh(names, [1.0] * len(names), left=1.0,
                            color=[MEMORY_COLOURS[k] for k in names]))
        ax.set_xscale("log")
        capacity_line = ax.axvline(1.0, color="black", ls="--", lw=1)
        capacity_text = ax.text(1.0, len(names) - 0.45, " ", fontsize=8, va="bottom")
        labels = [ax.text(1.0, y, " ", va="center", fontsize=8) for y in range(len(names))]
        ax.set_ylim(-0.6, len(names) - 0.1)
        ax.set_xlabel("GB per device (log scale)")
        title = ax.set_title(" ", fontsize=10)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        handles = {"ax": ax, "names": names, "bars": bars, "labels": labels, "title": title,
                   "capacity_line": capacity_line, "capacity_text": capacity_text,
                   # what update changes (the rest is kept as pixels), in drawing order
                   "dynamic": [*bars, capacity_line, capacity_text, *labels, ax.xaxis, title,
                               ax.spines["left"], ax.spines["bottom"]]}
        self.update(fig, handles)
        return handles

    def update(self, fig: Figure, handles: dict[str, Any]) -> None:
        est: Estimate = self.frame["estimate"]
        n = est.n_devices
        parts = {
            "weights": est.memory["weights"] / n,
            "gradients": est.memory["gradients"] / n,
            "optimizer": est.memory["optimizer"] / n,
            "activations": est.memory["activations"],
        }
        parts["total"] = sum(parts.values())
        values = [parts[k] / GB for k in handles["names"]]
        capacity = est.accelerator.memory_gb
        # A log scale: a classroom model's megabytes and GPT-3's terabytes on one axis.
        low = 10 ** math.floor(math.log10(max(min(values + [capacity]), 1e-9)) - 0.5)
        for bar, label, v in zip(handles["bars"], handles["labels"], values):
            bar.set_x(low)
            bar.set_width(v - low)
            label.set_x(v)
            label.set_text(f" {v:,.3g} GB")
        high = max(max(values), capacity) * 20
        handles["ax"].set_xlim(low, high)
        handles["capacity_line"].set_xdata([capacity, capacity])
        # On the side of the line with more room: the margins are fixed after the first frame.
        left_half = math.log(capacity / low) < 0.5 * math.log(high / low)
        handles["capacity_text"].set_x(capacity)
        handles["capacity_text"].set_horizontalalignment("left" if left_half else "right")
        handles["capacity_text"].set_text(f" one {est.accelerator.name}: {capacity:g} GB ")
        verdict = "fits" if est.fits else "does not fit"
        handles["title"].set_text(f"Per device: {est.per_device / GB:,.3g} GB, {verdict} "
                                  f"(model states sharded over {n:,})")

    def draw_html(self) -> str:
        est: Estimate = self.frame["estimate"]
        c = est.config
        rows = [
            ("training compute", f"{est.flops:.3g} FLOPs"),
            ("time", f"{human_time(est.seconds)} on {est.n_devices:,} × {est.accelerator.name} "
                     f"at {est.mfu:.0%} of {est.accelerator.peak_flops / 1e12:g} TFLOP/s"),
            ("device-hours", f"{est.gpu_hours:,.4g}"),
            ("model states (all devices)",
             f"{sum(est.memory[k] for k in ('weights', 'gradients', 'optimizer')) / GB:,.4g} GB "
             f"= 16 bytes × {est.n_params:.3g} parameters; at least "
             f"{est.min_devices_for_states:,} × {est.accelerator.memory_gb:g} GB to hold them"),
            ("model shape", f"{c.n_layer} layers × {c.n_embd:,} wide, context {c.block_size:,} "
                            f"({self.frame['shape']})"),
        ]
        cell = 'style="padding:2px 8px;text-align:left;border-bottom:1px solid #eee"'
        body = "".join(
            f"<tr><th {cell}>{html.escape(k)}</th><td {cell}>{html.escape(v)}</td></tr>"
            for k, v in rows
        )
        return (f'<table class="lslm-estimate" style="border-collapse:collapse;font-size:90%">'
                f"<tbody>{body}</tbody></table>")

    def describe(self) -> str:
        if not self.frame:
            return "<ComputeEstimator>"
        est: Estimate = self.frame["estimate"]
        return (f"<ComputeEstimator: {est.flops:.3g} FLOPs, {human_time(est.seconds)} on "
                f"{est.n_devices} × {est.accelerator.name}>")
