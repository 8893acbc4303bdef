"""Dependencies by need: the core install is what lslm imports, the extras hold the rest,
and the conda route (environment.yml) asks for the same packages as the pip route."""

import ast
import json
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch": "torch"}  # conda-forge's name -> PyPI's name
# Import name -> the distribution that provides it, where the two differ.
PROVIDED_BY = {"IPython": "ipywidgets"}  # ipywidgets depends on IPython


def parse(requirement: str) -> tuple[str, str]:
    m = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(.*)", requirement)
    name, spec = m.group(1).lower(), m.group(2).replace(" ", "")
    return CONDA_NAMES.get(name, name), spec


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def core() -> dict[str, str]:
    return dict(parse(r) for r in project()["dependencies"])


def extra(name: str) -> dict[str, str]:
    """The packages an extra installs, other extras it names (``lslm[...]``) included."""
    reqs: dict[str, str] = {}
    for r in project()["optional-dependencies"][name]:
        if m := re.fullmatch(r"lslm\[([\w,\s-]+)\]", r.strip()):
            for other in m.group(1).split(","):
                reqs.update(extra(other.strip()))
        else:
            reqs.update([parse(r)])
    return reqs


def pyproject_requirements() -> dict[str, str]:
    """Everything: the core dependencies and every extra."""
    reqs = core()
    for name in project()["optional-dependencies"]:
        reqs.update(extra(name))
    return reqs


def third_party_imports(sources: dict[str, str]) -> dict[str, set[str]]:
    """Top-level modules imported anywhere in ``sources`` (name -> code) that are neither
    the standard library nor lslm, each with the names of the sources that import it."""
    found: dict[str, set[str]] = {}
    for where, code in sources.items():
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "lslm":
                    found.setdefault(PROVIDED_BY.get(top, top).lower(), set()).add(where)
    return found


def library_imports() -> dict[str, set[str]]:
    files = sorted((ROOT / "lslm").rglob("*.py"))
    return third_party_imports({str(f.relative_to(ROOT)): f.read_text() for f in files})


def notebook_imports() -> dict[str, set[str]]:
    sources = {}
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        # The Colab set-up cell imports google.colab, which exists only on Colab.
        code = ["".join(c["source"]) for c in cells
                if c["cell_type"] == "code" and "colab-setup" not in c["metadata"].get("tags", [])]
        # IPython magics and shell lines are not Python: leave them out.
        lines = [l for c in code for l in c.splitlines() if not l.lstrip().startswith(("%", "!"))]
        sources[nb.name] = "\n".join(lines)
    return third_party_imports(sources)


def conda_sections() -> tuple[dict[str, str], dict[str, str]]:
    """environment.yml's packages: (from conda-forge, from its ``pip:`` section)."""
    conda, pip, section = [], [], None
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if line.startswith("dependencies:"):
            section = conda
        elif section is not None and re.match(r"^  - pip:", line):
            section = pip
        elif section is not None and re.match(r"^ +- [A-Za-z]", line):
            section.append(line.split("- ", 1)[1].split("#")[0].strip())
        elif section is not None and line and not line.startswith(" "):
            section = None

    def named(reqs: list[str]) -> dict[str, str]:
        return dict(parse(r) for r in reqs if not re.match(r"(python|pip)\b", r))

    return named(conda), named(pip)


def conda_requirements() -> dict[str, str]:
    conda, pip = conda_sections()
    assert not set(conda) & set(pip), "a package listed twice in environment.yml"
    return {**conda, **pip}


def test_packages_conda_names_differently_come_from_pip():
    conda, pip = conda_sections()
    assert {"playwright", "pytest", "nbval", "hypothesis"} <= set(pip)
    assert not {"playwright", "pytest", "nbval", "hypothesis", "sacrebleu"} & set(conda)
    assert {"torch", "numpy", "jupyterlab"} <= set(conda)


def test_conda_and_pip_list_the_same_packages_and_versions():
    pip, conda = pyproject_requirements(), conda_requirements()
    assert pip, "no dependencies found in pyproject.toml"
    assert conda == pip


def test_design_card_packages_are_all_there():
    for name in ("jupyterlab", "torch", "matplotlib", "ipywidgets", "nbval", "sentencepiece"):
        assert name in pyproject_requirements()


def test_the_core_install_is_exactly_what_lslm_imports():
    imported = library_imports()
    missing = {m: sorted(where) for m, where in imported.items() if m not in core()}
    assert not missing, f"lslm imports these but the core does not install them: {missing}"
    unused = set(core()) - set(imported)
    assert not unused, f"core dependencies that lslm never imports (make them extras): {unused}"


def test_each_extra_holds_what_its_users_need():
    assert set(extra("tensorboard")) == {"tensorboard"}  # Trainer(tensorboard=...) imports it lazily
    needed = notebook_imports()
    have = {**core(), **extra("notebooks")}
    missing = {m: sorted(where) for m, where in needed.items() if m not in have}
    assert not missing, f"notebooks import these but neither core nor the notebooks extra has them: {missing}"
    assert "transformers" in extra("notebooks") and "transformers" not in core()
    assert set(extra("notebooks")) <= set(extra("lab")) and "jupyterlab" in extra("lab")
    assert "jupyterlab" not in core()
    # `make test` runs every notebook and JupyterLab in a browser: it needs all of the lab extra.
    assert set(extra("lab")) <= set(extra("test"))
    assert {"pytest", "nbval", "playwright"} <= set(extra("test"))


def test_make_lab_and_make_test_install_their_extras():
    makefile = (ROOT / "Makefile").read_text()

    def recipe(target: str) -> str:
        m = re.search(rf"^{re.escape(target)}:[^\n]*\n((?:\t[^\n]*\n)*)", makefile, re.M)
        assert m, f"no {target} rule in the Makefile"
        return m.group(1)

    assert re.match(r"lab: \$\(VENV\)/\.lab\b", re.search(r"^lab:.*$", makefile, re.M).group(0))
    assert '-e ".[lab]"' in recipe("$(VENV)/.lab")
    assert re.search(r"^test: setup$", makefile, re.M) and re.search(r"^setup: \$\(VENV\)/\.installed$", makefile, re.M)
    assert '-e ".[test]"' in recipe("$(VENV)/.installed")


def test_environment_installs_the_project_itself():
    assert "- -e ." in (ROOT / "environment.yml").read_text()


def test_setup_pins_the_cpu_torch_and_ci_runs_the_readme_command():
    makefile = (ROOT / "Makefile").read_text()
    assert "torch==2.13.0" in makefile
    readme = (ROOT / "README.md").read_text()
    first_screen = "\n".join(readme.splitlines()[:40])
    assert "make lab" in first_screen and "make test" in first_screen
    assert "make test" in (ROOT / ".ci" / "run").read_text()
