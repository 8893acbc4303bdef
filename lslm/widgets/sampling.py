"""SamplingPlayground: how temperature, top-k and top-p reshape the next-token distribution."""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.figure import Figure

from lslm.checkpoint import check_vocab
from lslm.devices import model_device
from lslm.errors import LslmError
from lslm.model import GPT, next_token_probs
from lslm.tokenizers import Tokenizer
from lslm.utils import evaluating

from .base import PlotWidget, plot_label, text_kw, visible

N_BARS = 15
KEPT, CUT = "#1f77b4", "#c8c8c8"


def _percent(p: float) -> str:
    return f"{p:.0%}" if p >= 0.095 else f"{p:.1%}"


class SamplingPlayground(PlotWidget):
    """The next-token distribution after a prompt, and sampled continuations.

    The chart shows the ~15 likeliest next tokens: blue bars are the distribution that
    is actually sampled from (after temperature, top-k and top-p, renormalised), grey
    hatched bars are tokens that top-k/top-p cut, at their probability before the cut.
    ``generate`` (the button) samples a continuation with the same settings and seed;
    one is sampled at the start, ``max_new_tokens`` long (the slider's first value).
    """

    widget_name = "sampling-playground"
    has_output = True
    figsize = (8.0, 3.6)
    layout = None  # margins set by hand in draw

    def __init__(
        self, model: GPT, tokenizer: Tokenizer, prompt: str = "The ", max_new_tokens: int = 200
    ) -> None:
        super().__init__()
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or not (
            1 <= max_new_tokens <= 1000
        ):
            raise LslmError(f"max_new_tokens must be from 1 to 1000, got {max_new_tokens!r}")
        check_vocab(model.config.vocab_size, tokenizer.vocab_size, "the model")
        self.model = model
        self.tokenizer = tokenizer
        vocab = tokenizer.vocab_size
        self.generation_count = 0
        self._longest_label = max(len(plot_label(tokenizer.id_to_piece(i), 8))
                                  for i in range(vocab))
        self.last_text: str | None = None

        self._add_control("prompt", widgets.Text(value=prompt, layout=widgets.Layout(width="60%")))
        self._add_control(
            "temperature",
            widgets.FloatSlider(value=1.0, min=0.0, max=2.0, step=0.05, readout_format=".2f"),
        )
        self._add_control("top_k", widgets.IntSlider(value=0, min=0, max=vocab), "top-k (0: off)")
        self._add_control(
            "top_p",
            widgets.FloatSlider(value=1.0, min=0.05, max=1.0, step=0.05, readout_format=".2f"),
            "top-p (1: off)",
        )
        self._add_control("seed", widgets.IntText(value=0), redraw=False)
        self._add_control(
            "max_new_tokens", widgets.IntSlider(value=max_new_tokens, min=1, max=1000), "new tokens",
            redraw=False,
        )
        self._add_control(
            "generate", widgets.Button(button_style="primary", icon="play"), "Generate",
            redraw=False,
        )
        self.generate.on_click(lambda _button: self.generate_text())
        self._set_children(
            self.prompt,
            [self.temperature, self.top_k, self.top_p],
            [self.seed, self.max_new_tokens, self.generate],
        )
        self.redraw()
        self.generate_text()

    # ----- the numbers -----------------------------------------------------------------
    def _settings(self) -> dict[str, Any]:
        temperature = float(self.temperature.value)
        if temperature < 0:
            raise LslmError(f"temperature must be >= 0 (0 means greedy), got {temperature}")
        top_k = int(self.top_k.value)
        top_p = float(self.top_p.value)
        if not 0.0 < top_p <= 1.0:
            raise LslmError(f"top-p must be in (0, 1] (1 means off), got {top_p}")
        return {
            "temperature": temperature,
            "top_k": top_k if top_k > 0 else None,
            "top_p": top_p if top_p < 1.0 else None,
        }

    def _prompt_ids(self) -> list[int]:
        prompt = self.prompt.value
        if not prompt:
            raise LslmError(
                "type a prompt of at least one character: the model predicts what follows it"
            )
        ids = self.tokenizer.encode(prompt)  # LslmError for characters it cannot encode
        if not ids:
            raise LslmError("the prompt encodes to no tokens: type some text")
        return ids

    def _context(self, ids: list[int]) -> list[int]:
        block = self.model.config.block_size
        if len(ids) > block:
            self.note(
                f"the prompt has {len(ids)} tokens; the model sees only the last {block} "
                "(its block_size)"
            )
        return ids[-block:]

    def _last_logits(self, context: list[int]) -> torch.Tensor:
        # Run the model every time (no cache): it may have been trained since the last call.
        device = model_device(self.model)
        with evaluating(self.model), torch.no_grad():
            logits = self.model(torch.tensor([context], device=device))[0][0, -1]
        return logits.float().cpu()

    def prepare(self) -> dict[str, Any]:
        settings = self._settings()
        context = self._context(self._prompt_ids())
        logits = self._last_logits(context)[None, :]
        t = settings["temperature"]
        if t == 0:
            # Greedy: all the probability on the top token, as GPT.generate does.
            before = next_token_probs(logits, 1.0)[0]
            after = torch.zeros_like(before)
            after[int(logits.argmax())] = 1.0
        else:
            before = next_token_probs(logits, t)[0]
            after = next_token_probs(logits, t, settings["top_k"], settings["top_p"])[0]
        order = torch.argsort(logits[0], descending=True)[:N_BARS]
        return {**settings, "context": context, "before": before, "after": after, "order": order}

    def probs(self) -> torch.Tensor:
        """The distribution the next token is sampled from (vocab_size,), as shown in the chart."""
        with self._lock:
            if self.frame is None:
                raise LslmError(self.last_error or "no distribution yet: type a prompt")
            return self.frame["after"].clone()

    def settings_text(self, settings: dict[str, Any] | None = None) -> str:
        s = settings or self.frame
        if s["temperature"] == 0:
            return "temperature 0 (greedy)"
        return (
            f"temperature {s['temperature']:.2f} · top-k {s['top_k'] or 'off'} · "
            f"top-p {s['top_p'] if s['top_p'] is not None else 'off'}"
        )

    # ----- drawing ---------------------------------------------------------------------
    def figure_key(self) -> int:
        return len(self.frame["order"])  # the same bars every time (fewer for a tiny vocabulary)

    def draw(self, fig: Figure) -> dict[str, Any]:
        handles = _draw_chart(fig, len(self.frame["order"]), self._longest_label)
        self.update(fig, handles)
        return handles

    def update(self, fig: Figure, handles: dict[str, Any]) -> None:
        _update_chart(handles, self.frame, self.tokenizer, self.settings_text())

    # ----- generating ------------------------------------------------------------------
    def generate_text(self) -> str | None:
        """Sample a continuation with the current settings and seed; show it and return it.

        Returns None (and shows the reason in the message area) if the settings are bad.
        """
        with self._lock:
            self._notes = []
            try:
                settings = self._settings()
                ids = self._prompt_ids()
                self._context(ids)  # only for the note when the prompt is too long
                seed, n = int(self.seed.value), int(self.max_new_tokens.value)
                if not 0 <= seed < 2**63:
                    raise LslmError(f"seed must be a whole number from 0 to 2**63 - 1, got {seed}")
                if n < 1:
                    raise LslmError(f"new tokens must be at least 1, got {n}")
                device = model_device(self.model)
                out = self.model.generate(
                    torch.tensor([ids], device=device), n, settings["temperature"],
                    settings["top_k"], settings["top_p"], seed=seed,
                )
            except LslmError as e:
                self._show_error(str(e))
                return None
            text = self.tokenizer.decode(out[0, len(ids):].tolist())
            prompt = self.prompt.value
            self.last_text = text
            self.output.value = (  # type: ignore[union-attr]
                '<div class="lslm-generation" style="font-family:monospace;white-space:pre-wrap;'
                'border:1px solid #ddd;border-radius:4px;padding:6px;margin-top:4px">'
                f'<span style="color:#888">{html.escape(prompt, quote=False)}</span>'
                f'<span style="background:#eef5ff">{html.escape(text, quote=False)}</span></div>'
                '<div style="font-size:85%;color:#666">'
                f"{n} new tokens with {html.escape(self.settings_text(settings))} · seed {seed}"
                " (the same settings and seed give the same text)</div>"
            )
            self.generation_count += 1
            self._show_notes()
            return text

    def describe(self) -> str:
        if not self.frame:
            return "<SamplingPlayground>"
        return f"<SamplingPlayground: prompt {self.prompt.value!r}, {self.settings_text()}>"


