# make demo: create .venv, install toolkit, run the main job offline on the embedded defaults.
# make test: create .venv, install toolkit with the dev, timm and tensorboard extras, run the whole test suite
# (pytest-xdist: one worker per core, each test file on one worker).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo demo-finetune test lint install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[dev,timm,tensorboard]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/toolkit demo --out runs/demo

demo-finetune: install
	$(BIN)/toolkit demo --finetune --out runs/demo

test: install-dev
	$(BIN)/python -m pytest -n auto --dist loadfile

lint: install-dev
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) build dist *.egg-info
