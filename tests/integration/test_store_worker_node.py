"""A dispatcher's store worker logs under its node as its dispatcher does, and
takes the hello of a dispatcher that sends no node (a rolling upgrade)."""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.config.database import DatabaseSettings
from daemon.store.address import Address
from daemon.store.worker import open_store


@pytest.fixture
def logging_restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("node", ["ward-b", None])
def test_the_worker_logs_under_its_node(tmp_path: Path, capsys, logging_restored, node):
    database = DatabaseSettings.model_validate({"url": f"sqlite:///{tmp_path}/o.db"})
    hello = (Address.of(database), "INFO", "json", "dispatcher.0", node)
    store = open_store(pickle.dumps(hello if node else hello[:4]))
    try:
        logging.getLogger("outboxd.store").info("hello")
    finally:
        store.close()
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["process"] == "dispatcher.0.store" and line["msg"] == "hello"
    assert line.get("node") == node