def _draw_chart(fig: Figure, n: int, longest_label: int) -> dict[str, Any]:
    """The chart's artists for ``n`` bars, to be filled in by ``_update_chart``."""
    ax = fig.add_subplot()
    # Margins by hand, with room for the longest label of the vocabulary (at 45 degrees):
    # the Figure is kept, and its labels change with the prompt.
    label_pt = 7 + 0.71 * (0.62 * 8 * longest_label + 8) + 6
    fig.subplots_adjust(left=0.115, right=0.985, top=0.9,
                        bottom=label_pt / (72 * fig.get_figheight()))
    x = np.arange(n)
    bars = list(ax.bar(x, np.zeros(n), linewidth=0.8))
    # Over each bar, when needed: the share a cut token had (hatched), or the share a
    # kept token had before renormalising (dashed).
    overlays = list(ax.bar(x, np.zeros(n), color="none", linewidth=0))
    values = [ax.text(xi, 0, " ", ha="center", va="bottom", fontsize=7) for xi in x]
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_ylabel("probability")
    rest = ax.text(0.99, 0.97, " ", transform=ax.transAxes, ha="right", va="top", fontsize=8,
                   color="#555")
    # y given: the title stays put (placing it measures every tick label, each redraw)
    title = ax.set_title(" ", fontsize=10, y=1.0, **text_kw())
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return {"ax": ax, "x": x, "bars": bars, "overlays": overlays, "values": values,
            "rest": rest, "title": title}


