# The commands of the README. Each needs only python3 (>= 3.10, with venv and pip) and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# make lab: where JupyterLab listens and what it serves, e.g. `make lab PORT=8899`; on a remote machine
# `make lab IP=0.0.0.0` (or an ssh tunnel to the default loopback address) and open the printed URL.
# TOKEN empty: the server draws a random token and prints it in the URL.
IP       ?= 127.0.0.1
PORT     ?= 8888
TOKEN    ?=
LAB_DIR  ?= nbs
LAB_ARGS ?=
# a browser tab opens only on a desktop (X11, Wayland or macOS); otherwise open the printed URL yourself
NO_BROWSER ?= $(if $(DISPLAY)$(WAYLAND_DISPLAY)$(filter Darwin,$(shell uname -s)),,--no-browser)
# as root (as in many containers) Jupyter refuses to start unless told; its kernels then run as root
ALLOW_ROOT  = $(if $(ROOT_USER),--allow-root)
ROOT_USER   = $(filter 0,$(shell id -u))

# make test-browser: the Chromium it drives (Debian's `chromium` package, installed with apt when missing)
CHROMIUM ?= /usr/bin/chromium
SUDO      = $(if $(ROOT_USER),,sudo)

.PHONY: test demo lab test-browser sources nbtest pytest export clean-venv

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

## make lab: JupyterLab on nbs/ with the .venv's Python as the notebooks' kernel (python3); prints its URL
lab: $(STAMP)
	JUPYTER_PREFER_ENV_PATH=1 $(BIN)/jupyter lab --ServerApp.root_dir=$(LAB_DIR) --ServerApp.ip=$(IP) \
	  --ServerApp.port=$(PORT) $(if $(TOKEN),--IdentityProvider.token=$(TOKEN)) $(NO_BROWSER) \
	  $(ALLOW_ROOT) $(LAB_ARGS)

## make test-browser: a tutorial runs top to bottom in JupyterLab in headless Chromium (minutes; not in `make test`)
test-browser: $(VENV)/.installed-browser
	test -x $(CHROMIUM) || $(SUDO) apt-get install -y chromium || \
	  { $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium; }
	CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest -q -m browser tests/test_browser.py

$(VENV)/.installed-browser: $(STAMP)
	$(BIN)/python -m pip install -q -e ".[dev,browser]"
	touch $@

## make demo: the main job on the embedded synthetic benchmark (writes under runs/)
demo: $(STAMP)
	$(BIN)/ssl_mae demo --out runs

## developer helpers: regenerate the package and the README from the notebooks
export: $(STAMP)
	$(BIN)/nbdev-export && $(BIN)/nbdev-clean && $(BIN)/python tools/make_readme.py

clean-venv:
	rm -rf $(VENV)
