"""The exercise registry: each topic module registers its exercises with ``@exercise``."""

from __future__ import annotations

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
