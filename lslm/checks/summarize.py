"""Exercises of notebook 13: summarization."""

from __future__ import annotations

from lslm.checks.registry import exercise


@exercise(
    "rouge1_recall",
    "What is the ROUGE-1 recall of `hypothesis` against `reference`?",
    "lower-case both and split them into words (punctuation is not a word); count the "
    "reference's words that the hypothesis also has, each at most as often as the hypothesis "
    "has it, and divide by the number of words in the reference",
)
def _rouge1_recall(hypothesis: str, reference: str) -> float:
    from lslm.tasks.metrics import rouge_n

    return rouge_n(hypothesis, reference, 1).recall


@exercise(
    "false_facts",
    "How many facts that `summary` states are false of `story`?",
    "read the story: who is the hero, who helps, what is the hero's job, where do they go, "
    "what thing is it about, and does it end happily? Then count the summary's claims that "
    "disagree (a name the story never mentions is a false fact too)",
    rel_tol=0.0,
)
def _false_facts(summary: str, story) -> int:
    from lslm.summarize import summary_facts

    return sum(not f.true for f in summary_facts(summary, story))
