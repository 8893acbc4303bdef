"""Coding exercises: the learner writes a function, ``check_code`` tests it against lslm's own.

    from lslm.checks import check_code
    def causal_attention(q, k, v):
        ...  # your code
    check_code("causal_attention", causal_attention)

Each exercise runs the learner's function and the library's reference on the same inputs:
random tensors of several shapes and the edge cases that catch the usual mistakes (one
token, an empty batch, values large enough to overflow). The verdict is one line: right, or
the first case that went wrong and what went wrong (an error, a hang, the wrong type, shape,
dtype or device, or values that differ), with a hint for that case. The hint points at the
mistake; it never gives the formula. ``check_code`` never raises for a learner's mistake, so
a notebook keeps running.
"""

from __future__ import annotations

import copy
import math
import signal
import threading
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from lslm.checks.registry import Verdict
from lslm.errors import LslmError

HANG_SECONDS = 5.0


@dataclass(frozen=True)
class Case:
    """One input to try: ``label`` names it in a verdict, ``hint`` is shown if it fails."""

    label: str
    args: tuple
    hint: str
    kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class CodeExercise:
    task: str  # what to write, one sentence
    reference: Callable[..., Any]  # the library's implementation, in the learner's signature
    cases: Callable[[], list[Case]]
    atol: float = 1e-5
    # (a usual wrong version, the hint for it): an answer that matches one gets that hint
    mistakes: tuple[tuple[Callable[..., Any], str], ...] = ()
    signature: str = ""  # "def name(args):" and its docstring: the notebook's scaffold
    # For a function that changes its inputs on purpose (a training step updates the model):
    # what to compare once it has run, read from its arguments. Each run then gets its own
    # deep copy of the case's arguments.
    after: Callable[..., Any] | None = None
    after_label: str = ""  # what ``after`` returns, in words ("the parameters after the step")

    def scaffold(self, name: str) -> str:
        """The exercise cell a learner fills in."""
        return (f"from lslm.checks import check_code\n\n\n{self.signature}\n    ...  # your code here\n\n\n"
                f"check_code({name!r}, {name})")

    def solution_cell(self, name: str) -> str:
        """The hidden cell after it: checks the worked solution, which lives in lslm.checks.solutions."""
        return (f"# The worked solution lives in lslm.checks.solutions; this cell checks it.\n"
                f"from lslm.checks import check_code\nfrom lslm.checks.solutions import {name} as worked\n\n"
                f"assert check_code({name!r}, worked)")


CODE_EXERCISES: dict[str, CodeExercise] = {}


def code_exercise(name: str, task: str, reference: Callable[..., Any], signature: str, atol: float = 1e-5,
                  mistakes: tuple[tuple[Callable[..., Any], str], ...] = (),
                  after: Callable[..., Any] | None = None, after_label: str = ""):
    """Register the decorated ``cases()`` function as exercise ``name``'s inputs; ``signature``
    is the def line and docstring of the function the learner writes."""

    def register(cases: Callable[[], list[Case]]) -> Callable[[], list[Case]]:
        CODE_EXERCISES[name] = CodeExercise(task, reference, cases, atol, mistakes, signature.strip("\n"),
                                            after, after_label)
        return cases

    return register


class CodeVerdict(Verdict):
    """True when every case passed; ``message`` is the one-line verdict that was printed."""

    def __init__(self, right: bool, message: str):
        super().__init__(right)
        self.message = message


class _Hang(BaseException):  # not Exception: a learner's "except Exception" must not swallow it
    pass


def _run_limited(fn: Callable[..., Any], args: tuple, kwargs: dict, seconds: float) -> Any:
    """``fn(*args, **kwargs)``, stopped after ``seconds`` with ``_Hang``.

    On the main thread of a POSIX system an alarm interrupts the function (a Python loop that
    never ends is stopped there). Elsewhere (Windows, another thread) it runs on a helper
    thread and is abandoned, still running, if it is late: the verdict says so."""
    if hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread():
        def expire(signum: int, frame: Any) -> None:
            raise _Hang

        previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            return fn(*args, **kwargs)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - handed back to the caller's thread
            box["error"] = e

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise _Hang
    if "error" in box:
        raise box["error"]
    return box["value"]


