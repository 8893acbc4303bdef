"""ROUGE-1, ROUGE-2 and ROUGE-L: by hand, against Google's rouge-score, and properties."""

import random

import pytest

from lslm.errors import LslmError
from lslm.tasks.metrics import RougeScore, lcs_length, rouge, rouge_l, rouge_n, rouge_tokens

rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")

HYP = "the cat sat"
REF = "the cat sat on the mat"

VOCAB = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", "to", "it", "x1", "42"]
DECOR = ["", "", "", ",", ".", "!", "'s", " -", "?!"]


def approx(p: float, r: float, f: float):
    """Matches a RougeScore whose three numbers are within float rounding of these."""
    return _Approx((p, r, f))


class _Approx:
    def __init__(self, want: tuple[float, float, float]):
        self.want = want

    def __eq__(self, score: object) -> bool:
        assert isinstance(score, RougeScore)
        got = (score.precision, score.recall, score.fmeasure)
        return got == pytest.approx(self.want)

    def __repr__(self) -> str:
        return f"approx{self.want}"


def random_text(rng: random.Random) -> str:
    words = []
    for _ in range(rng.randint(0, 14)):
        word = rng.choice(VOCAB)
        if rng.random() < 0.2:
            word = word.upper() if rng.random() < 0.5 else word.capitalize()
        words.append(word + rng.choice(DECOR))
    return rng.choice([" ", "  ", "\n"]).join(words)


def pairs() -> list[tuple[str, str]]:
    rng = random.Random(1234)
    out = [(random_text(rng), random_text(rng)) for _ in range(300)]
    for _ in range(20):  # a hypothesis that is a shuffled copy of its reference
        ref = random_text(rng)
        words = ref.split()
        rng.shuffle(words)
        out.append((" ".join(words), ref))
    out += [
        ("", ""), ("", "the cat"), ("the cat", ""), ("   ", "..."), ("!!!", "the"),
        ("cat", "cat"), ("cat", "dog"), ("cat", "the cat sat"), ("the cat sat", "cat"),
        (REF, REF), ("The CAT, sat!", "the cat sat"), ("a b c d", "e f g h"),
        ("the the the the", "the cat"), ("café naïve", "caf na ve"), ("x" * 3, "xxx"),
    ]
    return out


def test_matches_rouge_score():
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    for hyp, ref in pairs():
        expected = scorer.score(ref, hyp)  # rouge-score takes the reference (target) first
        ours = {"rouge1": rouge_n(hyp, ref, 1), "rouge2": rouge_n(hyp, ref, 2),
                "rougeL": rouge_l(hyp, ref)}
        for name, score in ours.items():
            want = expected[name]
            got = (score.precision, score.recall, score.fmeasure)
            assert got == pytest.approx(tuple(want), abs=1e-6), (name, hyp, ref)


def test_corpus_rouge_is_the_mean_f_measure():
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    ps = pairs()
    hyps, refs = [h for h, _ in ps], [r for _, r in ps]
    got = rouge(hyps, refs)
    assert set(got) == {"rouge1", "rouge2", "rougeL"}
    for name in got:
        mean = sum(scorer.score(r, h)[name].fmeasure for h, r in ps) / len(ps)
        assert got[name] == pytest.approx(mean, abs=1e-6)


def test_tokens_like_rouge_score():
    assert rouge_tokens("The cat's mat!") == ["the", "cat", "s", "mat"]
    assert rouge_tokens("  A-B\tc\n42  ") == ["a", "b", "c", "42"]
    assert rouge_tokens("café") == ["caf"]  # é is not in a-z: it becomes a space
    assert rouge_tokens("") == [] and rouge_tokens("?! ...") == []


def test_rouge_worked_by_hand():
    # hyp "the cat sat" (3 words), ref "the cat sat on the mat" (6 words).
    # ROUGE-1: the, cat, sat are all in the reference: 3 shared unigrams.
    #   P = 3/3 = 1, R = 3/6 = 1/2, F = 2·1·(1/2) / (3/2) = 2/3.
    assert rouge_n(HYP, REF, 1) == approx(1.0, 0.5, 2 / 3)
    # ROUGE-2: "the cat", "cat sat" both in the reference's 5 bigrams.
    #   P = 2/2 = 1, R = 2/5, F = 2·(2/5) / (7/5) = 4/7.
    assert rouge_n(HYP, REF, 2) == approx(1.0, 0.4, 4 / 7)
    # ROUGE-L: the whole hypothesis is a subsequence of the reference: LCS = 3,
    #   so the same as ROUGE-1 here.
    assert rouge_l(HYP, REF) == approx(1.0, 0.5, 2 / 3)


