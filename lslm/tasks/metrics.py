"""Scores for generated text against references: BLEU, chrF, exact match and ROUGE.

Each takes a list of hypotheses (what the model wrote) and a list of references
(one per hypothesis, what it should have written). BLEU, chrF and exact match return a
score from 0 to 100; ROUGE returns fractions from 0 to 1, as the ``rouge-score`` package
(the one papers report it with) does.

* **BLEU** (Papineni et al. 2002) counts the word n-grams (n = 1..4) of the hypotheses
  that also occur in their references, over the whole corpus, and multiplies their
  geometric mean by a *brevity penalty* so that writing very little does not pay.
* **chrF** (Popović 2015) does the same with character n-grams (n = 1..6) and combines
  precision and recall in an F-score that weighs recall beta times as much. It gives
  partial credit for a word with the right stem but a wrong ending.
* **exact match** is the share of hypotheses identical to their reference.

Both scores are the numbers sacrebleu (the tool papers report them with) gives, and
tests/test_metrics.py checks that: ``corpus_bleu`` is ``BLEU(tokenize="none",
smooth_method="none")`` (no smoothing: a corpus with no matching 4-gram scores 0, where
sacrebleu's default "exp" smoothing gives a small score), and ``chrf`` is sacrebleu's
default ``CHRF()``: character 6-grams, no word n-grams, spaces removed, beta = 2.
Popović 2015 proposed beta = 3; chrF++ (Popović 2017), sacrebleu and WMT use beta = 2.

Words are split on whitespace; no other normalisation is done, so tokenise (or
lower-case) both sides the same way before scoring.

**ROUGE** (Lin 2004) is the usual score for summaries. Where BLEU asks "how much of what
the model wrote is in the reference?" (precision), ROUGE also asks "how much of the
reference did the model cover?" (recall), and reports their F1 = 2·P·R / (P + R).

* **ROUGE-1** and **ROUGE-2** count the word unigrams (bigrams) the hypothesis and its
  reference share, clipped as in BLEU: precision = shared / hypothesis n-grams, recall =
  shared / reference n-grams.
* **ROUGE-L** uses the longest common subsequence (LCS): the longest run of words that
  appear in both texts in the same order, not necessarily next to each other. Precision =
  LCS / hypothesis words, recall = LCS / reference words. It rewards getting the order
  right without demanding exact bigrams.

ROUGE scores each pair on its own and averages over the corpus (BLEU and chrF pool their
counts first). Unlike BLEU and chrF, ROUGE normalises the text itself, exactly as Google's
``rouge-score`` package does with ``use_stemmer=False`` (tests/test_rouge.py checks the
numbers against it): lower-case, turn every run of characters other than ``a-z`` and
``0-9`` into a space, split on whitespace. So "The cat!" and "the CAT" are the same two
words, and accented letters are dropped.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

from lslm.errors import LslmError, shown
from lslm.utils import ngrams  # also importable from here: BLEU and chrF are built on it


def _check_pair(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    for name, xs in (("hypotheses", hypotheses), ("references", references)):
        if isinstance(xs, str):
            raise LslmError(f"{name} must be a list of sentences, not one string: wrap it in [ ]")
    if len(hypotheses) != len(references):
        raise LslmError(
            f"got {len(hypotheses)} hypotheses but {len(references)} references: "
            "give exactly one reference per hypothesis"
        )
    if len(hypotheses) == 0:
        raise LslmError("there is nothing to score: pass at least one hypothesis and its reference")


@dataclass
class BleuStats:
    """What BLEU is made of, for one corpus (precisions are fractions, the score 0-100)."""

    score: float
    precisions: list[float]  # modified (clipped) n-gram precision for n = 1..max_n
    brevity_penalty: float
    hyp_length: int  # words in all hypotheses
    ref_length: int  # words in all references


def brevity_penalty(hyp_length: int, ref_length: int) -> float:
    """1 when the hypotheses are at least as long as the references, else exp(1 - r/c)."""
    if hyp_length >= ref_length:
        return 1.0
    if hyp_length == 0:
        return 0.0
    return math.exp(1.0 - ref_length / hyp_length)


def bleu_stats(hypotheses: Sequence[str], references: Sequence[str], max_n: int = 4) -> BleuStats:
    """Corpus BLEU with every ingredient: precisions, brevity penalty and lengths."""
    _check_pair(hypotheses, references)
    if max_n < 1:
        raise LslmError(f"max_n must be at least 1, got {max_n}")
    matches = [0] * max_n
    totals = [0] * max_n
    hyp_length = ref_length = 0
    for hyp, ref in zip(hypotheses, references):
        h, r = hyp.split(), ref.split()
        hyp_length += len(h)
        ref_length += len(r)
        for n in range(1, max_n + 1):
            h_counts, r_counts = ngrams(h, n), ngrams(r, n)
            # Clipping: an n-gram earns credit at most as often as the reference has it,
            # so "the the the the" gets no extra credit for repeating "the".
            matches[n - 1] += sum(min(c, r_counts[g]) for g, c in h_counts.items())
            totals[n - 1] += sum(h_counts.values())
    precisions = [m / t if t else 0.0 for m, t in zip(matches, totals)]
    bp = brevity_penalty(hyp_length, ref_length)
    if min(precisions) == 0.0:
        score = 0.0  # the geometric mean of anything with a zero is zero
    else:
        score = 100.0 * bp * math.exp(sum(math.log(p) for p in precisions) / max_n)
    return BleuStats(score, precisions, bp, hyp_length, ref_length)


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str], max_n: int = 4) -> float:
    """Corpus BLEU, 0-100: brevity penalty x geometric mean of the n-gram precisions."""
    return bleu_stats(hypotheses, references, max_n).score


def chrf(
    hypotheses: Sequence[str],
    references: Sequence[str],
    max_n: int = 6,
    beta: float = 2.0,
) -> float:
    """Corpus chrF, 0-100: an F-score of character n-gram precision and recall.

    Spaces are removed first. For each n the n-grams are counted over the whole corpus:
    matches, hypothesis n-grams and reference n-grams. As in sacrebleu, a hypothesis's
    n-grams count only where its reference has n-grams of that length at all (a
    reference shorter than n characters has none), and an n for which either side has no
    n-grams is left out of the averages. The average precision P and recall R combine as
    (1 + beta²)·P·R / (beta²·P + R); with no n left (say, every sentence empty) it is 0.
    """
    _check_pair(hypotheses, references)
    if max_n < 1:
        raise LslmError(f"max_n must be at least 1, got {max_n}")
    precisions, recalls = [], []
    for n in range(1, max_n + 1):
        match = hyp_total = ref_total = 0
        for hyp, ref in zip(hypotheses, references):
            h = ngrams("".join(hyp.split()), n)
            r = ngrams("".join(ref.split()), n)
            match += sum(min(c, r[g]) for g, c in h.items())
            if r:  # nothing to match against: these n-grams are not counted as wrong
                hyp_total += sum(h.values())
            ref_total += sum(r.values())
        if hyp_total and ref_total:
            precisions.append(match / hyp_total)
            recalls.append(match / ref_total)
    if not precisions:
        return 0.0
    p = sum(precisions) / len(precisions)
    r = sum(recalls) / len(recalls)
    if p == 0.0 and r == 0.0:
        return 0.0
    b2 = beta * beta
    return 100.0 * (1 + b2) * p * r / (b2 * p + r)


def exact_match(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Percentage of hypotheses equal to their reference word for word (spacing ignored)."""
    _check_pair(hypotheses, references)
    same = sum(h.split() == r.split() for h, r in zip(hypotheses, references))
    return 100.0 * same / len(hypotheses)


