# make run   — set up .venv and run the demo suite under supervisord (SQLite + simulators)
# make test  — set up .venv and run the checks and the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= config/outboxd.yaml
# WAIT: seconds `make run` waits for every program to be ready
WAIT ?= 60

.PHONY: run test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

test: $(BIN)/.installed
	$(BIN)/ruff check daemon tests ops
	$(BIN)/lint-imports
	$(BIN)/pytest

lint: $(BIN)/.installed
	$(BIN)/ruff check daemon tests ops
	$(BIN)/ruff format --check daemon tests ops
	$(BIN)/lint-imports
	$(BIN)/mypy

run: $(BIN)/.installed
	$(BIN)/outboxd check-config -c $(CONFIG)
	$(BIN)/outboxd migrate -c $(CONFIG)
	@sh ops/run.sh $(BIN) $(CONFIG) $(WAIT)

bench: $(BIN)/.installed
	$(BIN)/python ops/bench/outbox.py
	$(BIN)/python ops/bench/dispatch.py

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .hypothesis
