# The two commands of the README. Each needs only python3 (>= 3.10, with venv and pip) and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test demo sources nbtest pytest export clean-venv

# (Re)install the project with its dev extra whenever pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

## make test: package == notebooks, notebooks clean, README fresh, notebook tests, pytest (stops at the first failure)
test: sources nbtest pytest

sources: $(STAMP)
	$(BIN)/python tools/check_sources.py

nbtest: $(STAMP) sources
	$(BIN)/nbdev-test --n-workers 2 --timing

pytest: $(STAMP) sources nbtest
	$(BIN)/python -m pytest -q tests

## make demo: the main job on the embedded synthetic benchmark (writes under runs/)
demo: $(STAMP)
	$(BIN)/ssl_mae demo --out runs

## developer helpers: regenerate the package and the README from the notebooks
export: $(STAMP)
	$(BIN)/nbdev-export && $(BIN)/nbdev-clean && $(BIN)/python tools/make_readme.py

clean-venv:
	rm -rf $(VENV)
