"""BLEU, chrF and exact match, on examples small enough to work out by hand."""

import math

import pytest

from lslm.errors import LslmError
from lslm.tasks.metrics import bleu_stats, brevity_penalty, chrf, corpus_bleu, exact_match, ngrams

HYP = "the cat sat on the mat"
REF = "the cat is on the mat"


def test_ngrams_counts_repeats():
    assert ngrams("a b a b".split(), 2) == {("a", "b"): 2, ("b", "a"): 1}
    assert ngrams(["a"], 2) == {}


def test_identical_is_100_and_disjoint_is_0():
    sents = ["the big dog sees a cat", "anna likes the small bird"]
    assert corpus_bleu(sents, sents) == pytest.approx(100.0)
    assert chrf(sents, sents) == pytest.approx(100.0)
    assert exact_match(sents, sents) == 100.0
    other = ["12 34 56 78 90 11", "22 33 44 55 66"]  # no word or character in common
    assert corpus_bleu(other, sents) == 0.0
    assert chrf(other, sents) == 0.0
    assert exact_match(other, sents) == 0.0


def test_bleu_worked_by_hand():
    # unigrams: the, cat, on, the, mat match (5 of 6); bigrams: "the cat", "on the",
    # "the mat" (3 of 5); trigrams: "on the mat" (1 of 4); 4-grams: none of 3.
    stats = bleu_stats([HYP], [REF])
    assert stats.precisions == pytest.approx([5 / 6, 3 / 5, 1 / 4, 0.0])
    assert stats.brevity_penalty == 1.0 and stats.hyp_length == stats.ref_length == 6
    assert stats.score == 0.0  # no 4-gram matches: the geometric mean is zero
    # Up to trigrams: (5/6 · 3/5 · 1/4)^(1/3) = (1/8)^(1/3) = 1/2.
    assert corpus_bleu([HYP], [REF], max_n=3) == pytest.approx(50.0)


def test_bleu_clips_repeated_words():
    stats = bleu_stats(["the the the the"], ["the cat"], max_n=1)
    assert stats.precisions == [pytest.approx(1 / 4)]
    assert stats.score == pytest.approx(25.0)


def test_brevity_penalty_punishes_short_output():
    assert brevity_penalty(6, 6) == 1.0 and brevity_penalty(8, 6) == 1.0
    assert brevity_penalty(0, 6) == 0.0
    # "the cat" against a 6-word reference: both precisions are 1, BP = exp(1 - 6/2).
    stats = bleu_stats(["the cat"], [REF], max_n=2)
    assert stats.brevity_penalty == pytest.approx(math.exp(-2))
    assert stats.score == pytest.approx(100 * math.exp(-2))


def test_bleu_is_pooled_over_the_corpus_not_averaged():
    # Sentence 1 alone has no 4-gram match (BLEU 0); pooled with a perfect sentence the
    # corpus precisions are (5+6)/(6+6), (3+5)/(5+5), (1+4)/(4+4), (0+3)/(3+3).
    other = "a b c d e f"
    got = corpus_bleu([HYP, other], [REF, other])
    want = 100 * (11 / 12 * 8 / 10 * 5 / 8 * 3 / 6) ** (1 / 4)
    assert got == pytest.approx(want)


def test_chrf_worked_by_hand():
    # n=1: a, b match of a b c / a b d -> P = R = 2/3; n=2: "ab" of ab, bc / ab, bd -> 1/2.
    assert chrf(["abc"], ["abd"], max_n=2) == pytest.approx(100 * 7 / 12)
    # P = 1, R = 1/2 with beta = 2: 5 · 1 · 0.5 / (4 · 1 + 0.5) = 5/9.
    assert chrf(["ab"], ["abcd"], max_n=1) == pytest.approx(100 * 5 / 9)
    # Spaces are ignored; recall weighs more than precision.
    assert chrf(["a b"], ["ab"], max_n=2) == pytest.approx(100.0)
    assert chrf(["ab"], ["abcd"], max_n=1) < chrf(["abcd"], ["ab"], max_n=1)


def test_chrf_gives_partial_credit_where_bleu_gives_none():
    assert corpus_bleu(["vidas"], ["vidis"], max_n=1) == 0.0
    assert 30 < chrf(["vidas"], ["vidis"]) < 70


def test_exact_match_ignores_spacing_only():
    assert exact_match(["a  b", "a b c"], ["a b", "a b d"]) == 50.0


@pytest.mark.parametrize("fn", [corpus_bleu, chrf, exact_match])
def test_bad_inputs_are_explained(fn):
    with pytest.raises(LslmError, match="one reference per hypothesis"):
        fn(["a", "b"], ["a"])
    with pytest.raises(LslmError, match="nothing to score"):
        fn([], [])
    with pytest.raises(LslmError, match="list of sentences"):
        fn("a b", "a b")


def test_notebook_exercises_worked_by_hand():
    from lslm.checks import check

    pair = dict(hypothesis="hunu la miso un vidas", reference="hunu gran la miso piki un vidas")
    # 5 words against 7: BP = exp(1 - 7/5). p1 = 5/5; bigrams "la miso", "un vidas" of 4: p2 = 1/2.
    assert check("brevity_penalty", math.exp(-0.4), **pair)
    assert check("bleu2_by_hand", 100 * math.exp(-0.4) * math.sqrt(0.5), **pair)
    assert not check("bleu2_by_hand", 100 * math.sqrt(0.5), **pair)  # forgot the brevity penalty
