"""Student copies: no solution text in them, and scaffolds filled with the worked solutions pass
every check."""

import inspect
import json
import re
from pathlib import Path

import pytest

from lslm.checks import CODE_EXERCISES
from lslm.checks import solutions as S
from lslm.cli import main
from lslm.errors import LslmError
from lslm.student import student_copy

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def source(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def tags(cell) -> list:
    return cell.get("metadata", {}).get("tags", [])


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    out = tmp_path_factory.mktemp("students")
    assert main(["student-copy", str(out)]) == 0
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(out.glob("*.ipynb"))}


def solution_lines() -> set[str]:
    """The lines that give a worked solution away: those of the bodies of lslm.checks.solutions
    that the rest of lslm (which a learner may read) does not hold too, such as an F1 formula."""
    library = set()
    for path in (ROOT / "lslm").rglob("*.py"):
        if path.name != "solutions.py":
            library |= {line.strip() for line in path.read_text(encoding="utf-8").splitlines()}
    lines = set()
    for name in CODE_EXERCISES:
        body = inspect.getsource(getattr(S, name)).splitlines()[1:]
        lines |= {line.strip() for line in body if len(line.strip()) > 20}
    assert len(lines - library) > 3 * len(CODE_EXERCISES)  # most of each solution is its own
    return lines - library


def test_every_notebook_is_copied_without_its_solutions(copies):
    assert sorted(copies) == [p.name for p in NOTEBOOKS]
    giveaways = solution_lines()
    for name, nb in copies.items():
        original = json.loads((ROOT / "notebooks" / name).read_text(encoding="utf-8"))
        assert len(nb["cells"]) < len(original["cells"]), f"{name}: nothing was removed"
        for cell in nb["cells"]:
            text = source(cell)
            assert "solution" not in tags(cell), name
            assert "<summary>Solution" not in text and "lslm.checks.solutions" not in text, name
            assert not giveaways & {line.strip() for line in text.splitlines()}, name
        # everything else is kept, in order
        kept = [source(c) for c in original["cells"] if "solution" not in tags(c)
                and "<summary>Solution" not in source(c)]
        assert [source(c) for c in nb["cells"]] == kept


def test_the_copies_hold_every_coding_exercise_once_and_every_notebook_has_one(copies):
    found = []
    for name, nb in copies.items():
        here = [ex for cell in nb["cells"] if "exercise" in tags(cell)
                for ex in re.findall(r"check_code\('(\w+)'", source(cell))]
        assert here, f"{name} has no coding exercise"
        found += here
    assert sorted(found) == sorted(CODE_EXERCISES)


def test_scaffolds_filled_with_the_worked_solutions_pass_every_check(copies, capsys):
    passed = []
    for nb in copies.values():
        for cell in nb["cells"]:
            if "exercise" not in tags(cell):
                continue
            text = source(cell)
            name = re.search(r"^def (\w+)\(", text, re.M).group(1)
            head, _, check_line = text.rpartition("\n")
            namespace: dict = {}
            exec(compile(head, "<scaffold>", "exec"), namespace)  # the scaffold as it is: not written yet
            assert not eval(check_line, namespace)
            filled = "from lslm.checks import check_code\n" + inspect.getsource(getattr(S, name))
            namespace = {"math": __import__("math"), "torch": __import__("torch")}
            exec(compile(filled, "<filled>", "exec"), namespace)
            assert eval(check_line, namespace), capsys.readouterr().out
            passed.append(name)
    assert sorted(passed) == sorted(CODE_EXERCISES)


def test_student_copy_refuses_bad_folders(tmp_path):
    with pytest.raises(LslmError, match="no notebooks"):
        student_copy(tmp_path / "out", source=tmp_path)
    with pytest.raises(LslmError, match="overwrite"):
        student_copy(ROOT / "notebooks")
    (tmp_path / "file").write_text("x")
    with pytest.raises(LslmError, match="is a file"):
        student_copy(tmp_path / "file")
