"""Exercises of notebook 08: scoring a translation by hand."""

from __future__ import annotations

from lslm.checks.registry import exercise


@exercise(
    "brevity_penalty",
    "What is BLEU's brevity penalty for this hypothesis and reference?",
    "count the words: c in the hypothesis, r in the reference; the penalty is 1 if c >= r, "
    "otherwise exp(1 - r / c)",
)
def _brevity_penalty(hypothesis: str, reference: str) -> float:
    from lslm.tasks.metrics import brevity_penalty

    return brevity_penalty(len(hypothesis.split()), len(reference.split()))


@exercise(
    "bleu2_by_hand",
    "What is BLEU with n-grams up to 2 (on the 0-100 scale) for this hypothesis and reference?",
    "p1 = hypothesis words found in the reference / hypothesis words; p2 = the same for pairs of "
    "neighbouring words (each counted at most as often as the reference has it); "
    "BLEU = 100 x brevity penalty x sqrt(p1 x p2)",
)
def _bleu2_by_hand(hypothesis: str, reference: str) -> float:
    from lslm.tasks.metrics import corpus_bleu

    return corpus_bleu([hypothesis], [reference], max_n=2)
