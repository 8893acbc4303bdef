"""BPE written out slowly, to teach its one rule (Sennrich et al. 2016, "Neural Machine
Translation of Rare Words with Subword Units"): count every pair of neighbouring pieces,
merge the most frequent pair into one new piece, repeat.

This is the reference that notebook 01's hand-written version and its coding exercises are
checked against; ``tests/test_bpe.py`` checks it against sentencepiece's BPE. Real work uses
``train_tokenizer("bpe", ...)`` (sentencepiece), which is fast and handles any text.

    words = Counter({("▁", "t", "h", "e"): 5, ("▁", "t", "o"): 2})
    merges = learn_merges(words, 3)          # [("▁", "t"), ("▁t", "h"), ("▁th", "e")]
    encode_word("▁the", merges)              # ["▁the"]
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from ..errors import LslmError, shown

Pair = tuple[str, str]


def count_pairs(words: Counter) -> Counter:
    """How often each pair of neighbouring pieces occurs, over all words (a word is a tuple of
    pieces, counted as often as it occurs)."""
    pairs: Counter = Counter()
    for word, n in words.items():
        for left, right in zip(word, word[1:]):
            pairs[left, right] += n
    return pairs


def merge_pair(word: Sequence[str], pair: Pair) -> tuple[str, ...]:
    """``word`` with every occurrence of ``pair``'s two pieces, side by side, made one piece.

    Left to right, without overlap: merging ("a", "a") in ("a", "a", "a") gives ("aa", "a").
    """
    out: list[str] = []
    i = 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == tuple(pair):
            out.append(word[i] + word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def merge_words(words: Counter, pair: Pair) -> Counter:
    """Every word of ``words`` with ``pair`` merged (words that become equal add their counts)."""
    merged: Counter = Counter()
    for word, n in words.items():
        merged[merge_pair(word, pair)] += n
    return merged


def learn_merges(words: Counter, n_merges: int) -> list[Pair]:
    """The first ``n_merges`` merges BPE learns from ``words`` (fewer if every word becomes one
    piece first). Ties go to the pair seen first, as ``Counter.most_common`` breaks them."""
    if isinstance(n_merges, bool) or not isinstance(n_merges, int) or n_merges < 0:
        raise LslmError(f"n_merges must be a whole number of at least 0, got {shown(n_merges)}")
    merges: list[Pair] = []
    for _ in range(n_merges):
        pairs = count_pairs(words)
        if not pairs:
            break
        pair = pairs.most_common(1)[0][0]
        words = merge_words(words, pair)
        merges.append(pair)
    return merges


def encode_word(word: str | Sequence[str], merges: Sequence[Pair]) -> list[str]:
    """Encode one word (a string, or its pieces) by replaying ``merges`` in the order they
    were learned: a new text is cut the way the training text was."""
    pieces: tuple[str, ...] = tuple(word)
    for pair in merges:
        pieces = merge_pair(pieces, pair)
    return list(pieces)
