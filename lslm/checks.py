""""Check yourself" exercises: each notebook ends with one, checked by ``check``.

    from lslm.checks import check
    check("uniform_loss", answer, vocab_size=65)

``check`` prints a verdict a learner can act on and returns a ``Verdict`` that is true
when the answer is right (so ``assert check(...)`` works); it never raises on a wrong answer, so a notebook keeps running while the learner tries again.
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


@exercise(
    "chars_per_token",
    "How many characters of `text` does one token of this tokenizer cover, on average?",
    "divide the number of characters in the text by the number of tokens it becomes: "
    "len(text) / len(tokenizer.encode(text)); a char tokenizer gives exactly 1",
)
def _chars_per_token(text: str, tokenizer) -> float:
    return len(text) / len(tokenizer.encode(text))


@exercise(
    "lr_at_step",
    "With linear warmup then cosine decay, what is the learning rate at `step` for these "
    "lr, min_lr, warmup_iters and max_iters?",
    "during warmup (step < warmup_iters) it is lr * (step + 1) / (warmup_iters + 1); after it, "
    "progress = (step - warmup_iters) / (max_iters - warmup_iters) and the rate is "
    "min_lr + 0.5 * (1 + cos(pi * progress)) * (lr - min_lr)",
)
def _lr_at_step(step: int, lr: float, min_lr: float, warmup_iters: int, max_iters: int) -> float:
    from lslm.train import TrainConfig, lr_at

    config = TrainConfig(max_iters=max_iters, lr=lr, min_lr=min_lr, warmup_iters=warmup_iters)
    return lr_at(step, config)


@exercise(
    "bits_per_char",
    "A character-level model has a loss of `loss` nats per character. "
    "How many bits per character is that?",
    "nats measure with the natural log, bits with log base 2; since ln(x) = log2(x) * ln(2), "
    "divide the loss by ln(2), about 0.693",
)
def _bits_per_char(loss: float) -> float:
    return loss / math.log(2)


@exercise(
    "attention_weight",
    "With causal attention, what weight does query number `query` give key number `key`?",
    "score every key the query may see (itself and earlier positions; later ones get weight 0) "
    "with q·k / √d_k, then take the softmax of those scores: e^score / (sum of e^score)",
)
def _attention_weight(q, k, query: int, key: int) -> float:
    import torch

    from lslm.attention import attention_weights

    weights = attention_weights(torch.as_tensor(q, dtype=torch.float64),
                                torch.as_tensor(k, dtype=torch.float64), causal=True)
    return weights[query, key].item()


class Verdict:
    """The result of ``check``: true when right. It shows nothing itself in a notebook,
    because ``check`` has already printed what to do next."""

    def __init__(self, right: bool):
        self.right = right

    def __bool__(self) -> bool:
        return self.right

    def __repr__(self) -> str:
        return f"Verdict(right={self.right})"

    def _ipython_display_(self) -> None:
        pass


def check(name: str, answer: Any, **context: Any) -> Verdict:
    """Compare ``answer`` with exercise ``name``'s reference; print why it is right or wrong."""
    if name not in EXERCISES:
        raise KeyError(f"no exercise called {name!r}; there are: {', '.join(sorted(EXERCISES))}")
    ex = EXERCISES[name]
    if answer is None or answer is Ellipsis:
        print(f"Not answered yet. {ex.question}\nHint: {ex.hint}")
        return Verdict(False)
    expected = ex.solve(**context)
    try:
        right = math.isclose(float(answer), float(expected), rel_tol=ex.rel_tol, abs_tol=1e-9)
    except (TypeError, ValueError):
        print(f"Your answer {answer!r} is not a number. {ex.question}")
        return Verdict(False)
    if right:
        print(f"Correct: {answer} ✓")
        return Verdict(True)
    off = "too high" if float(answer) > float(expected) else "too low"
    print(f"Not yet: {answer} is {off}.\nHint: {ex.hint}")
    return Verdict(False)