def test_rouge_l_rewards_order_and_rouge_2_adjacency():
    # hyp "mat the on sat cat the" is the reference backwards: every word is there
    # (ROUGE-1 = 1) but no bigram is ("mat the" is not in the reference, etc.): ROUGE-2 = 0.
    # In order, only "the on the" survives (a palindrome reads the same both ways):
    # LCS = 3, ROUGE-L = 3/6 = 1/2.
    backwards = " ".join(reversed(REF.split()))
    assert rouge_n(backwards, REF, 1) == approx(1.0, 1.0, 1.0)
    assert rouge_n(backwards, REF, 2) == approx(0.0, 0.0, 0.0)
    assert rouge_l(backwards, REF) == approx(0.5, 0.5, 0.5)
    # hyp "the cat on the mat": LCS with the reference skips "sat": 5 of 5 and 5 of 6.
    # F = 2·1·(5/6) / (11/6) = 10/11.
    assert rouge_l("the cat on the mat", REF) == approx(1.0, 5 / 6, 10 / 11)


def test_rouge_clips_repeats():
    # "the" four times against one "the": 1 shared unigram, P = 1/4, R = 1/2, F = 1/3.
    assert rouge_n("the the the the", "the cat", 1) == approx(0.25, 0.5, 1 / 3)


def test_empty_and_too_short_score_zero():
    zero = approx(0.0, 0.0, 0.0)
    assert rouge_n("", "", 1) == zero and rouge_l("", "") == zero
    assert rouge_n("", REF, 1) == zero and rouge_n(REF, "", 1) == zero
    assert rouge_n("cat", "cat", 2) == zero  # one word has no bigram
    assert rouge_n("cat", "cat", 1) == approx(1.0, 1.0, 1.0)
    assert rouge_l("...", REF) == zero  # punctuation only: no words left


def test_corpus_rouge_worked_by_hand():
    # pair 1: (2/3, 4/7, 2/3) from above; pair 2 identical: (1, 1, 1).
    got = rouge([HYP, REF], [REF, REF])
    assert got == pytest.approx({"rouge1": (2 / 3 + 1) / 2, "rouge2": (4 / 7 + 1) / 2,
                                 "rougeL": (2 / 3 + 1) / 2})


def test_lcs_length():
    assert lcs_length("a b c d".split(), "a c d b".split()) == 3
    assert lcs_length([], ["a"]) == 0
    assert lcs_length("a b".split(), "c d".split()) == 0


@pytest.mark.parametrize(
    "call",
    [
        lambda: rouge_n(["the cat"], "the cat"),
        lambda: rouge_n("the cat", None),
        lambda: rouge_l(b"the cat", "the cat"),
        lambda: rouge_l("the cat", 3),
        lambda: rouge_tokens(None),
        lambda: rouge_n("a b", "a b", 0),
        lambda: rouge_n("a b", "a b", -1),
        lambda: rouge_n("a b", "a b", 1.0),
        lambda: rouge_n("a b", "a b", "2"),
        lambda: rouge_n("a b", "a b", True),
        lambda: rouge("the cat", "the cat"),
        lambda: rouge(["a"], ["a", "b"]),
        lambda: rouge([], []),
        lambda: rouge([None], ["a"]),
    ],
)
def test_bad_input_is_a_one_line_error(call):
    with pytest.raises(LslmError) as info:
        call()
    assert "\n" not in str(info.value) and str(info.value)


def test_properties_that_hold():
    rng = random.Random(99)
    for _ in range(300):
        hyp, ref = random_text(rng), random_text(rng)
        r1, r2, rl = rouge_n(hyp, ref, 1), rouge_n(hyp, ref, 2), rouge_l(hyp, ref)
        for s in (r1, r2, rl):
            assert 0.0 <= s.precision <= 1.0 and 0.0 <= s.recall <= 1.0
            assert min(s.precision, s.recall) - 1e-12 <= s.fmeasure
            assert s.fmeasure <= max(s.precision, s.recall) + 1e-12
        # The LCS is a common subsequence, so each of its words is a clipped shared
        # unigram: LCS <= unigram overlap, hence ROUGE-L <= ROUGE-1 on P, R and F.
        assert rl.precision <= r1.precision + 1e-12 and rl.recall <= r1.recall + 1e-12
        assert rl.fmeasure <= r1.fmeasure + 1e-12
        # Swapping hypothesis and reference swaps precision and recall; F stays.
        for ours, swapped in ((r1, rouge_n(ref, hyp, 1)), (r2, rouge_n(ref, hyp, 2)),
                              (rl, rouge_l(ref, hyp))):
            assert swapped == approx(ours.recall, ours.precision, ours.fmeasure)
        # A text against itself scores 1 on everything it has n-grams for.
        words = rouge_tokens(ref)
        if words:
            assert rouge_l(ref, ref) == approx(1.0, 1.0, 1.0)
            assert rouge_n(ref, ref, 1) == approx(1.0, 1.0, 1.0)
            # Word order does not matter to ROUGE-1: a shuffled copy still scores 1.
            rng.shuffle(words)
            assert rouge_n(" ".join(words), ref, 1) == approx(1.0, 1.0, 1.0)
        if len(words) >= 2:
            assert rouge_n(ref, ref, 2) == approx(1.0, 1.0, 1.0)
