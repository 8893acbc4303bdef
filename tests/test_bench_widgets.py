"""benchmarks/bench_widgets.py times every control of every widget: its code path, on a tiny setup.

Only the structure of what it reports is checked here, not the timings.
"""

import inspect
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_widgets  # noqa: E402

import lslm.widgets  # noqa: E402
from lslm.errors import LslmError  # noqa: E402
from lslm.model import GPT, GPTConfig  # noqa: E402
from lslm.tokenizers import train_tokenizer  # noqa: E402

from .conftest import RHYME  # noqa: E402

# Sizes RHYME can train both a BPE and a unigram tokenizer of.
TINY_VOCABS = (290, 292, 294, 295, 296)


@pytest.fixture(scope="module")
def tiny():
    tok = train_tokenizer("char", RHYME)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=2, n_head=2,
                          n_embd=16))
    return model, tok


def test_every_widget_and_control_is_timed(tiny):
    model, tok = tiny
    rows = bench_widgets.run(model, tok, ["lslm.widgets"], changes=2, n_tokens=12,
                             corpus=RHYME, history_steps=30, text=RHYME,
                             vocab_sizes=TINY_VOCABS)
    widget_classes = {
        name for name, obj in inspect.getmembers(lslm.widgets, inspect.isclass)
        if issubclass(obj, lslm.widgets.PlotWidget) and obj is not lslm.widgets.PlotWidget
    }
    timed = {row["widget"].split(" ")[0] for row in rows}
    assert timed == widget_classes  # a new widget must get its rows in the benchmark

    for row in rows:
        assert set(row) == {"widget", "control", "module", "changes", "median_ms", "max_ms",
                            "first_visit"}
        assert row["module"] == "lslm.widgets"
        assert 0 < row["median_ms"] <= row["max_ms"]
        # first-time rows time each of their values once; the others the changes asked for
        if not row["first_visit"]:
            assert row["changes"] == 2
    first_time = {r["control"]: r["changes"] for r in rows if r["first_visit"]}
    assert first_time == {"vocab_size (first time: trains)": len(TINY_VOCABS) - 2,
                          "view (first switch to lines: builds its picture)": 1}
    controls = {(r["widget"], r["control"]) for r in rows}
    for name in ("layer", "head", "query"):
        assert ("AttentionExplorer (heatmap)", name) in controls
        assert ("AttentionExplorer (lines)", name) in controls
    for name in ("temperature", "top_k", "top_p", "prompt"):
        assert ("SamplingPlayground", name) in controls
    assert len(controls) == len(rows)

    table = bench_widgets.table(rows, ["lslm.widgets"])
    lines = table.splitlines()
    assert len(lines) == 2 + len(rows)
    assert all(line.startswith("| ") and line.endswith(" |") for line in lines)
    assert table.count("first visit: not held to it") == 2  # training a tokenizer, a new view


def test_two_packages_take_turns(tiny, monkeypatch):
    model, tok = tiny
    monkeypatch.setitem(sys.modules, "widgets_before", lslm.widgets)  # stands for an old copy
    only = lambda case: case.widget == "ConfigExplorer" and case.control == "bias"  # noqa: E731
    rows = bench_widgets.run(model, tok, ["lslm.widgets", "widgets_before"], changes=3,
                             only=only, n_tokens=12, text=RHYME)
    assert [(r["control"], r["module"], r["changes"]) for r in rows] == [
        ("bias", "lslm.widgets", 3), ("bias", "widgets_before", 3)]
    table = bench_widgets.table(rows, ["lslm.widgets", "widgets_before"])
    assert "widgets_before median ms" in table and table.count("| ConfigExplorer | bias |") == 1
    with pytest.raises(LslmError, match="once"):
        bench_widgets.run(model, tok, ["lslm.widgets", "lslm.widgets"], changes=1, only=only)


def test_text_of_gives_exactly_n_tokens(tiny):
    _, tok = tiny
    assert len(tok.encode(bench_widgets.text_of(tok, 12, RHYME))) == 12
    with pytest.raises(LslmError, match="fewer than"):
        bench_widgets.text_of(tok, 10_000, RHYME)
