"""Exercises of notebook 07: sentiment analysis."""

from __future__ import annotations

from lslm.checks.registry import exercise


@exercise(
    "sentiment_majority_baseline",
    "A lazy classifier always answers the label that is most common in the TRAINING labels. "
    "What accuracy does it get on the TEST labels?",
    "find the most common label of train_labels (collections.Counter(train_labels).most_common(1)), "
    "then count how many test labels equal it and divide by len(test_labels); if the training "
    "labels tie, the lazy classifier picks the one that sorts first ('neg')",
)
def _majority_baseline(train_labels, test_labels) -> float:
    from lslm.tasks.sentiment import majority_baseline

    return majority_baseline(list(train_labels), list(test_labels))
