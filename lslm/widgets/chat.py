"""ChatWidget: ask the assistant something, read its answer, see where it looked to write it.

The picture is a heatmap: one row per answer token, one column per prompt token
(``<|user|>``, the instruction, ``<|assistant|>``). A row holds the attention of the
position that *wrote* that token (the position just before it), in the chosen layer,
averaged over heads or for one head. Rows need not add up to 1: the rest of each row's
attention goes to the answer tokens written before it.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.figure import Figure

from lslm.assistant import answer_text, greedy_answer
from lslm.checkpoint import check_vocab
from lslm.devices import model_device
from lslm.errors import LslmError
from lslm.model import GPT
from lslm.tokenizers import ChatTokenizer
from lslm.utils import evaluating

from .base import PlotWidget, plot_label, text_kw

MEAN = "mean"
X_LABELS = 12  # prompt tokens named on the x-axis at most: the most attended ones
Y_LABELS = 40  # answer tokens named on the y-axis before only every k-th one is
DEFAULT_INSTRUCTION = "Tom had a red kite. Where did Tom go?"
_EMPTY = "type an instruction (a question or a request) and press Send"


class ChatWidget(PlotWidget):
    """An instruction box, a Send button, the assistant's answer and its attention on the prompt.

    ``ask(instruction)`` (or Send) answers greedily up to the end marker, the way
    ``lslm.assistant.reply`` does, and keeps every layer's and head's attention from the
    answer to the prompt, so the layer and head selectors redraw without running the
    model again. A bad instruction (empty, too long for the model's block_size) is
    reported in the message line; the text box, the last answer and picture stay.
    """

    widget_name = "chat-widget"
    figsize = (7.5, 4.5)
    dpi = 90

    def __init__(self, model: GPT, tokenizer: ChatTokenizer, instruction: str = DEFAULT_INSTRUCTION,
                 max_new_tokens: int = 48) -> None:
        super().__init__()
        if not isinstance(tokenizer, ChatTokenizer):
            raise LslmError(
                f"ChatWidget needs the assistant's ChatTokenizer, got a {type(tokenizer).__name__}: "
                "pass the tokenizer from lslm.assistant.chat_model or assistant_lm"
            )
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or not (
            1 <= max_new_tokens <= 1000
        ):
            raise LslmError(f"max_new_tokens must be from 1 to 1000, got {max_new_tokens!r}")
        if not isinstance(instruction, str):
            raise LslmError(f"instruction must be a str, got a {type(instruction).__name__}")
        check_vocab(model.config.vocab_size, tokenizer.vocab_size, "the model")
        self.model = model
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.ask_count = 0
        self.last_answer: str | None = None
        # The last successful ask: its ids and attention (see _run); what prepare() reads.
        self._result: dict[str, Any] | None = None
        n_layer, n_head = model.config.n_layer, model.config.n_head

        self._add_control(
            "instruction",
            widgets.Textarea(value=instruction, rows=3, layout=widgets.Layout(width="95%")),
            redraw=False,  # typing must not run the model: Send does
        )
        # The last layer by default: it is closest to the choice of the next token.
        self._add_control(
            "layer", widgets.Dropdown(options=[(str(i), i) for i in range(n_layer)], value=n_layer - 1)
        )
        heads = [("mean of heads", MEAN)] + [(str(h), h) for h in range(n_head)]
        self._add_control("head", widgets.Dropdown(options=heads, value=MEAN))
        self._add_control("send", widgets.Button(button_style="primary", icon="paper-plane"), "Send",
                          redraw=False)
        self.send.on_click(lambda _button: self.ask(self.instruction.value))
        self.answer = widgets.HTML(value="")
        self.answer.add_class("lslm-answer")
        self._set_children(self.instruction, [self.send, self.layer, self.head], self.answer)
        if instruction.strip():
            self.ask(instruction)
        else:
            self._show_error(_EMPTY)

    # ----- asking ----------------------------------------------------------------------
    def ask(self, instruction: str) -> str | None:
        """Answer ``instruction``; show the answer and its attention picture, and return it.

        Returns None (and says why in the message line) for a bad instruction; the text
        box, the previous answer and picture are left as they were.
        """
        with self._lock:
            self.send.disabled = True  # one question at a time: a second click would queue up
            try:
                try:
                    result = self._run(instruction)
                except LslmError as e:
                    self._show_error(str(e))
                    return None
                except Exception as e:
                    # A bug, not a bad instruction: say so in the widget too (a click's
                    # traceback only reaches JupyterLab's log console), as redraw() does.
                    self._show_error(
                        f"unexpected {type(e).__name__}: {' '.join(str(e).split())[:200]} "
                        "(a bug in lslm: please report it with the instruction you used)"
                    )
                    raise
                previous, self._result = self._result, result
                drawn = False
                try:
                    drawn = self.redraw()
                finally:
                    if not drawn:  # the picture on screen still belongs to the previous answer
                        self._result = previous
                if not drawn:
                    return None
            finally:
                self.send.disabled = False
            if self.instruction.value != instruction:  # asked from code: show what was asked
                self.instruction.value = instruction
            self.ask_count += 1
            self.last_answer = result["answer"]
            return result["answer"]

    def _run(self, instruction: str) -> dict[str, Any]:
        """The greedy answer's ids and text, and the attention from its tokens to the prompt."""
        if not isinstance(instruction, str):
            raise LslmError(f"the instruction must be text (a str), got a {type(instruction).__name__}")
        if not instruction.strip():
            raise LslmError(_EMPTY)
        # The same prompt and decoding as lslm.assistant.reply; the end marker is kept in
        # ``written`` (the picture shows where the model looked when it decided to stop).
        prompt, written, stopped = greedy_answer(self.model, self.tokenizer, instruction, self.max_new_tokens)
        text = answer_text(self.tokenizer, written)
        device = model_device(self.model)
        # Token k of the answer was chosen at position len(prompt) + k - 1: its query row.
        seq = prompt + written[:-1]
        with evaluating(self.model), torch.no_grad():
            _, attention = self.model.features(torch.tensor([seq], device=device),
                                               return_attention=True)
        p = len(prompt)
        rows = slice(p - 1, p - 1 + len(written))
        # (n_layer, n_head, answer tokens, prompt tokens), on the CPU for drawing.
        weights = torch.stack([a[0, :, rows, :p].float().cpu() for a in attention])
        return {
            "instruction": instruction, "prompt": prompt, "written": written,
            "answer": text, "weights": weights, "stopped": stopped,
            "budget": min(self.max_new_tokens, self.model.config.block_size - len(prompt)),
        }

    # ----- drawing ---------------------------------------------------------------------
    def prepare(self) -> dict[str, Any]:
        r = self._result
        if r is None:
            raise LslmError(_EMPTY)
        layer, head = self.layer.value, self.head.value
        per_head = r["weights"][layer]
        w = per_head.mean(dim=0) if head == MEAN else per_head[head]
        if not r["stopped"]:
            cause = ("max_new_tokens" if r["budget"] == self.max_new_tokens
                     else "the room left in the model's block_size")
            self.note(f"no {self.tokenizer.template.end} within {r['budget']} tokens ({cause}): "
                      "the answer is cut there")
        return {"layer": layer, "head": head, "w": w.numpy(), "result": r}

    def figure_size(self) -> tuple[float, float]:
        rows = self.frame["w"].shape[0]
        return (self.figsize[0], float(np.clip(0.13 * rows + 2.2, 3.0, 8.5)))

    def draw(self, fig: Figure) -> None:
        f, r = self.frame, self.frame["result"]
        w = f["w"]
        n_rows, n_cols = w.shape
        piece = self.tokenizer.id_to_piece
        ax = fig.add_subplot()
        im = ax.imshow(w, aspect="auto", cmap="Blues", vmin=0.0, vmax=max(float(w.max()), 1e-6),
                       interpolation="nearest")
        fig.colorbar(im, ax=ax, shrink=0.8, pad=0.02, label="attention weight")
        kw = text_kw()
        # x: only the most attended prompt tokens are named, in text order, so a long
        # instruction stays readable; the others keep a bare tick.
        named = sorted(np.argsort(-w.sum(axis=0), kind="stable")[:X_LABELS].tolist())
        ax.set_xticks(range(n_cols), minor=True)
        ax.tick_params(axis="x", which="minor", length=2)
        ax.set_xticks(named, [plot_label(piece(r["prompt"][c]), 14) for c in named],
                      rotation=90, fontsize=7, **kw)
        stride = 1 if n_rows <= Y_LABELS else -(-n_rows // Y_LABELS)
        shown_rows = list(range(0, n_rows, stride))
        ax.set_yticks(shown_rows, [plot_label(piece(r["written"][k]), 14) for k in shown_rows],
                      fontsize=7, **kw)
        ax.set_xlabel(f"prompt tokens ({min(n_cols, X_LABELS)} most attended of {n_cols} named)",
                      fontsize=8)
        ax.set_ylabel("answer token being written", fontsize=8)
        share = float(w.sum(axis=1).mean()) if n_rows else 0.0
        ax.set_title(
            f"Where the assistant looks in the prompt while answering\nlayer {f['layer']}, "
            f"{self._head_label()} · {share:.0%} of its attention is on the prompt",
            fontsize=9,
        )

    def _head_label(self) -> str:
        head = self.frame["head"]
        return f"mean of {self.model.config.n_head} heads" if head == MEAN else f"head {head}"

    def _on_success(self) -> None:
        # Set here, under the lock and only once the picture is committed, so the answer
        # shown and the picture always belong to the same question.
        r = self.frame["result"]
        shown = html.escape(r["answer"], quote=False) or '<i style="color:#888">(an empty answer)</i>'
        self.answer.value = (
            '<div class="lslm-answer-text" style="white-space:pre-wrap;border:1px solid #ddd;'
            'border-radius:4px;padding:6px;margin:4px 0">'
            f'<b style="color:#555">assistant:</b> {shown}</div>'
        )

    def describe(self) -> str:
        if not self.frame:
            return "<ChatWidget>"
        answer = self.frame["result"]["answer"]
        answer = answer if len(answer) <= 60 else answer[:59] + "…"
        return (f"<ChatWidget: answer {answer!r}; attention of layer {self.frame['layer']}, "
                f"{self._head_label()}>")

