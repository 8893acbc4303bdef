"""lslm's written-out BPE (lslm.tokenizers.bpe): its merge rule on small cases, and the same
merges and compression as sentencepiece's BPE on a real text."""

import re
from collections import Counter

import pytest

from lslm.errors import LslmError
from lslm.tokenizers import train_tokenizer
from lslm.tokenizers.bpe import count_pairs, encode_word, learn_merges, merge_pair, merge_words

SPACE = "\u2581"


def test_a_merge_goes_left_to_right_without_overlap():
    assert merge_pair(("a", "a", "a"), ("a", "a")) == ("aa", "a")
    assert merge_pair(("a", "a", "a", "a"), ("a", "a")) == ("aa", "aa")
    assert merge_pair(("t", "h", "e", "t", "h"), ("t", "h")) == ("th", "e", "th")
    assert merge_pair(("▁t", "h"), ("▁", "t")) == ("▁t", "h")  # whole pieces, not letters
    assert merge_pair((), ("a", "b")) == ()


def test_words_that_become_equal_add_their_counts():
    words = Counter({("a", "b"): 2, ("ab",): 3})
    assert merge_words(words, ("a", "b")) == Counter({("ab",): 5})
    assert count_pairs(Counter({("a", "b", "a", "b"): 2})) == Counter({("a", "b"): 4, ("b", "a"): 2})


def test_encoding_replays_the_merges_in_order():
    merges = [("▁", "t"), ("▁t", "h"), ("▁th", "e")]
    assert encode_word("▁the", merges) == ["▁the"]
    assert encode_word("▁then", merges) == ["▁the", "n"]
    assert encode_word("abc", [("a", "b"), ("b", "c")]) == ["ab", "c"]
    assert encode_word("abc", [("b", "c"), ("a", "b")]) == ["a", "bc"]


def test_learning_stops_when_every_word_is_one_piece_and_rejects_a_bad_count():
    assert learn_merges(Counter({("a", "b"): 1}), 5) == [("a", "b")]
    with pytest.raises(LslmError, match="n_merges"):
        learn_merges(Counter({("a", "b"): 1}), -1)


def test_the_same_merges_and_compression_as_sentencepiece():
    text = ("the cat sat on the mat. the cat ate the rat. then the rat ran, and the cat ran after the rat.\n"
            "a tokenizer splits a text into tokens. the tokens of a tokenizer are the pieces it has learned.\n"
            "to learn them, it counts which two pieces stand next to each other most often, and merges them.\n")
    words = Counter(tuple(w) for w in re.findall(rf"{SPACE}?[a-z]+|{SPACE}|[^a-z{SPACE}\n]",
                                                    text.replace(" ", SPACE)))
    n = 30
    merges = learn_merges(words, n)
    ours = ["".join(p) for p in merges]
    sp = train_tokenizer("bpe", text, vocab_size=256 + 1 + len(set(text)) + n)
    theirs = {sp.id_to_piece(i) for i in range(sp.vocab_size)}
    assert sum(p in theirs for p in ours) >= 0.6 * n  # mostly the same pieces
    our_length = sum(len(encode_word(w, merges)) * c for w, c in words.items()) + text.count("\n")
    assert abs(our_length - len(sp.encode(text))) <= 0.1 * our_length  # the same compression
