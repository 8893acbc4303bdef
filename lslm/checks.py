""""Check yourself" exercises: each notebook ends with one, checked by ``check``.

    from lslm.checks import check
    check("uniform_loss", answer, vocab_size=65)

``check`` prints a verdict a learner can act on and returns True or False; it never
raises on a wrong answer, so a notebook keeps running while the learner tries again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Exercise:
    question: str
    solve: Callable[..., Any]  # the expected answer, from the context the notebook passes
    hint: str
    rel_tol: float = 1e-3


EXERCISES: dict[str, Exercise] = {}


def exercise(name: str, question: str, hint: str, rel_tol: float = 1e-3):
    """Register ``solve`` as the reference answer of exercise ``name``."""

    def register(solve: Callable[..., Any]) -> Callable[..., Any]:
        EXERCISES[name] = Exercise(question, solve, hint, rel_tol)
        return solve

    return register


@exercise(
    "uniform_loss",
    "What loss (in nats) does a model get if it spreads its bet evenly over all vocab_size tokens?",
    "cross-entropy is -ln p(correct token), and a uniform guess gives every token p = 1/vocab_size",
)
def _uniform_loss(vocab_size: int) -> float:
    return math.log(vocab_size)


@exercise(
    "param_count",
    "How many parameters does GPTConfig(...) have? Work it out from the shapes, not with num_params().",
    "add the token embedding (vocab_size x n_embd), the position embedding (block_size x n_embd), "
    "n_layer blocks (2 LayerNorms, attention: 4 n_embd^2 weights, MLP: 8 n_embd^2 weights, plus "
    "biases if bias=True) and the final LayerNorm; the LM head is tied to the token embedding",
    rel_tol=0.0,
)
def _param_count(config) -> int:
    from lslm.model import count_params

    return count_params(config)


def check(name: str, answer: Any, **context: Any) -> bool:
    """Compare ``answer`` with exercise ``name``'s reference; print why it is right or wrong."""
    if name not in EXERCISES:
        raise KeyError(f"no exercise called {name!r}; there are: {', '.join(sorted(EXERCISES))}")
    ex = EXERCISES[name]
    if answer is None or answer is Ellipsis:
        print(f"Not answered yet. {ex.question}\nHint: {ex.hint}")
        return False
    expected = ex.solve(**context)
    try:
        right = math.isclose(float(answer), float(expected), rel_tol=ex.rel_tol, abs_tol=1e-9)
    except (TypeError, ValueError):
        print(f"Your answer {answer!r} is not a number. {ex.question}")
        return False
    if right:
        print(f"Correct: {answer} ✓")
        return True
    off = "too high" if float(answer) > float(expected) else "too low"
    print(f"Not yet: {answer} is {off}.\nHint: {ex.hint}")
    return False
