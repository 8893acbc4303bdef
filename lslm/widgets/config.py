"""ConfigExplorer: move the knobs of a GPTConfig, see where the parameters go and the shapes."""

from __future__ import annotations

import dataclasses
import html
from typing import Any

import ipywidgets as widgets
from matplotlib.figure import Figure

from lslm.errors import LslmError
from lslm.model import GPTConfig, param_breakdown

from .base import PlotWidget

PART_COLOURS = ("#4c72b0", "#55a868", "#c44e52", "#8172b2", "#999999")


def human(n: float) -> str:
    """124439808 -> '124.4M', 8192 -> '8.2K'."""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= size:
            return f"{n / size:.1f}{suffix}"
    return f"{n:g}"


class ConfigExplorer(PlotWidget):
    """Sliders for a GPTConfig; a bar chart of its parameters and a table of tensor shapes.

    An impossible combination (say n_embd not divisible by n_head) shows GPTConfig's
    message, sets ``valid`` to False and keeps the last good picture.
    """

    widget_name = "config-explorer"
    has_output = True
    figsize = (7.0, 3.2)

    def __init__(self, vocab_size: int = 65, block_size: int = 64) -> None:
        super().__init__()
        start = GPTConfig(vocab_size=vocab_size, block_size=block_size)  # LslmError if bad
        self.valid = False
        self._add_control("n_layer", widgets.IntSlider(value=start.n_layer, min=1, max=48))
        self._add_control("n_head", widgets.IntSlider(value=start.n_head, min=1, max=32))
        self._add_control(
            "n_embd", widgets.IntSlider(value=start.n_embd, min=16, max=2048, step=16)
        )
        self._add_control(
            "block_size",
            widgets.IntSlider(value=block_size, min=min(8, block_size),
                              max=max(4096, block_size), step=8),
        )
        self._add_control("vocab_size", widgets.IntText(value=vocab_size), "vocab size")
        self._add_control("bias", widgets.Checkbox(value=start.bias, indent=False))
        self._set_children(
            [self.n_layer, self.n_head, self.n_embd],
            [self.block_size, self.vocab_size, self.bias],
        )
        self.redraw()

    def prepare(self) -> dict[str, Any]:
        config = GPTConfig(
            vocab_size=self.vocab_size.value, block_size=self.block_size.value,
            n_layer=self.n_layer.value, n_head=self.n_head.value, n_embd=self.n_embd.value,
            bias=self.bias.value,
        )
        return {"config": config, "parts": param_breakdown(config)}

    def _on_success(self) -> None:
        self.valid = True

    def _on_failure(self, message: str) -> None:
        self.valid = False

    def config(self) -> GPTConfig:
        """The GPTConfig the controls describe now; LslmError (the same message) if invalid."""
        with self._lock:
            if not self.valid or self.frame is None:
                raise LslmError(self.last_error or "the settings are not a valid GPTConfig")
            return dataclasses.replace(self.frame["config"])

    def figure_key(self) -> tuple[str, ...]:
        return tuple(self.frame["parts"])  # the same parts every time: one kept Figure

    def draw(self, fig: Figure) -> dict[str, Any]:
        names = list(self.frame["parts"])[::-1]  # token embedding at the top
        ax = fig.add_subplot()
        bars = list(ax.barh(names, [1] * len(names), color=PART_COLOURS[: len(names)][::-1]))
        labels = [ax.text(0, y, " ", va="center", fontsize=9) for y in range(len(names))]
        ax.xaxis.set_major_formatter(lambda x, _: human(x))
        ax.set_xlabel("parameters")
        title = ax.set_title(" ", fontsize=10)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        handles = {"ax": ax, "names": names, "bars": bars, "labels": labels, "title": title,
                   # what update changes (the rest is kept as pixels), in drawing order
                   "dynamic": [*bars, *labels, ax.xaxis, title, ax.spines["left"],
                               ax.spines["bottom"]]}
        self.update(fig, handles)
        return handles

    def update(self, fig: Figure, handles: dict[str, Any]) -> None:
        parts: dict[str, int] = self.frame["parts"]
        total = sum(parts.values())
        values = [parts[n] for n in handles["names"]]
        for bar, label, v in zip(handles["bars"], handles["labels"], values):
            bar.set_width(v)
            share = "" if not total else f" ({v / total:.0%})" if v >= 0.01 * total else " (<1%)"
            label.set_x(v)
            label.set_text("  " + ("0: shares the token embedding" if v == 0 else f"{v:,}{share}"))
        handles["ax"].set_xlim(0, max(values) * 1.45 or 1)
        c = self.frame["config"]
        handles["title"].set_text(
            f"{total:,} parameters ({human(total)}): {c.n_layer} layers × {c.n_head} heads, "
            f"n_embd {c.n_embd}"
        )

    def draw_html(self) -> str:
        c: GPTConfig = self.frame["config"]
        t, h, d, v = c.block_size, c.n_head, c.n_embd, c.vocab_size
        hs = d // h
        block = f"each of the {c.n_layer} blocks"

        def shape(*dims: int) -> str:
            return "(" + ", ".join(f"{x:,}" for x in dims) + ")"

        rows = [
            ("token ids", "idx", "(B, T)", shape(1, t)),
            ("token embedding", "wte(idx)", "(B, T, C)", shape(1, t, d)),
            ("position embedding", "wpe(arange(T))", "(T, C), added to every row", shape(t, d)),
            ("residual stream", "x = tok + pos", "(B, T, C)", shape(1, t, d)),
            (block, "q, k, v = c_attn(ln_1(x)), split into heads", "(B, H, T, C/H) each",
             shape(1, h, t, hs)),
            (block, "attention weights softmax(q kᵀ/√(C/H)), causal", "(B, H, T, T)",
             shape(1, h, t, t)),
            (block, "weights @ v, heads side by side, c_proj; x += …", "(B, T, C)",
             shape(1, t, d)),
            (block, "MLP hidden gelu(c_fc(ln_2(x)))", "(B, T, 4C)", shape(1, t, 4 * d)),
            (block, "c_proj(hidden); x += …", "(B, T, C)", shape(1, t, d)),
            ("final LayerNorm", "ln_f(x)", "(B, T, C)", shape(1, t, d)),
            ("logits", "lm_head(…): a score per vocabulary token", "(B, T, V)", shape(1, t, v)),
        ]
        cell = 'style="padding:2px 8px;text-align:left;border-bottom:1px solid #eee"'
        head = "".join(
            f"<th {cell}>{x}</th>"
            for x in ("stage", "computed as", "shape", f"for B=1, T={t:,}, C={d:,}, H={h}, V={v:,}")
        )
        body = "".join(
            "<tr>" + "".join(f"<td {cell}>{html.escape(x, quote=False)}</td>" for x in row)
            + "</tr>"
            for row in rows
        )
        return (
            '<table class="lslm-shapes" style="border-collapse:collapse;font-size:90%">'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        )

    def describe(self) -> str:
        if not self.frame:
            return "<ConfigExplorer>"
        total = sum(self.frame["parts"].values())
        return f"<ConfigExplorer: {self.frame['config']}, {total:,} parameters>"
