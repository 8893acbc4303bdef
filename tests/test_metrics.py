"""BLEU, chrF and exact match, on examples small enough to work out by hand."""

import math
import random

import pytest
from sacrebleu.metrics import BLEU, CHRF

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


def test_chrf_skips_orders_a_side_lacks_as_sacrebleu_does():
    # The reference "ab" has no trigram, so the hypothesis's trigram "abc" is not counted:
    # n = 3 drops out. n = 1: P = 2/3, R = 1; n = 2: P = 1/2, R = 1. Averages P = 7/12,
    # R = 1, and F2 = 5 · 7/12 / (4 · 7/12 + 1) = 7/8.
    assert chrf(["abc"], ["ab"], max_n=3) == pytest.approx(100 * 7 / 8)
    # Nothing to compare at any order scores 0, as in sacrebleu.
    assert chrf([""], [""]) == 0.0 and chrf(["abc"], [""]) == 0.0


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

    pair = dict(hypothesis="hunu la miso un vidas ek vi", reference="hunu gran la miso piki un vidas ek vi")
    # 7 words against 9: BP = exp(1 - 9/7). p1 = 7/7; bigrams "la miso", "un vidas",
    # "vidas ek", "ek vi" of 6: p2 = 2/3.
    assert check("brevity_penalty", math.exp(-2 / 7), **pair)
    assert check("bleu2_by_hand", 100 * math.exp(-2 / 7) * math.sqrt(2 / 3), **pair)
    assert not check("bleu2_by_hand", 100 * math.sqrt(2 / 3), **pair)  # forgot the brevity penalty


# ----------------------------------------------------------------------------- against sacrebleu
# sacrebleu is the tool papers report BLEU and chrF with; lslm's scores must be the same
# numbers, on many small random corpora full of edge cases.

WORDS = ["a", "b", "ab", "ba", "abc", "cab", "bca", "aabb", "x"]  # few words: many n-grams match


def random_corpus(rng: random.Random) -> tuple[list[str], list[str]]:
    """1-5 (hypothesis, reference) pairs: empty and one-letter sentences, near copies, noise."""
    hyps, refs = [], []
    for _ in range(rng.randint(1, 5)):
        ref = [rng.choice(WORDS) for _ in range(rng.choice([0, 1, 1, 2, 3, 5, 8]))]
        kind = rng.random()
        if kind < 0.15:
            hyp = []  # the system wrote nothing
        elif kind < 0.7:  # a near copy: a few words dropped, changed or added
            hyp = [w for w in ref if rng.random() > 0.1]
            hyp = [rng.choice(WORDS) if rng.random() < 0.1 else w for w in hyp]
            hyp += [rng.choice(WORDS) for _ in range(rng.choice([0, 0, 1]))]
        else:
            hyp = [rng.choice(WORDS) for _ in range(rng.choice([1, 1, 2, 4, 7]))]
        hyps.append(" ".join(hyp))
        refs.append(" ".join(ref))
    return hyps, refs


CORPORA = [random_corpus(random.Random(seed)) for seed in range(400)]


@pytest.mark.parametrize("max_n", [1, 2, 4])
def test_bleu_is_sacrebleus_without_smoothing(max_n):
    # tokenize="none": both split on whitespace only. smooth_method="none": a zero n-gram
    # precision makes the score 0, as lslm documents.
    reference = BLEU(tokenize="none", smooth_method="none", max_ngram_order=max_n)
    nonzero = 0
    for hyps, refs in CORPORA:
        ours, theirs = bleu_stats(hyps, refs, max_n), reference.corpus_score(hyps, [refs])
        assert ours.score == pytest.approx(theirs.score, rel=1e-9, abs=1e-9), (hyps, refs)
        assert [100 * p for p in ours.precisions] == pytest.approx(theirs.precisions, rel=1e-9, abs=1e-9)
        assert ours.brevity_penalty == pytest.approx(theirs.bp, rel=1e-12)
        assert (ours.hyp_length, ours.ref_length) == (theirs.sys_len, theirs.ref_len)
        nonzero += ours.score > 0
    assert nonzero > len(CORPORA) / 5  # the corpora test the formula, not only the zeros


def test_bleu_smoothing_only_matters_when_a_precision_is_zero():
    # sacrebleu's default smoothing ("exp") invents a small precision for an order with no
    # match; lslm does not smooth. The two agree whenever every precision is above zero.
    smoothed = BLEU(tokenize="none")
    differ = 0
    for hyps, refs in CORPORA:
        ours = bleu_stats(hyps, refs)
        theirs = smoothed.corpus_score(hyps, [refs]).score
        if min(ours.precisions) > 0:
            assert ours.score == pytest.approx(theirs, rel=1e-9)
        elif ours.hyp_length >= 4 and any(ours.precisions):
            differ += theirs > 0 and ours.score == 0
    assert differ > 0


@pytest.mark.parametrize("max_n, beta", [(6, 2), (6, 3), (3, 1), (1, 2)])
def test_chrf_is_sacrebleus(max_n, beta):
    # sacrebleu's CHRF defaults: character 6-grams, no word n-grams (chrF, not chrF++),
    # beta 2, spaces removed, averages over the orders that both sides have.
    reference = CHRF(char_order=max_n, word_order=0, beta=beta)
    scores = []
    for hyps, refs in CORPORA:
        theirs = reference.corpus_score(hyps, [refs]).score
        assert chrf(hyps, refs, max_n=max_n, beta=beta) == pytest.approx(theirs, rel=1e-9, abs=1e-9), (hyps, refs)
        scores.append(theirs)
    assert len({round(s, 6) for s in scores}) > 100  # many different scores, not all 0 or 100