def _fresh(value: Any) -> Any:
    """A copy the learner's function may change without spoiling the reference's input."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, (list, tuple)):
        return type(value)(_fresh(v) for v in value)
    return value


def _inputs(ex: CodeExercise, case: Case) -> tuple[tuple, dict]:
    """The arguments for one run: deep copies where the function changes them on purpose (so
    the model and its optimizer are copied together), else copies of the tensors."""
    if ex.after is not None:
        args, kwargs = copy.deepcopy((case.args, case.kwargs))
        # deepcopy leaves a parameter's .grad behind; a step must see the gradients it was given
        for old, new in zip((*case.args, *case.kwargs.values()), (*args, *kwargs.values())):
            if isinstance(old, torch.nn.Module):
                for p, q in zip(old.parameters(), new.parameters()):
                    q.grad = None if p.grad is None else p.grad.clone()
        return args, kwargs
    return _fresh(case.args), _fresh(case.kwargs)


def _outcome(ex: CodeExercise, fn: Callable[..., Any], args: tuple, kwargs: dict) -> tuple[Any, Any]:
    """What ``fn`` returned, and (for an exercise with ``after``) the state it left behind."""
    got = fn(*args, **kwargs)
    return got, (ex.after(*args, **kwargs) if ex.after is not None else None)


def _compare(got: Any, want: Any, atol: float) -> str | None:
    """Why ``got`` is not ``want`` (None when it is)."""
    if isinstance(want, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return f"it returned a {type(got).__name__}, not a torch.Tensor"
        if tuple(got.shape) != tuple(want.shape):
            return f"it returned shape {tuple(got.shape)}, expected {tuple(want.shape)}"
        if got.dtype != want.dtype:
            return f"it returned dtype {got.dtype}, expected {want.dtype}"
        if got.device != want.device:
            return f"it returned a tensor on {got.device}, expected {want.device}"
        if want.numel() == 0:
            return None
        if want.dtype == torch.bool or not want.is_floating_point():
            return None if torch.equal(got, want) else "its values differ from the reference"
        if torch.isnan(got).any() and not torch.isnan(want).any():
            return "it returned NaN values"
        gap = (got.double() - want.double()).abs().nan_to_num(nan=0.0).max().item()
        scale = atol + 1e-4 * want.double().abs().max().item()
        return None if gap <= scale else f"its values differ from the reference (largest gap {gap:.3g})"
    if isinstance(want, dict):
        if not isinstance(got, dict) or set(got) != set(want):
            return f"it returned {type(got).__name__}, expected a dict with the keys {sorted(want)}"
        for key in want:
            if (why := _compare(got[key], want[key], atol)) is not None:
                return f"its {key!r}: {why}"
        return None
    if isinstance(want, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(want):
            return f"it returned {type(got).__name__}, expected a {type(want).__name__} of {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            if (why := _compare(g, w, atol)) is not None:
                return f"part {i} of what it returned: {why}"
        return None
    if isinstance(want, float):
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if not isinstance(got, (int, float)) or isinstance(got, bool):
            return f"it returned a {type(got).__name__}, expected a number"
        return None if math.isclose(got, want, rel_tol=1e-4, abs_tol=atol) else f"it returned {got:.6g}, expected {want:.6g}"
    return None if got == want else f"it returned {got!r}, expected {want!r}"


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:160]}" if text else type(e).__name__


def check_code(name: str, fn: Any, timeout_s: float = HANG_SECONDS, quiet: bool = False) -> CodeVerdict:
    """Run ``fn`` on exercise ``name``'s cases against the reference; print a one-line verdict.

    A scaffold left as it is (``None``, a body of ``...`` that returns None, or
    ``NotImplementedError``) is "not written yet", with the task."""
    if name not in CODE_EXERCISES:
        raise LslmError(f"no coding exercise called {name!r}: use one of {', '.join(sorted(CODE_EXERCISES))}")
    ex = CODE_EXERCISES[name]

    def say(right: bool, message: str) -> CodeVerdict:
        if not quiet:
            print(message)
        return CodeVerdict(right, message)

    if fn is None or fn is Ellipsis:
        return say(False, f"Not written yet. {ex.task}")
    if not callable(fn):
        return say(False, f"check_code needs your function itself (its name, no brackets), got a {type(fn).__name__}")
    cases = ex.cases()
    for n, case in enumerate(cases, 1):
        if ex.after is not None:
            want, want_state = _outcome(ex, ex.reference, *_inputs(ex, case))
        else:  # the reference leaves its inputs alone: they show whether the learner's changed them
            want, want_state = ex.reference(*case.args, **case.kwargs), None
        args, kwargs = _inputs(ex, case)
        try:
            got = _run_limited(fn, args, kwargs, timeout_s)
        except _Hang:
            return say(False, f"Stopped: case {n} ({case.label}) was still running after {timeout_s:g} s; "
                              "look for a loop that never ends (if the cell stays busy, restart the kernel)")
        except NotImplementedError:
            return say(False, f"Not written yet. {ex.task}")
        except Exception as e:  # noqa: BLE001 - the learner's error, reported, not raised
            where = traceback.extract_tb(e.__traceback__)[-1]
            line = f" (line {where.lineno}: {where.line.strip()})" if where.line else ""
            return say(False, f"Case {n} ({case.label}): your function raised {_one_line(e)}{line}. Hint: {case.hint}")
        if got is None and n == 1:
            return say(False, f"Not written yet (your function returned None). {ex.task}")
        if (why := _compare(got, want, ex.atol)) is not None:
            return say(False, f"Case {n} of {len(cases)} ({case.label}): {why}. Hint: {_hint(ex, case, got)}")
        if ex.after is not None:
            state = ex.after(*args, **kwargs)
            if (why := _compare(state, want_state, ex.atol)) is not None:
                return say(False, f"Case {n} of {len(cases)} ({case.label}): {ex.after_label}: {why}. "
                                  f"Hint: {_hint(ex, case, got, state)}")
            continue
        changed = [i for i, (a, b) in enumerate(zip(args, case.args))
                   if isinstance(a, torch.Tensor) and not torch.equal(a, b)]
        if changed:
            return say(False, f"Case {n} ({case.label}): your function changed its input number {changed[0] + 1} "
                              "in place; work on a copy (or build a new tensor)")
    return say(True, f"Correct: all {len(cases)} cases match lslm's own ✓")


def _hint(ex: CodeExercise, case: Case, got: Any, state: Any = None) -> str:
    """The hint of the usual mistake that ``got`` (and the ``state`` it left) matches, else the
    case's own."""
    for wrong, hint in ex.mistakes:
        try:
            wrong_got, wrong_state = _outcome(ex, wrong, *_inputs(ex, case))
            if _compare(got, wrong_got, ex.atol) is None and _compare(state, wrong_state, ex.atol) is None:
                return hint
        except Exception:  # noqa: BLE001 - a wrong version may not apply to this case
            continue
    return case.hint
