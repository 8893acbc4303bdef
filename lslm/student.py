"""Student copies of the notebooks: every solution taken out, every exercise left to do.

``student_copy(out_dir)`` (or ``lslm student-copy OUT_DIR``) writes each notebook without

* the code cells tagged ``solution`` (the "check yourself" answers, and the hidden cells that
  check a coding exercise's worked solution), with their outputs;
* the Markdown "Solution" boxes (``<details><summary>Solution``).

The exercise cells (tagged ``exercise``) stay as the scaffolds they are, so a student fills
them in and runs the check in the same cell. Nothing needs the network or another package.
"""

from __future__ import annotations

import json
from pathlib import Path

from lslm.errors import LslmError

SOLUTION_TAG = "solution"
SOLUTION_BOX = "<summary>Solution"


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def is_solution(cell: dict) -> bool:
    """A cell the student copy leaves out."""
    tags = cell.get("metadata", {}).get("tags", [])
    return SOLUTION_TAG in tags or (cell.get("cell_type") == "markdown" and SOLUTION_BOX in _source(cell))


def strip_solutions(nb: dict) -> dict:
    """``nb`` without its solution cells (a new dict; ``nb`` is left as it is)."""
    out = dict(nb)
    out["cells"] = [c for c in nb.get("cells", []) if not is_solution(c)]
    return out


def default_source() -> Path:
    """The notebooks of a checkout: ``notebooks/`` beside the ``lslm`` package."""
    return Path(__file__).resolve().parents[1] / "notebooks"


def student_copy(out_dir: str | Path, source: str | Path | None = None) -> list[Path]:
    """Write the student copy of every ``NN_*.ipynb`` in ``source`` to ``out_dir``; return the paths."""
    source = Path(source) if source is not None else default_source()
    notebooks = sorted(source.glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        raise LslmError(f"no notebooks (NN_name.ipynb) in {source}: pass the notebooks folder of an lslm "
                        "checkout with --from")
    out = Path(out_dir)
    if out.resolve() == source.resolve():
        raise LslmError("the student copy would overwrite the notebooks it is made from: pick another folder")
    if out.exists() and not out.is_dir():
        raise LslmError(f"{out} is a file: give a folder for the student copies")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks:
        try:
            nb = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise LslmError(f"could not read {path} ({e}): restore it from the repository") from None
        target = out / path.name
        tmp = target.with_suffix(".ipynb.tmp")
        tmp.write_text(json.dumps(strip_solutions(nb), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(target)
        written.append(target)
    return written
