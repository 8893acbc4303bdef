"""The simplest tokenizer: one token per character."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice

from ..errors import LslmError
from .base import Tokenizer


class CharTokenizer(Tokenizer):
    """Every distinct character of the training text gets an id, in sorted order."""

    kind = "char"

    def __init__(self, chars: Sequence[str]):
        chars = list(chars)
        if not chars or not all(isinstance(c, str) and len(c) == 1 for c in chars):
            raise LslmError(
                "a char tokenizer needs a non-empty list of single characters: retrain it"
            )
        if len(set(chars)) != len(chars):
            raise LslmError("a char tokenizer's characters must be distinct: retrain it")
        self.chars = chars
        self._ids = {c: i for i, c in enumerate(chars)}

    @classmethod
    def train(cls, text: str) -> CharTokenizer:
        """Build the vocabulary from the characters that occur in ``text``."""
        if not isinstance(text, str):
            raise LslmError(f"a char tokenizer trains on a str, got a {type(text).__name__}: "
                            "read the file's text first")
        if not text:
            raise LslmError("cannot train a tokenizer on empty text: give it some text")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise LslmError(f"encode takes a str, got a {type(text).__name__}")
        try:
            return [self._ids[c] for c in text]
        except KeyError:
            pass
        unknown = list(islice(dict.fromkeys(c for c in text if c not in self._ids), 5))
        shown = ", ".join(repr(c) for c in unknown)
        raise LslmError(
            f"this char tokenizer never saw {shown} in training: use only characters from "
            "the training corpus, or train a bpe/unigram tokenizer"
        )

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.chars[i] for i in self._check_ids(ids))

    def id_to_piece(self, i: int) -> str:
        return self.chars[self._check_ids([i])[0]]

    def state(self) -> dict:
        return {"kind": self.kind, "chars": list(self.chars)}

    @classmethod
    def from_state(cls, state: dict) -> CharTokenizer:
        """Rebuild from ``state()``."""
        chars = state.get("chars")
        if not isinstance(chars, list):
            raise LslmError("a char tokenizer state needs a 'chars' list: save the tokenizer again")
        return cls(chars)
