# Two commands do everything: `make lab` (set up, then open the notebooks) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A CPU build of torch. On a laptop whose pip would fetch a CUDA build, add
# TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu".
TORCH ?= torch==2.13.0
TORCH_PIP_ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup lab test unit notebooks tidy student-copy bench clean

# `setup` installs everything `make test` needs; `make lab` installs only the lab extra.
setup: $(VENV)/.installed

# The venv and the pinned CPU torch, shared by both installs below.
$(VENV)/.torch: Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH)"
	@touch $@

# lslm with the lab extra: JupyterLab and what the notebooks import (pyproject.toml).
$(VENV)/.lab: pyproject.toml $(VENV)/.torch
	$(BIN)/python -m pip install --quiet -e ".[lab]"
	@touch $@

# lslm with the test extra: the lab extra plus pytest, nbval and playwright.
$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(BIN)/python -m pip install --quiet -e ".[test]"
	@touch $@
	@echo "lslm is set up in $(VENV)"

# Jupyter refuses to run as root unless told; containers and CI machines often are root.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)

lab: $(VENV)/.lab
	$(BIN)/jupyter lab $(ROOT_FLAG) notebooks/

# Unit tests, then every notebook under nbval, in one pytest run.
test: setup
	$(BIN)/python -m pytest tests notebooks --nbval --nbval-current-env \
		--nbval-sanitize-with notebooks/sanitize.cfg $(PYTEST_ARGS)

unit: setup
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

notebooks: setup
	$(BIN)/python -m pytest notebooks --nbval --nbval-current-env \
		--nbval-sanitize-with notebooks/sanitize.cfg $(PYTEST_ARGS)

# Before committing notebooks: drop widget state, timestamps and solution outputs (tools/nbtidy.py).
tidy:
	$(PYTHON) tools/nbtidy.py notebooks/[0-9][0-9]_*.ipynb

# The notebooks without their solutions, to hand out: make student-copy OUT=handout
OUT ?= student-notebooks
student-copy: $(VENV)/.lab
	$(BIN)/python -m lslm student-copy $(OUT)

# Appends its figures to benchmarks/RESULTS.md; about 45 minutes on a 2-core CPU. Run it idle.
bench: setup
	$(BIN)/python benchmarks/bench_train.py --runs 3 --record benchmarks/RESULTS.md
	$(BIN)/python benchmarks/bench_train.py --recipe quick --runs 3 --record benchmarks/RESULTS.md
	$(BIN)/python benchmarks/bench_generate.py
	$(BIN)/python benchmarks/bench_notebooks.py --nbval --runs 3 --record benchmarks/RESULTS.md

clean:
	rm -rf $(VENV) .pytest_cache runs
