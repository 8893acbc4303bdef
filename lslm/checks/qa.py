"""Exercise of notebook 09: question answering."""

from __future__ import annotations

from lslm.checks.registry import exercise


@exercise(
    "qa_token_f1",
    "What is the SQuAD token F1 between `prediction` and `gold`?",
    "normalise both (lower case, drop punctuation and the words a/an/the), split into words, "
    "count the shared words; precision = shared / predicted words, recall = shared / gold "
    "words, F1 = 2 * precision * recall / (precision + recall)",
)
def _qa_token_f1(prediction: str, gold: str) -> float:
    from lslm.tasks.qa import f1

    return f1(prediction, gold)
