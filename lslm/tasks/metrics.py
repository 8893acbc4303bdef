"""Scores for generated text against references: BLEU, chrF and exact match.

All three take a list of hypotheses (what the model wrote) and a list of references
(one per hypothesis, what it should have written), and return a score from 0 to 100.

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
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from lslm.errors import LslmError
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
