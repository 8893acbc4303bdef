"""Exercises of notebook 11: looking inside a trained model."""

from __future__ import annotations

from lslm.checks.registry import exercise


@exercise(
    "copy_head",
    "Which head of the copy model puts the most attention on the induction stripe? "
    "Answer as (layer, head).",
    "run induction_probe(model, n=n, seed=seed): its .attention[layer, head] is each head's "
    "(2n, 2n) pattern; induction_stripe(pattern, n) averages the cells (t, t - n + 1) of the "
    "second half; pick the head with the largest value (head_scores holds all of them)",
)
def _copy_head(model, n: int, seed: int = 0) -> tuple[int, int]:
    from lslm.interpret import induction_probe

    scores = induction_probe(model, n=n, seed=seed).head_scores
    best = int(scores.argmax())
    return (best // scores.size(1), best % scores.size(1))
