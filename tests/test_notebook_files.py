"""The saved notebooks as files: what a reader sees without running them, and links between them."""

import copy
import importlib.util
import json
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

_spec = importlib.util.spec_from_file_location("nbtidy", ROOT / "tools" / "nbtidy.py")
nbtidy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nbtidy)

# Anything below U+0020 but a newline, and DEL: a TAB in "\text" once broke LaTeX silently.
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")
LINK = re.compile(r"\[[^\]]+\]\(([^)\s]+)\)")
# tqdm's text at the start of a run, e.g. "  0%|          | 0/600 [00:00<?, ?step/s]".
ZERO_PERCENT_BAR = re.compile(r"(^|\s)0%\|")


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def source(cell: dict) -> str:
    return "".join(cell["source"])


def output_texts(cell: dict):
    for out in cell.get("outputs", []):
        if "text" in out:
            yield "".join(out["text"])
        for mime, value in out.get("data", {}).items():
            if mime.startswith("text/"):
                yield "".join(value)


def test_the_suite_is_there():
    assert len(NOTEBOOKS) >= 13
    assert [p.name[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(len(NOTEBOOKS))]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_saved_notebook_is_tidy(path):
    """No widget state, no timestamps, no visible solutions, the Colab cell first (tools/nbtidy.py)."""
    assert nbtidy.problems(load(path)) == [], f"run: python tools/nbtidy.py {path.relative_to(ROOT)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_markdown_has_no_control_characters(path):
    for i, cell in enumerate(load(path)["cells"]):
        if cell["cell_type"] == "markdown":
            bad = CONTROL.search(source(cell))
            assert bad is None, f"cell {i} holds {bad[0]!r} near {source(cell)[max(bad.start() - 20, 0):bad.end() + 20]!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_last_link_opens_the_next_notebook(path):
    cells = [c for c in load(path)["cells"] if c["cell_type"] == "markdown"]
    links = LINK.findall(source(cells[-1]))
    assert links, f"{path.name}'s last markdown cell has no link"
    later = NOTEBOOKS[NOTEBOOKS.index(path) + 1:]
    expected = later[0].name if later else "../README.md"
    assert links[-1] == expected
    assert (path.parent / links[-1]).is_file()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_saved_progress_bars_are_finished(path):
    for i, cell in enumerate(load(path)["cells"]):
        for text in output_texts(cell):
            assert not ZERO_PERCENT_BAR.search(text), f"cell {i} saved a bar that never moved: {text[:80]!r}"
        for out in cell.get("outputs", []):
            plain = "".join(out.get("data", {}).get("text/plain", ""))
            assert not ("application/vnd.jupyter.widget-view+json" in out.get("data", {})
                        and re.search(r"\d+/\d+ \[", plain)), f"cell {i}: a tqdm widget was saved"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_solution_cell_is_tagged(path):
    """The code cell after a "Solution" box is tagged, so nbtidy stores it without its answer."""
    cells = load(path)["cells"]
    solutions = [i for i, c in enumerate(cells) if "solution" in c["metadata"].get("tags", [])]
    after_box = [i + 1 for i, c in enumerate(cells[:-1])
                 if c["cell_type"] == "markdown" and "<summary>Solution" in source(c)
                 and cells[i + 1]["cell_type"] == "code"]
    assert after_box, f"{path.name} has no solution box"
    # the others are the hidden cells that check a coding exercise's worked solution, right
    # after its exercise cell
    worked = [i for i in solutions if i not in after_box]
    for i in worked:
        assert "exercise" in cells[i - 1]["metadata"].get("tags", []), f"cell {i}: a solution cell after no exercise"
        assert cells[i]["metadata"].get("jupyter", {}).get("source_hidden"), f"cell {i}: its source is not hidden"
        assert "lslm.checks.solutions" in source(cells[i])
    assert set(after_box) <= set(solutions)


def test_tidy_strips_state_and_answers_but_keeps_pictures():
    png = {"output_type": "display_data", "metadata": {}, "data": {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}}
    answer = {"output_type": "stream", "name": "stdout", "text": "Correct: 0.8807 ✓\n"}
    nb = {
        "metadata": {"widgets": {"application/vnd.jupyter.widget-state+json": {"state": {}}}},
        "nbformat": 4, "nbformat_minor": 5,
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": ["# Goal"]},
            {"cell_type": "code", "execution_count": 1, "outputs": [png], "source": ["plot()"],
             "metadata": {"execution": {"iopub.execute_input": "2026-11-28T15:40:09Z"}}},
            {"cell_type": "code", "execution_count": 2, "outputs": [answer], "source": ["check()"],
             "metadata": {"tags": ["solution"], "ExecuteTime": {"end_time": "x"}}},
        ],
    }
    before = copy.deepcopy(nb)
    assert len(nbtidy.problems(before)) == 5  # state, 2 timestamps, an answer, no Colab cell
    tidied = nbtidy.tidy(nb)
    assert nbtidy.problems(tidied) == []
    assert tidied["cells"][1]["source"] == nbtidy.colab_cell()["source"]
    assert tidied["cells"][2]["outputs"] == [png]  # pictures stay
    assert tidied["cells"][3]["outputs"] == [] and tidied["cells"][3]["execution_count"] is None
    assert nbtidy.dumps(nbtidy.tidy(copy.deepcopy(tidied))) == nbtidy.dumps(tidied)  # idempotent


def test_the_colab_cell_is_valid_python_and_installs_from_the_projects_repository():
    compile(nbtidy.COLAB_SOURCE, "colab-cell", "exec")
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]
    assert urls["Repository"] == nbtidy.REPOSITORY
    assert f"git+{nbtidy.REPOSITORY}" in nbtidy.COLAB_SOURCE


def test_readme_opens_every_notebook_in_colab():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    repo = nbtidy.REPOSITORY.removeprefix("https://github.com/")
    for path in NOTEBOOKS:
        url = f"https://colab.research.google.com/github/{repo}/blob/main/notebooks/{path.name}"
        assert url in readme, f"README has no Colab link for {path.name}"
