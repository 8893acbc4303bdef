"""Property-based tests of the command line (Hypothesis).

For every numeric option of ``lslm train``, ``lslm eval`` and ``lslm sample``, any value
(an integer of any size, any float, NaN and infinities included, or an odd string) either
works (exit 0) or is refused with exit status 2 and exactly one stderr line that starts with
"lslm CMD: error:". Never another exception, never a traceback, never a hang.

Each example runs ``main`` in-process on a tiny setup. What would make a valid value slow
is made small, not skipped: training stops after one step (and at most two micro-batches),
the machine is said to have 8 MB of memory (so the memory check refuses big shapes early)
and ``lslm sample`` allows 64 new tokens. A hang fails the example after PER_EXAMPLE_S.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import shutil
from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from lslm import cli, devices
from lslm.cli import main
from lslm.train import Trainer
from tests.conftest import RHYME, time_limit

PER_EXAMPLE_S = 60
TINY = ["--n-layer", "1", "--n-head", "1", "--n-embd", "8", "--block-size", "8", "--batch-size", "2",
        "--max-iters", "1", "--eval-interval", "0", "--no-progress"]
TRAIN_OPTIONS = ["--vocab-size", "--n-layer", "--n-head", "--n-embd", "--block-size", "--dropout",
                 "--batch-size", "--grad-accum", "--max-iters", "--lr", "--eval-interval", "--seed"]
EVAL_OPTIONS = ["--max-tokens"]
SAMPLE_OPTIONS = ["--max-new-tokens", "--temperature", "--top-k", "--top-p", "--seed"]

ODD = ["", " ", "-", "1e3", "0x10", "1_000", "-0", "+3", "nan", "-inf", "inf", "1e309", "\u0661\u0662",
       "3.", ".5", "1/2", "\n", "9" * 5000, "0" * 100 + "7", "\x00", "\u2028", "True", "None", "[1]"]
VALUES = st.one_of(
    st.integers(),  # any size, either sign
    st.integers(min_value=-3, max_value=600),  # the small values where ranges begin and end
    st.floats(),  # NaN and infinities included
    st.sampled_from(ODD),
    st.text(max_size=6),
)
SETTINGS = settings(
    max_examples=30,
    deadline=timedelta(seconds=PER_EXAMPLE_S / 2),
    derandomize=True,  # the same examples on every run: a CI failure can be replayed
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)



def run_cli(argv: list[str]) -> tuple[int, str]:
    """``main(argv)`` -> (exit status, stderr), argparse's own exits included."""
    err = io.StringIO()
    with time_limit(PER_EXAMPLE_S), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
    return code, err.getvalue()


def check_outcome(command: str, code: int, err: str) -> None:
    event(f"exit {code}")  # --hypothesis-show-statistics tells how many values worked
    assert "Traceback" not in err, err
    assert code in (0, 2), (code, err)
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith(f"lslm {command}: error:"), lines[0]


def as_text(value: object) -> str:
    return value if isinstance(value, str) else str(value)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny corpus and a tiny trained run to evaluate and sample from."""
    base = tmp_path_factory.mktemp("props")
    corpus = base / "rhyme.txt"
    corpus.write_text(RHYME, encoding="utf-8")
    run = base / "run"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["train", "--out", str(run), "--corpus", str(corpus), *TINY, "--max-iters", "2"]) == 0
    return {"base": base, "corpus": corpus, "run": run, "outs": itertools.count()}


@pytest.fixture
def small(monkeypatch):
    """Make every accepted value cheap to run (see the module docstring)."""
    fit = Trainer.fit

    def one_step(self, max_iters=None):
        self.config = replace(self.config, max_iters=min(self.config.max_iters, self.step + 1),
                              grad_accum=min(self.config.grad_accum, 2), eval_iters=2)
        return fit(self)

    monkeypatch.setattr(Trainer, "fit", one_step)
    monkeypatch.setattr(devices, "device_memory", lambda device: 8 * 2**20)
    monkeypatch.setattr(cli, "MAX_NEW_TOKENS", 64)


@pytest.mark.parametrize("option", TRAIN_OPTIONS)
@SETTINGS
@given(value=VALUES)
def test_any_value_of_a_train_option_works_or_is_one_error_line(setup, small, option, value):
    out = setup["base"] / f"out{next(setup['outs'])}"
    tokenizer = ["--tokenizer", "bpe"] if option == "--vocab-size" else []
    argv = ["train", "--out", str(out), "--corpus", str(setup["corpus"]), *TINY, *tokenizer,
            f"{option}={as_text(value)}"]
    try:
        code, err = run_cli(argv)
        check_outcome("train", code, err)
    finally:
        shutil.rmtree(out, ignore_errors=True)


@pytest.mark.parametrize("option", EVAL_OPTIONS)
@SETTINGS
@given(value=VALUES)
def test_any_value_of_an_eval_option_works_or_is_one_error_line(setup, small, option, value):
    code, err = run_cli(["eval", "--ckpt", str(setup["run"]), f"{option}={as_text(value)}"])
    check_outcome("eval", code, err)


@pytest.mark.parametrize("option", SAMPLE_OPTIONS)
@SETTINGS
@given(value=VALUES)
def test_any_value_of_a_sample_option_works_or_is_one_error_line(setup, small, option, value):
    argv = ["sample", "--ckpt", str(setup["run"]), "--prompt", "Twinkle", "--max-new-tokens", "8",
            f"{option}={as_text(value)}"]
    code, err = run_cli(argv)
    check_outcome("sample", code, err)
