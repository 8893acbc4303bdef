"""AttentionExplorer: which earlier tokens does each token look at, per layer and head?"""

from __future__ import annotations

from typing import Any, Callable

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.figure import Figure

from lslm.checkpoint import check_vocab
from lslm.devices import model_device
from lslm.errors import LslmError
from lslm.model import GPT
from lslm.tokenizers import Tokenizer
from lslm.utils import evaluating

from .attention_plots import AttentionPlots
from .base import PlotWidget, visible

MEAN = "mean"


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

    The model runs once (eval mode, no gradients); the weights of every layer and head
    are kept, and so is each view's Figure: moving a control only changes what is drawn
    (see ``PlotWidget``). Texts longer than the model's block_size are cut to its first
    block_size tokens.

    Up to 24 tokens, every token is labelled; longer texts get every k-th position (at
    most 16 labels, written level) and the text itself beside the axes, in chunks. The
    heatmap's colours run from 0 to the largest weight of the chosen head. The lines view
    draws, for each query, only its strongest links (half its weight, at most 3), and the
    chosen query's up to 90% of its weight.
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
        self._plots = AttentionPlots(self.pieces)

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

    def figure_key(self) -> str:
        # One kept Figure per view: moving layer, head or query only changes its data.
        return self.frame["view"]

    def draw(self, fig: Figure) -> dict[str, Any]:
        return self._plots.draw(fig, self.frame, self._head_label())

    def update(self, fig: Figure, handles: dict[str, Any]) -> None:
        self._plots.update(handles, self.frame, self._head_label())

    def _head_label(self) -> str:
        head = self.frame["head"]
        return f"mean of {self.n_head} heads" if head == MEAN else f"head {head}"

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
    device = model_device(model)
    # Eval mode (no dropout): the weights a learner sees are the model's real ones.
    with evaluating(model), torch.no_grad():
        _, attention = model.features(torch.tensor([ids], device=device), return_attention=True)
    return [a[0].detach().float().cpu() for a in attention]
