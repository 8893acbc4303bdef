"""The interface every tokenizer in lslm follows: text -> integer ids -> text."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

from ..errors import LslmError
from ..utils import atomic_write


class Tokenizer(ABC):
    """Turns text into a list of token ids and back again.

    Subclasses set ``kind`` ("char", "bpe" or "unigram") and implement the abstract
    methods. ``state()`` is plain JSON data, so a checkpoint can store a tokenizer
    without pickle; ``lslm.tokenizers.tokenizer_from_state`` rebuilds it.
    """

    kind: str

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """How many different token ids there are (ids run from 0 to vocab_size - 1)."""

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """The token ids for ``text``."""

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """The text for a sequence of token ids; ``decode(encode(t)) == t``."""

    @abstractmethod
    def id_to_piece(self, i: int) -> str:
        """The piece of text (as a learner should see it) that token id ``i`` stands for."""

    @abstractmethod
    def state(self) -> dict:
        """Everything needed to rebuild this tokenizer, as JSON-serialisable data."""

    def pieces(self, text: str) -> list[str]:
        """The tokens of ``text`` as strings, one per id of ``encode(text)``."""
        return [self.id_to_piece(i) for i in self.encode(text)]

    def save(self, path: str | Path) -> Path:
        """Write ``state()`` as JSON to ``path``; a crash never leaves a half-written file."""
        text = json.dumps(self.state())  # before the file is opened: a bad state writes nothing
        return atomic_write(path, lambda f: f.write(text.encode("utf-8")))

    def _check_ids(self, ids: Sequence[int]) -> list[int]:
        """``ids`` as a list of ints (tensors and numpy arrays welcome), each in range."""
        try:
            ids = [int(i) for i in ids]
        except (TypeError, ValueError):
            raise LslmError(
                "decode takes a flat sequence of integer token ids, e.g. [5, 17, 3]"
            ) from None
        n = self.vocab_size
        for i in ids:
            if not 0 <= i < n:
                raise LslmError(
                    f"token id {i} is outside this tokenizer's vocabulary (0..{n - 1}): "
                    "decode only ids made with the same tokenizer"
                )
        return ids

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, vocab_size={self.vocab_size})"
