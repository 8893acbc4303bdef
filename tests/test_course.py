"""lslm.course lists the notebooks of notebooks/, in order, with their own titles."""

import json
from pathlib import Path

import pytest

import lslm
from lslm.course import NOTEBOOKS, outline

FOLDER = Path(lslm.__file__).resolve().parents[1] / "notebooks"
pytestmark = pytest.mark.skipif(not FOLDER.is_dir(), reason="needs the repository's notebooks/ folder")


def test_the_list_matches_the_notebooks_folder_exactly():
    on_disk = sorted(p.name for p in FOLDER.glob("*.ipynb"))
    assert [name for name, _ in NOTEBOOKS] == on_disk


def test_each_topic_is_the_notebooks_first_heading():
    for name, topic in NOTEBOOKS:
        cells = json.loads((FOLDER / name).read_text(encoding="utf-8"))["cells"]
        first_line = "".join(cells[0]["source"]).splitlines()[0]
        assert first_line == f"# {name[:2]} · {topic}", name


def test_outline_has_one_line_per_notebook_in_order():
    lines = outline().splitlines()
    assert len(lines) == len(NOTEBOOKS)
    for line, (name, topic) in zip(lines, NOTEBOOKS):
        assert line.startswith(name) and line.endswith(topic)
