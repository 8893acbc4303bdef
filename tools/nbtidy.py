"""Keep the saved notebooks small, diffable and fair to learners. Run before committing:

    python tools/nbtidy.py notebooks/*.ipynb          # rewrite in place
    python tools/nbtidy.py --check notebooks/*.ipynb  # list problems, exit 1 if any

What it does to each notebook (tests/test_notebook_files.py runs ``--check``):

* drops the saved widget state (``metadata.widgets``): it is large, changes on every run,
  and no front end can revive a widget from it without a kernel;
* drops per-cell execution timestamps (``metadata.execution``, ``ExecuteTime``);
* empties the outputs of cells tagged ``solution``, so a saved notebook never shows the
  answer right under the exercise;
* makes the first code cell the Colab set-up cell below (tag ``colab-setup``).

Everything else stays, outputs included: pictures, and the static PNG that every lslm
widget carries for front ends without a kernel.

Like ``nbstripout --keep-output`` with extra keys, but also aware of solution cells and
the Colab cell, and with no git filter to install.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPOSITORY = "https://github.com/lslm-course/lslm"  # pyproject.toml [project.urls]

COLAB_TAG = "colab-setup"
SOLUTION_TAG = "solution"
COLAB_SOURCE = f'''\
# On Google Colab: install lslm and turn on Colab's widget support. Elsewhere: does nothing.
import sys

if "google.colab" in sys.modules:
    import importlib.util

    if importlib.util.find_spec("lslm") is None:
        get_ipython().run_line_magic("pip", "install --quiet 'lslm[notebooks] @ git+{REPOSITORY}'")
    import ipywidgets

    if int(ipywidgets.__version__.split(".")[0]) < 8:  # Colab's own copy was imported first
        raise RuntimeError("Restart the session (Runtime → Restart session), then run all cells again.")
    from google.colab import output

    output.enable_custom_widget_manager()'''

_CELL_KEYS = ("execution", "ExecuteTime")


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def colab_cell() -> dict:
    return {
        "cell_type": "code",
        "execution_count": None,
        "metadata": {"tags": [COLAB_TAG]},
        "outputs": [],
        "source": COLAB_SOURCE.splitlines(keepends=True),
    }


def problems(nb: dict) -> list[str]:
    """What ``tidy`` would change, in words."""
    found = []
    if "widgets" in nb.get("metadata", {}):
        found.append("saved widget state (metadata.widgets)")
    for i, cell in enumerate(nb["cells"]):
        meta = cell.get("metadata", {})
        if any(k in meta for k in _CELL_KEYS):
            found.append(f"cell {i}: execution timestamps")
        if SOLUTION_TAG in _tags(cell) and cell.get("outputs"):
            found.append(f"cell {i}: a solution cell with saved output")
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    if not code or COLAB_TAG not in _tags(code[0]) or _source(code[0]) != COLAB_SOURCE:
        found.append("the first code cell is not the Colab set-up cell")
    if sum(COLAB_TAG in _tags(c) for c in code) > 1:
        found.append("more than one Colab set-up cell")
    return found


def tidy(nb: dict) -> dict:
    """The notebook with widget state, timestamps and solution outputs gone (in place)."""
    nb.get("metadata", {}).pop("widgets", None)
    cells = [c for c in nb["cells"] if COLAB_TAG not in _tags(c)]
    for cell in cells:
        meta = cell.setdefault("metadata", {})
        for key in _CELL_KEYS:
            meta.pop(key, None)
        if SOLUTION_TAG in _tags(cell):
            cell["outputs"] = []
            cell["execution_count"] = None
    first_code = next((i for i, c in enumerate(cells) if c["cell_type"] == "code"), len(cells))
    cells.insert(first_code, colab_cell())
    nb["cells"] = cells
    return nb


def dumps(nb: dict) -> str:
    """The text Jupyter itself writes (one-space indent, unescaped Unicode)."""
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--check", action="store_true", help="only report; exit 1 if anything would change")
    args = parser.parse_args(argv)
    status = 0
    for path in args.notebooks:
        nb = json.loads(path.read_text(encoding="utf-8"))
        if args.check:
            for problem in problems(nb):
                print(f"{path}: {problem}")
                status = 1
            continue
        before = path.stat().st_size
        text = dumps(tidy(nb))
        if text != path.read_text(encoding="utf-8"):
            path.write_text(text, encoding="utf-8")
            print(f"{path}: {before:,} -> {path.stat().st_size:,} bytes")
    return status


if __name__ == "__main__":
    sys.exit(main())
