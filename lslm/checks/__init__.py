""""Check yourself" exercises: each notebook ends with one, checked by ``check``.

    from lslm.checks import check
    check("uniform_loss", answer, vocab_size=65)

``check`` prints a verdict a learner can act on and returns a ``Verdict`` that is true
when the answer is right (so ``assert check(...)`` works); it never raises on a wrong
answer, so a notebook keeps running while the learner tries again.

Each topic has its own module here (``basics``, ...) that registers its exercises with
``@exercise``; importing ``lslm.checks`` imports them all.

Coding exercises (write a function, ``check_code("causal_attention", your_function)``) are
in ``code`` (how a function is tested), ``coding`` (the exercises) and ``solutions``.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from typing import Any

from lslm.checks.code import CODE_EXERCISES, CodeVerdict, check_code
from lslm.checks.registry import EXERCISES, Exercise, Verdict, exercise
from lslm.errors import LslmError

__all__ = ["CODE_EXERCISES", "CodeVerdict", "EXERCISES", "Exercise", "Verdict", "check", "check_code", "exercise"]


def _load_all() -> None:
    """Import every topic module in this package, so each registers its exercises."""
    for info in pkgutil.iter_modules(__path__):
        if info.name not in ("registry", "code", "solutions"):
            importlib.import_module(f"{__name__}.{info.name}")


# Topic modules import torch and friends inside their solvers; only the coding exercises
# (whose cases are tensors) import torch when lslm.checks is imported.
_load_all()


def check(name: str, answer: Any, **context: Any) -> Verdict:
    """Compare ``answer`` with exercise ``name``'s reference; print why it is right or wrong.

    Numbers are compared within the exercise's relative tolerance; anything else (a word,
    a list of tokens) must equal the reference exactly.
    """
    if name not in EXERCISES:
        raise LslmError(f"no exercise called {name!r}: check the spelling, or use one of "
                        f"{', '.join(sorted(EXERCISES))}")
    ex = EXERCISES[name]
    if answer is None or answer is Ellipsis:
        print(f"Not answered yet. {ex.question}\nHint: {ex.hint}")
        return Verdict(False)
    expected = ex.solve(**context)
    if not _is_number(expected):
        if _normalise(answer) == _normalise(expected):
            print(f"Correct: {answer!r} ✓")
            return Verdict(True)
        print(f"Not yet: {answer!r} is not it.\nHint: {ex.hint}")
        return Verdict(False)
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


def _is_number(x: Any) -> bool:
    try:
        float(x)
    except (TypeError, ValueError):
        return False
    return not isinstance(x, str)


def _normalise(x: Any) -> Any:
    """Tuples and lists compare equal; strings ignore surrounding spaces and case."""
    if isinstance(x, str):
        return x.strip().lower()
    if isinstance(x, (list, tuple)):
        return tuple(_normalise(v) for v in x)
    return x
