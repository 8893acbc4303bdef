"""A plain, non-editable `pip install .` serves the notebooks from any folder.

The new environment installs lslm from a copy of the repository's files; its other
packages (torch, JupyterLab, ...) come from the test environment through a .pth file, so
nothing is downloaded. The notebooks run from a folder outside the repository, where the
repo's own lslm/ and benchmarks/ cannot be found by accident.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ("00_start_here.ipynb", "10_scale_and_compute.ipynb")


def tracked_files() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("needs a git checkout to know which files a release would hold")
    return [f for f in out.stdout.decode().split("\0") if f and (ROOT / f).is_file()]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python, folder): a fresh venv with lslm installed from a copy of the repository."""
    base = tmp_path_factory.mktemp("install")
    source = base / "source"
    for name in tracked_files():
        if not name.endswith(".ipynb"):  # a release of the library does not need them
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    env_dir = base / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    new_site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
    # The test environment's packages, after the new one's own: lslm must come from the new one.
    Path(new_site, "test-env-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--ignore-installed", "--no-index", str(source)], check=True, cwd=base)
    work = base / "class"  # a learner's folder, far from the repository
    work.mkdir()
    return python, work


def test_lslm_comes_from_the_install_and_has_its_data(installed):
    python, work = installed
    code = ("import lslm, lslm.scaling as s; print(lslm.__file__); "
            "print(len(s.load_sweep().runs)); print(s.RECORDED_SWEEP.is_file())")
    out = subprocess.run([python, "-c", code], cwd=work, capture_output=True, text=True, check=True)
    where, runs, recorded = out.stdout.split("\n")[:3]
    assert str(ROOT) not in where and "site-packages" in where, where
    assert int(runs) >= 5 and recorded == "True"


def execute(python: Path, work: Path, name: str) -> list[dict]:
    """Run a notebook in ``work`` with ``python``'s Jupyter; its executed cells."""
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    env.pop("PYTHONPATH", None)
    run = subprocess.run(
        [python, "-m", "nbconvert", "--to", "notebook", "--execute", "--output", f"ran-{name}", name],
        cwd=work, capture_output=True, text=True, env=env, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads((work / f"ran-{name}").read_text(encoding="utf-8"))["cells"]


def test_the_notebook_kernel_runs_in_the_new_environment(installed):
    python, work = installed
    code = "import sys, lslm\nprint(sys.prefix)\nprint(lslm.__file__)"
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {},
          "cells": [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": code}]}
    (work / "where.ipynb").write_text(json.dumps(nb))
    prefix, where = "".join(execute(python, work, "where.ipynb")[0]["outputs"][0]["text"]).split("\n")[:2]
    assert Path(prefix) == python.parent.parent and Path(where).is_relative_to(python.parent.parent)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_outside_the_repository(installed, name):
    python, work = installed
    shutil.copy2(ROOT / "notebooks" / name, work / name)
    cells = execute(python, work, name)
    errors = [o for c in cells for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors
    assert sum(c["cell_type"] == "code" and c.get("execution_count") is not None for c in cells) > 5
