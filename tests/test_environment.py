"""The pip route (pyproject.toml) and the conda route (environment.yml) ask for the same packages."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch": "torch"}  # conda-forge's name -> PyPI's name


def parse(requirement: str) -> tuple[str, str]:
    m = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(.*)", requirement)
    name, spec = m.group(1).lower(), m.group(2).replace(" ", "")
    return CONDA_NAMES.get(name, name), spec


def pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    return dict(parse(r) for r in reqs)


def conda_requirements() -> dict[str, str]:
    reqs, in_deps = [], False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if line.startswith("dependencies:"):
            in_deps = True
        elif in_deps and re.match(r"^  - [A-Za-z]", line):
            reqs.append(line[4:].split("#")[0].strip())
        elif in_deps and line and not line.startswith(" "):
            in_deps = False
    return dict(parse(r) for r in reqs if not r.startswith(("python", "pip")))


def test_conda_and_pip_list_the_same_packages_and_versions():
    pip, conda = pyproject_requirements(), conda_requirements()
    assert pip, "no dependencies found in pyproject.toml"
    assert conda == pip


def test_design_card_packages_are_all_there():
    for name in ("jupyterlab", "torch", "matplotlib", "ipywidgets", "nbval", "sentencepiece"):
        assert name in pyproject_requirements()


def test_environment_installs_the_project_itself():
    assert "- -e ." in (ROOT / "environment.yml").read_text()


def test_setup_pins_the_cpu_torch_and_ci_runs_the_readme_command():
    makefile = (ROOT / "Makefile").read_text()
    assert "torch==2.13.0" in makefile
    readme = (ROOT / "README.md").read_text()
    first_screen = "\n".join(readme.splitlines()[:40])
    assert "make lab" in first_screen and "make test" in first_screen
    assert "make test" in (ROOT / ".ci" / "run").read_text()
