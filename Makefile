# Two commands on a fresh machine:  `make demo` (the whole job on local defaults) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_OUT ?= runs/demo

.PHONY: install demo test lint

install: $(VENV)/.installed

# torch/torchvision are pinned first (these machines serve them from local disk); the rest of the
# project and its dev tools follow. The stamp re-runs the install when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

demo: install
	$(BIN)/python -m jobs.pipeline --out $(DEMO_OUT)

lint: install
	$(BIN)/ruff check .

test: lint
	$(BIN)/pytest -q