# ROUGE ----------------------------------------------------------------------------------

_NOT_ALPHANUMERIC = re.compile(r"[^a-z0-9]+")


@dataclass
class RougeScore:
    """One ROUGE score for one hypothesis: precision, recall and their F1, each 0-1."""

    precision: float
    recall: float
    fmeasure: float


def _f1(precision: float, recall: float) -> float:
    if precision + recall == 0.0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def _check_text(name: str, text: object) -> None:
    if not isinstance(text, str):
        raise LslmError(
            f"{name} must be one string, got {shown(text)}: "
            "pass a single sentence (rouge() takes lists)"
        )


def rouge_tokens(text: str) -> list[str]:
    """ROUGE's words: lower-case, every run of non ``a-z0-9`` characters a space, split.

    ``rouge_tokens("The cat's mat!")`` is ``["the", "cat", "s", "mat"]``.
    """
    _check_text("text", text)
    return _NOT_ALPHANUMERIC.sub(" ", text.lower()).split()


def rouge_n(hypothesis: str, reference: str, n: int = 1) -> RougeScore:
    """ROUGE-n of one hypothesis against its reference, from clipped n-gram overlap.

    All three numbers are 0 when either side has no n-grams (say, an empty string, or one
    word for ``n=2``).
    """
    _check_text("hypothesis", hypothesis)
    _check_text("reference", reference)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise LslmError(
            f"n must be a whole number of at least 1 (1 for ROUGE-1, 2 for ROUGE-2), got {shown(n)}"
        )
    h_counts = ngrams(rouge_tokens(hypothesis), n)
    r_counts = ngrams(rouge_tokens(reference), n)
    h_total, r_total = sum(h_counts.values()), sum(r_counts.values())
    if h_total == 0 or r_total == 0:
        return RougeScore(0.0, 0.0, 0.0)
    # Clipping: an n-gram is shared at most as often as the side with fewer copies has it.
    overlap = sum(min(c, r_counts[g]) for g, c in h_counts.items())
    precision, recall = overlap / h_total, overlap / r_total
    return RougeScore(precision, recall, _f1(precision, recall))


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists (dynamic programming).

    ``table[i][j]`` is the LCS length of the first ``i`` tokens of ``a`` and the first ``j``
    of ``b``. If those last tokens are equal, the LCS can end with that token: one more
    than ``table[i-1][j-1]``. If not, at least one of them is not in the LCS: drop either
    and keep the longer. Time and memory grow as ``len(a) * len(b)``.
    """
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            if a[i - 1] == b[j - 1]:
                table[i][j] = table[i - 1][j - 1] + 1
            else:
                table[i][j] = max(table[i - 1][j], table[i][j - 1])
    return table[len(a)][len(b)]


def rouge_l(hypothesis: str, reference: str) -> RougeScore:
    """ROUGE-L of one hypothesis against its reference, from their longest common subsequence.

    All three numbers are 0 when either side has no words.
    """
    _check_text("hypothesis", hypothesis)
    _check_text("reference", reference)
    h, r = rouge_tokens(hypothesis), rouge_tokens(reference)
    if not h or not r:
        return RougeScore(0.0, 0.0, 0.0)
    lcs = lcs_length(h, r)
    precision, recall = lcs / len(h), lcs / len(r)
    return RougeScore(precision, recall, _f1(precision, recall))


def rouge(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1, ROUGE-2 and ROUGE-L F1 over the pairs, as ``{"rouge1", "rouge2", "rougeL"}``.

    The values are fractions from 0 to 1, as ``rouge-score`` reports them, not 0-100 like
    ``corpus_bleu`` and ``chrf``: multiply by 100 to put them side by side.
    """
    _check_pair(hypotheses, references)
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for hyp, ref in zip(hypotheses, references):
        totals["rouge1"] += rouge_n(hyp, ref, 1).fmeasure
        totals["rouge2"] += rouge_n(hyp, ref, 2).fmeasure
        totals["rougeL"] += rouge_l(hyp, ref).fmeasure
    return {name: total / len(hypotheses) for name, total in totals.items()}
