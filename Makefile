# Entry points, each doing its own set-up on a fresh machine:
#   make demo   - fit LocalFlowMatching next to scikit-learn baselines; writes sklfm_demo.png
#   make test   - run the test suite
#   make docs   - build the documentation site into docs/_build/html (warnings are errors)
# The virtual environment (.venv) is created once and refreshed only when
# pyproject.toml changes (stamp files). torch is pinned and installed first:
# an unpinned resolve could pull a multi-GB CUDA build; on the project's machines
# the pin resolves to a local CPU wheel.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TORCH  := torch==2.13.0
PIP    := $(BIN)/python -m pip
# Extra demo options, e.g. make demo DEMO_ARGS="--out /tmp/demo.png --toy rings"
DEMO_ARGS ?=

.PHONY: demo test docs readme-figure clean-venv

demo: $(VENV)/.stamp-demo
	$(BIN)/python -m sklfm demo $(DEMO_ARGS)

test: $(VENV)/.stamp-test
	$(BIN)/python -m pytest -q tests

# Warnings are errors. docs/conf.py runs the gallery with one torch thread.
docs: $(VENV)/.stamp-docs
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

# The README's picture, from the gallery's block-by-block example.
readme-figure: $(VENV)/.stamp-docs
	$(BIN)/python docs/make_readme_figure.py

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The torch pin is part of the stamp rule, so a changed pin reinstalls too.
$(VENV)/.stamp-torch: Makefile | $(BIN)/python
	$(PIP) install $(TORCH)
	touch $@

$(VENV)/.stamp-test: pyproject.toml Makefile $(VENV)/.stamp-torch
	$(PIP) install -e '.[test]'
	touch $@

$(VENV)/.stamp-demo: pyproject.toml Makefile $(VENV)/.stamp-torch
	$(PIP) install -e '.[demo]'
	touch $@

$(VENV)/.stamp-docs: pyproject.toml Makefile $(VENV)/.stamp-torch
	$(PIP) install -e '.[docs]'
	touch $@

clean-venv:
	rm -rf $(VENV)
