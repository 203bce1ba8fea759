# One entry point for humans and CI. Every target creates or refreshes .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(VENV)/.installed $@

demo: $(VENV)/.installed
	@bash sample_data/demo.sh $(BIN)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check uploader tests sample_data $(wildcard bench)
	$(BIN)/ruff format --check uploader tests sample_data $(wildcard bench)
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

# Generates the data (1M and 10M rows) on first use, then runs every contender; 20-40 min.
# Results: bench/results/results.json, docs/benchmarks.png; write-up in docs/benchmarks.md.
bench: $(VENV)/.installed-dev
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .uploader out
