# make run   — set up .venv and run the demo suite under supervisord (SQLite + simulators)
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
	mkdir -p var/log
	@echo "outboxd: the suite runs in the foreground; Ctrl-C stops it."
	@echo "outboxd: in another shell: $(BIN)/supervisorctl -c supervisord.conf status"
	@echo "outboxd:                   $(BIN)/outboxd stats -c $(CONFIG)"
	$(BIN)/supervisord -c supervisord.conf

bench: $(BIN)/.installed
	$(BIN)/python ops/bench/outbox.py
	$(BIN)/python ops/bench/dispatch.py

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .hypothesis
