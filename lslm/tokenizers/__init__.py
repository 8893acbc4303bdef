"""Tokenizers: one interface (``Tokenizer``), three kinds.

* ``"char"``: one token per character (``CharTokenizer``).
* ``"bpe"`` and ``"unigram"``: subword tokenizers trained with sentencepiece
  (``SentencePieceTokenizer``).

    tok = train_tokenizer("bpe", text, vocab_size=1000)
    tok.pieces("The cat sat.")        # ['The', '▁cat', '▁sat', '.'], say
    tok.save("tokenizer.json"); load_tokenizer("tokenizer.json")
"""

from __future__ import annotations

from pathlib import Path

from ..errors import LslmError, shown
from ..files import read_json
from .base import Tokenizer
from .char import CharTokenizer
from .chat import ChatTemplate, ChatTokenizer, check_chat_tokenizer
from .sentencepiece import DEFAULT_VOCAB_SIZE, MAX_TRAIN_CHARS, SentencePieceTokenizer

TOKENIZER_KINDS = ("char", "bpe", "unigram")
# A saved tokenizer is JSON: a char vocabulary, or a base64 sentencepiece model (about 1 MB
# at 50,000 pieces). Anything far larger is not one.
MAX_TOKENIZER_BYTES = 64 * 2**20
MAX_VOCAB_SIZE = 1_000_000  # far beyond any useful subword vocabulary

__all__ = [
    "TOKENIZER_KINDS",
    "CharTokenizer",
    "ChatTemplate",
    "ChatTokenizer",
    "check_chat_tokenizer",
    "SentencePieceTokenizer",
    "Tokenizer",
    "load_tokenizer",
    "tokenizer_from_state",
    "train_tokenizer",
]


def _check_kind(kind: object) -> str:
    if not isinstance(kind, str) or kind not in TOKENIZER_KINDS:
        raise LslmError(f"unknown tokenizer kind {shown(kind)}: use one of {', '.join(TOKENIZER_KINDS)}")
    return kind  # type: ignore[return-value]


def train_tokenizer(kind: str, text: str, vocab_size: int | None = None) -> Tokenizer:
    """Train a tokenizer of ``kind`` on ``text``; ``vocab_size`` is ignored for "char"."""
    kind = _check_kind(kind)
    if not isinstance(text, str):
        raise LslmError(
            f"train_tokenizer needs the training text as one str, got a {type(text).__name__}: "
            "read the file first, e.g. Path('corpus.txt').read_text(encoding='utf-8')"
        )
    if kind == "char":
        return CharTokenizer.train(text)
    # sentencepiece takes a 32-bit size and fails obscurely beyond it (it checks the rest).
    if isinstance(vocab_size, int) and not isinstance(vocab_size, bool) and vocab_size > MAX_VOCAB_SIZE:
        raise LslmError(f"--vocab-size must be at most {MAX_VOCAB_SIZE:,}, got {shown(vocab_size)}")
    try:  # sentencepiece reads UTF-8, which a lone surrogate (from a bad decode) has no form in
        text[:MAX_TRAIN_CHARS].encode("utf-8")
    except UnicodeEncodeError as e:
        raise LslmError(
            f"the training text holds a character that is not valid Unicode (at {e.start}): "
            "decode the file as UTF-8 without errors='surrogateescape'"
        ) from None
    size = DEFAULT_VOCAB_SIZE if vocab_size is None else vocab_size
    return SentencePieceTokenizer.train(text, size, model_type=kind)


def tokenizer_from_state(state: dict) -> Tokenizer:
    """Rebuild a tokenizer from its ``state()`` (as stored in a checkpoint)."""
    if not isinstance(state, dict) or "kind" not in state:
        raise LslmError(
            "this is not a tokenizer state (a dict with a 'kind'): save the tokenizer again"
        )
    if state["kind"] == "chat":
        return ChatTokenizer.from_state(state, tokenizer_from_state(state.get("base")))
    if _check_kind(state["kind"]) == "char":
        return CharTokenizer.from_state(state)
    return SentencePieceTokenizer.from_state(state)


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load a tokenizer written by ``Tokenizer.save``: a regular UTF-8 JSON file of at most
    ``MAX_TOKENIZER_BYTES``."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise LslmError(f"no tokenizer file at {path}: check the path, or train and save one first")
    try:
        state = read_json(path, MAX_TOKENIZER_BYTES, "tokenizer file")
    except LslmError as e:
        raise LslmError(f"cannot read a tokenizer ({e}): give a file made by Tokenizer.save") from None
    return tokenizer_from_state(state)
