# make run   — set up .venv with what running needs and run the demo suite under
#              supervisord (SQLite + simulators)
# make test  — set up .venv with the test extra too and run the checks and the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= config/outboxd.yaml
# WAIT: seconds `make run` waits for every program to be ready
WAIT ?= 60
# what each target has installed into $(VENV), redone when pyproject.toml changes
RUN_DEPS := $(VENV)/.installed-run
TEST_DEPS := $(VENV)/.installed-test

.PHONY: run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# outboxd and its dependencies: what running needs
$(RUN_DEPS): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

# and the test extra: pytest, ruff, mypy, import-linter, Playwright, schemathesis, …
$(TEST_DEPS): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

test: $(TEST_DEPS)
	$(BIN)/ruff check daemon tests ops
	$(BIN)/lint-imports
	$(BIN)/pytest

lint: $(TEST_DEPS)
	$(BIN)/ruff check daemon tests ops
	$(BIN)/ruff format --check daemon tests ops
	$(BIN)/lint-imports
	$(BIN)/mypy

run: $(RUN_DEPS)
	$(BIN)/outboxd check-config -c $(CONFIG)
	$(BIN)/outboxd migrate -c $(CONFIG)
	@sh ops/run.sh $(BIN) $(CONFIG) $(WAIT)

bench: $(RUN_DEPS)
	$(BIN)/python ops/bench/outbox.py
	$(BIN)/python ops/bench/dispatch.py

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .mypy_cache .hypothesis
