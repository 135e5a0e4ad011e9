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

# Installs with uv (from PyPI, into the venv) when it can be had: seconds where pip
# takes most of a minute; pip does it when uv cannot (no uv for this platform, an
# index only pip is configured for).
define install
($(BIN)/pip install --quiet uv && $(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python $(1)) \
	|| $(BIN)/pip install --quiet $(1)
endef

# outboxd and its dependencies: what running needs
$(RUN_DEPS): pyproject.toml | $(BIN)/python
	$(call install,-e .)
	touch $@

# and the test extra: pytest, ruff, mypy, import-linter, Playwright, schemathesis, …
$(TEST_DEPS): pyproject.toml | $(BIN)/python
	$(call install,-e '.[test]')
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
