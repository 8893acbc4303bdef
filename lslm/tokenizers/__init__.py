"""Tokenizers: one interface (``Tokenizer``), three kinds.

* ``"char"``: one token per character (``CharTokenizer``).
* ``"bpe"`` and ``"unigram"``: subword tokenizers trained with sentencepiece
  (``SentencePieceTokenizer``).

    tok = train_tokenizer("bpe", text, vocab_size=1000)
    tok.pieces("The cat sat.")        # ['The', '▁cat', '▁sat', '.'], say
    tok.save("tokenizer.json"); load_tokenizer("tokenizer.json")
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import LslmError
from .base import Tokenizer
from .char import CharTokenizer
from .sentencepiece import DEFAULT_VOCAB_SIZE, SentencePieceTokenizer

TOKENIZER_KINDS = ("char", "bpe", "unigram")

__all__ = [
    "TOKENIZER_KINDS",
    "CharTokenizer",
    "SentencePieceTokenizer",
    "Tokenizer",
    "load_tokenizer",
    "tokenizer_from_state",
    "train_tokenizer",
]


def _check_kind(kind: object) -> str:
    if kind not in TOKENIZER_KINDS:
        raise LslmError(f"unknown tokenizer kind {kind!r}: use one of {', '.join(TOKENIZER_KINDS)}")
    return kind  # type: ignore[return-value]


def train_tokenizer(kind: str, text: str, vocab_size: int | None = None) -> Tokenizer:
    """Train a tokenizer of ``kind`` on ``text``; ``vocab_size`` is ignored for "char"."""
    if _check_kind(kind) == "char":
        return CharTokenizer.train(text)
    size = DEFAULT_VOCAB_SIZE if vocab_size is None else vocab_size
    return SentencePieceTokenizer.train(text, size, model_type=kind)


def tokenizer_from_state(state: dict) -> Tokenizer:
    """Rebuild a tokenizer from its ``state()`` (as stored in a checkpoint)."""
    if not isinstance(state, dict) or "kind" not in state:
        raise LslmError(
            "this is not a tokenizer state (a dict with a 'kind'): save the tokenizer again"
        )
    if _check_kind(state["kind"]) == "char":
        return CharTokenizer.from_state(state)
    return SentencePieceTokenizer.from_state(state)


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load a tokenizer written by ``Tokenizer.save``."""
    path = Path(path)
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LslmError(
            f"no tokenizer file at {path}: check the path, or train and save one first"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        reason = " ".join(str(e).split())
        raise LslmError(
            f"cannot read a tokenizer from {path} ({reason}): give a file made by Tokenizer.save"
        ) from None
    return tokenizer_from_state(state)
