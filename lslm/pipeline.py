"""The source article's pipeline in one place: text -> tokenizer -> token tensors.

```mermaid
graph TD
A[Data preprocessing] --> B[Model building]
B --> C[Model training]
C --> D[Model evaluation]
```
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from lslm.data import EMBEDDED, Splits, encode_splits, load_corpus, split_text
from lslm.errors import LslmError
from lslm.tokenizers import Tokenizer, train_tokenizer


@dataclass
class PreparedData:
    """A corpus split three ways, a tokenizer, and each split as a tensor of token ids."""

    text: str
    splits: Splits
    tokenizer: Tokenizer
    tokens: dict[str, torch.Tensor]


def prepare_data(
    corpus: str | Path | None = None,
    tokenizer: str | Tokenizer = "char",
    vocab_size: int | None = None,
    val_frac: float = 0.05,
    test_frac: float = 0.05,
) -> PreparedData:
    """Load, split and tokenize a corpus.

    A new char tokenizer takes its alphabet from the whole corpus, so every split can be
    encoded; a sentencepiece tokenizer learns only from the train split (its byte
    fallback encodes anything it has not seen).
    """
    text = load_corpus(corpus)
    splits = split_text(text, val_frac, test_frac)
    if isinstance(tokenizer, str):
        source = text if tokenizer == "char" else splits.train
        tokenizer = train_tokenizer(tokenizer, source, vocab_size)
        return PreparedData(text, splits, tokenizer, encode_splits(splits, tokenizer))
    try:
        tokens = encode_splits(splits, tokenizer)
    except LslmError:
        # A checkpoint names its corpus, and that path may be anyone's file: say what is
        # wrong without quoting the characters, which would echo the file's contents.
        raise LslmError(
            f"the corpus {corpus or EMBEDDED} holds characters this {tokenizer.kind} tokenizer "
            "never saw, so it is not the text the model was trained on: give that corpus"
        ) from None
    return PreparedData(text, splits, tokenizer, tokens)