def _update_chart(handles: dict[str, Any], f: dict[str, Any], tokenizer: Tokenizer,
                  settings: str) -> None:
    """Show frame ``f`` of a SamplingPlayground on the chart ``_draw_chart`` made."""
    order = f["order"].tolist()
    before, after = f["before"].numpy(), f["after"].numpy()
    kept = [after[i] > 0 for i in order]
    heights = [float(after[i] if k else before[i]) for i, k in zip(order, kept)]
    for xi, (i, k) in enumerate(zip(order, kept)):
        bar, over, value = handles["bars"][xi], handles["overlays"][xi], handles["values"][xi]
        bar.set_height(heights[xi])
        bar.set_facecolor(KEPT if k else CUT)
        bar.set_edgecolor(KEPT if k else "#888")
        over.set_height(float(before[i]))
        if not k:
            over.set(visible=True, edgecolor="#888", hatch="///", linewidth=0,
                     linestyle="-")
        elif after[i] > before[i] + 1e-6:
            over.set(visible=True, edgecolor="#333", hatch=None, linewidth=0.8,
                     linestyle="--")
        else:
            over.set_visible(False)
        value.set_position((xi, heights[xi]))
        value.set_text(_percent(heights[xi]) if k else "cut")
        value.set_color("#333" if k else "#888")
    ax = handles["ax"]
    labels = [plot_label(tokenizer.id_to_piece(i), 8) for i in order]
    ax.set_xticks(handles["x"], labels, rotation=45, ha="right", fontsize=8, **text_kw())
    for tick, k in zip(ax.get_xticklabels(), kept):
        tick.set_color("black" if k else "#999")
    ax.set_ylim(0, max(max(heights), 1e-3) * 1.18)
    rest_after = max(0.0, float(after.sum() - after[order].sum()))  # not "-0.0%"
    rest_before = max(0.0, float(before.sum() - before[order].sum()))
    handles["rest"].set_text(
        f"the other {len(before) - len(order):,} tokens: {rest_after:.1%}"
        f"\n(before top-k/top-p: {rest_before:.1%})"
    )
    tail = visible(tokenizer.decode(f["context"]))[-30:]
    handles["title"].set_text(f"next token after “…{plot_label(tail, 30)}”  ·  {settings}")
