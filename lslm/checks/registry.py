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


class Verdict:
    """The result of a check: true when right. It shows nothing itself in a notebook,
    because the check has already printed what to do next."""

    def __init__(self, right: bool):
        self.right = right

    def __bool__(self) -> bool:
        return self.right

    def __repr__(self) -> str:
        return f"{type(self).__name__}(right={self.right})"

    def _ipython_display_(self) -> None:
        pass
