"""What the notebook builders (tools/build_nbNN.py) share: cells written as code, then one
notebook file. A builder calls ``md`` and ``code`` in order, then ``write``."""

import sys

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

cells = []


def md(text: str) -> None:
    cells.append(new_markdown_cell(text.strip("\n")))


def code(text: str, *tags: str) -> None:
    cells.append(new_code_cell(text.strip("\n"), metadata={"tags": ["nbval-ignore-output", *tags]}))


def exercise_cells(name: str, intro: str) -> list:
    """A coding exercise (``lslm.checks.coding``): the intro, the learner's scaffold (tagged
    ``exercise``) and the hidden cell that checks the worked solution (tagged ``solution``)."""
    from lslm.checks import CODE_EXERCISES

    ex = CODE_EXERCISES[name]
    tags = ["nbval-ignore-output"]
    return [new_markdown_cell(intro.strip("\n")),
            new_code_cell(ex.scaffold(name), metadata={"tags": [*tags, "exercise"]}),
            new_code_cell(ex.solution_cell(name),
                          metadata={"tags": [*tags, "solution"], "jupyter": {"source_hidden": True}})]


def coding_exercise(name: str, intro: str) -> None:
    cells.extend(exercise_cells(name, intro))


def write(default_path: str) -> None:
    """The cells as a notebook at ``sys.argv[1]``, else at ``default_path``."""
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"}})
    nbformat.write(nb, sys.argv[1] if len(sys.argv) > 1 else default_path)
