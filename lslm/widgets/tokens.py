"""TokenExplorer: type text, see how char, BPE and unigram tokenizers cut it into tokens."""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets

from lslm.errors import LslmError
from lslm.tokenizers import TOKENIZER_KINDS, Tokenizer, train_tokenizer

from .base import PALETTE, PlotWidget, visible

DEFAULT_TEXT = "Attention is all you need. 注意力就是你所需要的。"
# Training text when no corpus is given: enough for a few thousand pieces, trained in
# well under a second for BPE.
DEFAULT_CORPUS_CHARS = 200_000
# Beyond this many tokens the page gets slow to draw; the summary still counts them all.
MAX_SHOWN_TOKENS = 3000


class TokenExplorer(PlotWidget):
    """Text in, coloured token pieces out, for each kind of tokenizer.

    ``tokenizers`` maps a label to a ready tokenizer. Without it, tokenizers are trained
    on ``corpus`` (default: the first 200 KB of the python-docs corpus), one per
    (kind, vocab_size), and kept. Give both to get your tokenizers plus trainable kinds.
    ``vocab_size`` is where the slider starts (a small corpus needs a smaller one).
    """

    widget_name = "token-explorer"
    has_image = False
    has_output = True

    def __init__(
        self,
        tokenizers: dict[str, Tokenizer] | None = None,
        text: str = DEFAULT_TEXT,
        corpus: str | None = None,
        vocab_size: int = 1000,
    ) -> None:
        super().__init__()
        given = dict(tokenizers or {})
        for label, tok in given.items():
            if not isinstance(tok, Tokenizer):
                raise LslmError(
                    f"tokenizers[{label!r}] is a {type(tok).__name__}, not a Tokenizer: "
                    "pass tokenizers made with lslm.tokenizers.train_tokenizer"
                )
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
            raise LslmError(f"vocab_size must be a positive whole number, got {vocab_size!r}")
        if corpus is not None and not (isinstance(corpus, str) and corpus.strip()):
            raise LslmError("corpus must be some text to train the tokenizers on, or None")
        self._given = given
        self._corpus = corpus
        self._trainable = tokenizers is None or corpus is not None
        # Trained tokenizers, and training errors (so an impossible size fails fast again).
        self._cache: dict[tuple[str, int | None], Tokenizer | LslmError] = {}
        options = list(given) + [k for k in TOKENIZER_KINDS if self._trainable and k not in given]
        if not options:
            raise LslmError("no tokenizers to show: pass a dict of tokenizers or a corpus")
        default = "bpe" if "bpe" in options else options[0]

        self._add_control(
            "text", widgets.Textarea(value=text, layout=widgets.Layout(width="100%", height="5em"))
        )
        self._add_control("kind", widgets.Dropdown(options=options, value=default), "tokenizer")
        self._add_control(
            "vocab_size",
            # Released, not dragged: each new size trains a tokenizer.
            widgets.IntSlider(value=vocab_size, min=min(300, vocab_size), max=max(4000, vocab_size),
                              step=100, continuous_update=False),
            "vocab size",
        )
        self._set_children([self.kind, self.vocab_size], self.text)
        self.redraw()

    # ----- tokenizers ------------------------------------------------------------------
    def _corpus_text(self) -> str:
        if self._corpus is None:
            from lslm.data import python_docs_text

            self._corpus = python_docs_text()[:DEFAULT_CORPUS_CHARS]
        return self._corpus

    def _uses_slider(self, kind: str) -> bool:
        return kind not in self._given and kind != "char"

    def _sync_controls(self) -> None:
        self.vocab_size.disabled = not self._uses_slider(self.kind.value)

    def current_tokenizer(self) -> Tokenizer:
        """The tokenizer the controls select (trained now if needed); LslmError if impossible."""
        with self._lock:
            return self._tokenizer(self.kind.value, self.vocab_size.value)

    def _tokenizer(self, kind: str, vocab_size: int) -> Tokenizer:
        if kind in self._given:
            return self._given[kind]
        key = (kind, vocab_size if kind != "char" else None)
        if key not in self._cache:
            try:
                self._cache[key] = train_tokenizer(kind, self._corpus_text(), vocab_size)
            except LslmError as e:
                # The library speaks to CLI users ("--vocab-size"); here it is the slider.
                self._cache[key] = LslmError(str(e).replace("--vocab-size", "vocab size"))
        found = self._cache[key]
        if isinstance(found, LslmError):
            # A fresh exception: re-raising the stored one would grow its traceback each time.
            raise LslmError(str(found))
        return found

    # ----- drawing ---------------------------------------------------------------------
    def prepare(self) -> dict[str, Any]:
        kind, vocab_size, text = self.kind.value, self.vocab_size.value, self.text.value
        tok = self._tokenizer(kind, vocab_size)
        ids = tok.encode(text)
        pieces = [tok.id_to_piece(i) for i in ids]
        if len(ids) > MAX_SHOWN_TOKENS:
            self.note(f"showing the first {MAX_SHOWN_TOKENS:,} of {len(ids):,} tokens")
        return {"kind": kind, "tokenizer": tok, "text": text, "tokens": list(zip(pieces, ids))}

    def draw_html(self) -> str:
        f = self.frame
        n_chars, n_tokens = len(f["text"]), len(f["tokens"])
        ratio = f"{n_chars / n_tokens:.2f}" if n_tokens else "–"
        summary = (
            f"{n_chars:,} characters → {n_tokens:,} tokens ({ratio} chars/token) · "
            f"{html.escape(f['kind'])} tokenizer, vocabulary of {f['tokenizer'].vocab_size:,}"
        )
        spans = [_token_span(k, piece, i) for k, (piece, i) in
                 enumerate(f["tokens"][:MAX_SHOWN_TOKENS])]
        return (
            f'<div class="lslm-summary" style="margin:4px 0">{summary}</div>'
            '<div class="lslm-tokens" style="line-height:1.1">' + "".join(spans) + "</div>"
        )

    @property
    def tokens(self) -> list[tuple[str, int]]:
        """The (piece, id) pairs shown now; pieces as the tokenizer names them (``id_to_piece``)."""
        with self._lock:
            return list(self.frame["tokens"]) if self.frame else []

    def describe(self) -> str:
        if not self.frame:
            return "<TokenExplorer>"
        return f"<TokenExplorer: {self.frame['kind']}, {len(self.frame['tokens'])} tokens>"


def _token_span(position: int, piece: str, token_id: int) -> str:
    """One token: its piece on a soft colour, its id underneath; a newline also breaks the line."""
    shown = html.escape(visible(piece), quote=False)
    # The space marker is dimmed: it is a real character of the token, but a quiet one.
    shown = shown.replace("▁", '<span style="color:#999">▁</span>')
    hint = html.escape(f"position {position}, id {token_id}: {piece!r}", quote=True)
    colour = PALETTE[position % len(PALETTE)]
    span = (
        f'<span class="lslm-token" data-id="{token_id}" title="{hint}" '
        f'style="display:inline-block;background:{colour};border-radius:4px;margin:2px 1px;'
        'padding:1px 3px;text-align:center;vertical-align:top">'
        f'<span style="font-family:monospace;white-space:pre">{shown}</span><br>'
        f'<span style="font-size:70%;color:#666">{token_id}</span></span>'
    )
    return span + ("<br>" if piece.endswith("\n") else "")
