# make run   — set up .venv, migrate the demo SQLite store, enqueue demo traffic, show stats
# make test  — set up .venv and run the checks and the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= config/outboxd.yaml

.PHONY: run test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

test: $(BIN)/.installed
	$(BIN)/ruff check daemon tests ops
	$(BIN)/pytest

lint: $(BIN)/.installed
	$(BIN)/ruff check daemon tests ops
	$(BIN)/ruff format --check daemon tests ops

run: $(BIN)/.installed
	$(BIN)/outboxd check-config -c $(CONFIG)
	$(BIN)/outboxd migrate -c $(CONFIG)
	$(BIN)/outboxd enqueue -c $(CONFIG) --channel hie --key demo-$$(date +%s) config/demo/adt-a04.hl7
	$(BIN)/outboxd stats -c $(CONFIG)

bench: $(BIN)/.installed
	$(BIN)/python ops/bench/outbox.py

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .hypothesis
