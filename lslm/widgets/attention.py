"""AttentionExplorer: which earlier tokens does each token look at, per layer and head?"""

from __future__ import annotations

from typing import Any, Callable

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from lslm.checkpoint import check_vocab
from lslm.errors import LslmError
from lslm.model import GPT
from lslm.tokenizers import Tokenizer
from lslm.utils import evaluating

from .base import PlotWidget, plot_label, text_kw, visible

MEAN = "mean"
HIGHLIGHT = "#d62728"


def previous_token_score(weights: torch.Tensor) -> float:
    """Mean attention weight from each token to the one just before it (1.0: a previous-token head).

    ``weights`` is one (T, T) attention matrix, rows = queries. Token 0 has no previous
    token, so the mean runs over the T - 1 entries just below the diagonal.
    """
    if weights.dim() != 2 or weights.size(0) != weights.size(1):
        raise LslmError(
            f"previous_token_score needs a square (T, T) matrix, not {tuple(weights.shape)}"
        )
    if weights.size(0) < 2:
        raise LslmError("a previous-token score needs at least 2 tokens: use a longer text")
    return float(torch.diagonal(weights, offset=-1).float().mean())


class AttentionExplorer(PlotWidget):
    """Attention weights of a GPT on one text, as a heatmap or as lines from queries to keys.

    The model runs once (eval mode, no gradients); the weights are kept, so moving a
    control only redraws. Texts longer than the model's block_size are cut to its
    first block_size tokens.
    """

    widget_name = "attention-explorer"
    has_output = True
    dpi = 90

    def __init__(self, model: GPT, tokenizer: Tokenizer, text: str) -> None:
        super().__init__()
        if not isinstance(text, str) or not text:
            raise LslmError(
                "give AttentionExplorer some text to look at, e.g. 'The cat sat on the mat.'"
            )
        check_vocab(model.config.vocab_size, tokenizer.vocab_size, "the model")
        ids = tokenizer.encode(text)
        if not ids:
            raise LslmError("the text encodes to no tokens: give some text")
        block = model.config.block_size
        if len(ids) > block:
            self._fixed_notes.append(
                f"the text has {len(ids)} tokens; showing the first {block} "
                "(the model's block_size)"
            )
            ids = ids[:block]
        self.ids: list[int] = ids
        self.pieces: list[str] = [tokenizer.id_to_piece(i) for i in ids]
        self._attention = _run_attention(model, ids)  # one (heads, T, T) tensor per layer
        self.n_layer = len(self._attention)
        self.n_head = self._attention[0].size(0)
        t = len(ids)

        self._add_control(
            "layer", widgets.Dropdown(options=[(str(i), i) for i in range(self.n_layer)], value=0)
        )
        heads = [(str(h), h) for h in range(self.n_head)] + [("mean of heads", MEAN)]
        self._add_control("head", widgets.Dropdown(options=heads, value=0))
        self._add_control(
            "query",
            widgets.Dropdown(options=[(f"{i}: {visible(p)}", i) for i, p in enumerate(self.pieces)],
                             value=t - 1),  # the last token sees the whole text: most to look at
            "query token",
        )
        self._add_control("view", widgets.ToggleButtons(options=["heatmap", "lines"]))
        self._set_children([self.layer, self.head, self.query], self.view)
        self.redraw()

    # ----- numbers for notebooks -------------------------------------------------------
    def weights(self, layer: int, head: int | str) -> torch.Tensor:
        """The (T, T) attention weights of ``layer`` and ``head`` (``"mean"``: head average)."""
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < self.n_layer:
            raise LslmError(
                f"layer must be a whole number from 0 to {self.n_layer - 1}, got {layer!r}"
            )
        per_head = self._attention[layer]
        if head == MEAN or head == "mean of heads":
            return per_head.mean(dim=0)
        if isinstance(head, bool) or not isinstance(head, int) or not 0 <= head < self.n_head:
            raise LslmError(
                f"head must be a whole number from 0 to {self.n_head - 1} or 'mean', got {head!r}"
            )
        return per_head[head].clone()

    def previous_token_score(self, layer: int, head: int | str) -> float:
        """How much each token attends to the one just before it, on average (0..1)."""
        return previous_token_score(self.weights(layer, head))

    def find_heads(
        self, score_fn: Callable[[torch.Tensor], float] | None = None
    ) -> list[tuple[int, int, float]]:
        """Every (layer, head, score), best first; ``score_fn`` maps a (T, T) matrix to a number.

        The default score is ``previous_token_score``: the top entry is the most
        previous-token-like head.
        """
        score_fn = score_fn or previous_token_score
        found = [
            (layer, head, float(score_fn(self._attention[layer][head].clone())))
            for layer in range(self.n_layer)
            for head in range(self.n_head)
        ]
        return sorted(found, key=lambda item: item[2], reverse=True)

    # ----- drawing ---------------------------------------------------------------------
    def prepare(self) -> dict[str, Any]:
        layer, head, query, view = (
            self.layer.value, self.head.value, self.query.value, self.view.value
        )
        if not 0 <= query < len(self.ids):
            raise LslmError(f"query must be a token position from 0 to {len(self.ids) - 1}")
        w = self.weights(layer, head)
        score = previous_token_score(w) if len(self.ids) > 1 else None
        return {"layer": layer, "head": head, "query": query, "view": view,
                "w": w.numpy(), "score": score}

    def figure_size(self) -> tuple[float, float]:
        t = len(self.ids)
        if self.frame["view"] == "lines":
            return (5.5, float(np.clip(0.17 * t + 1.4, 3.0, 12.0)))
        return (7.5, 8.0)

    def draw(self, fig: Figure) -> None:
        if self.frame["view"] == "lines":
            self._draw_lines(fig)
        else:
            self._draw_heatmap(fig)

    def _head_label(self) -> str:
        head = self.frame["head"]
        return f"mean of {self.n_head} heads" if head == MEAN else f"head {head}"

    def _draw_heatmap(self, fig: Figure) -> None:
        f = self.frame
        w, q, t = f["w"], f["query"], len(self.ids)
        labels = [plot_label(p, 10) for p in self.pieces]
        size = float(np.clip(12 - t / 8, 6, 11))
        ax, bar_ax = fig.subplots(2, 1, height_ratios=[3, 1.1])

        # Future keys are masked out by the causal mask: grey, not "weight 0" blue.
        future = np.triu(np.ones((t, t), dtype=bool), k=1)
        shown = np.ma.masked_where(future, w)
        from matplotlib import colormaps

        cmap = colormaps["Blues"].with_extremes(bad="#e6e6e6")
        im = ax.imshow(shown, cmap=cmap, vmin=0.0, vmax=max(float(w.max()), 1e-6),
                       interpolation="nearest", aspect="auto")
        ax.add_patch(Rectangle((-0.5, q - 0.5), t, 1, fill=False, edgecolor=HIGHLIGHT, lw=2))
        ax.set_xticks(range(t), labels, rotation=90, fontsize=size, **text_kw())
        ax.set_yticks(range(t), labels, fontsize=size, **text_kw())
        ax.get_yticklabels()[q].set_color(HIGHLIGHT)
        ax.set_xlabel("key: the token looked at")
        ax.set_ylabel("query: the token looking")
        ax.set_title(
            f"layer {f['layer']}, {self._head_label()}: each row sums to 1 (grey: future, masked)",
            fontsize=10,
        )
        fig.colorbar(im, ax=ax, shrink=0.8, label="attention weight")

        row = w[q]
        colours = [HIGHLIGHT if j <= q else "#cccccc" for j in range(t)]
        bar_ax.bar(range(t), row, color=colours)
        bar_ax.set_xlim(-0.5, t - 0.5)
        bar_ax.set_ylim(0, max(float(row.max()) * 1.15, 0.05))
        bar_ax.set_xticks(range(t), labels, rotation=90, fontsize=size, **text_kw())
        bar_ax.set_ylabel("weight")
        bar_ax.set_title(
            f"query {q} “{plot_label(self.pieces[q])}”: where its attention goes",
            fontsize=10, **text_kw(),
        )

    def _draw_lines(self, fig: Figure) -> None:
        f = self.frame
        w, q, t = f["w"], f["query"], len(self.ids)
        ax = fig.add_subplot()
        size = float(np.clip(11 - t / 8, 6, 10))
        for i, piece in enumerate(self.pieces):
            colour = HIGHLIGHT if i == q else "black"
            weight = "bold" if i == q else "normal"
            ax.text(-0.02, i, plot_label(piece), ha="right", va="center", fontsize=size,
                    color=colour, fontweight=weight, **text_kw())
            ax.text(1.02, i, plot_label(piece), ha="left", va="center", fontsize=size,
                    **text_kw())
        # Every query -> key line in grey, the chosen query's lines on top in colour;
        # width and opacity both grow with the weight.
        qi, kj = np.tril_indices(t)
        weight = w[qi, kj]
        keep = (weight > 0.01) & (qi != q)
        segments = [((0.0, i), (1.0, j)) for i, j in zip(qi[keep], kj[keep])]
        rgba = np.zeros((len(segments), 4))
        rgba[:, :3] = 0.45
        rgba[:, 3] = 0.08 + 0.5 * weight[keep]
        ax.add_collection(LineCollection(segments, colors=rgba, linewidths=0.3 + 3 * weight[keep]))
        row = w[q, : q + 1]
        mine = [((0.0, q), (1.0, j)) for j in range(q + 1)]
        colours = np.tile(np.array([0.84, 0.15, 0.16, 0.0]), (q + 1, 1))
        colours[:, 3] = 0.25 + 0.75 * row / max(float(row.max()), 1e-6)
        ax.add_collection(LineCollection(mine, colors=colours, linewidths=0.5 + 7 * row))
        ax.set_xlim(-0.45, 1.45)
        ax.set_ylim(t - 0.5, -1.8)
        ax.text(-0.02, -1.0, "queries", ha="right", va="bottom", fontsize=9, color="#555")
        ax.text(1.02, -1.0, "keys", ha="left", va="bottom", fontsize=9, color="#555")
        ax.axis("off")
        ax.set_title(
            f"layer {f['layer']}, {self._head_label()}\nline width = attention weight, "
            f"query {q} in red",
            fontsize=10,
        )

    def draw_html(self) -> str:
        f = self.frame
        if f["score"] is None:
            return ""
        return (
            f'<div class="lslm-summary">layer {f["layer"]}, {self._head_label()}: '
            f"previous-token score {f['score']:.2f} (1.00 would mean every token looks only at "
            "the token just before it)</div>"
        )

    def describe(self) -> str:
        if not self.frame:
            return "<AttentionExplorer>"
        f = self.frame
        return (f"<AttentionExplorer: layer {f['layer']}, {self._head_label()}, "
                f"query {f['query']}, {f['view']} view, {len(self.ids)} tokens>")


def _run_attention(model: GPT, ids: list[int]) -> list[torch.Tensor]:
    """Attention weights of ``model`` on ``ids``: one (heads, T, T) CPU tensor per layer."""
    device = next(model.parameters()).device
    # Eval mode (no dropout): the weights a learner sees are the model's real ones.
    with evaluating(model), torch.no_grad():
        _, attention = model.features(torch.tensor([ids], device=device), return_attention=True)
    return [a[0].detach().float().cpu() for a in attention]
