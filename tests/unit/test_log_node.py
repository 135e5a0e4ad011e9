"""A JSON log line names the node (the host's name in the suite) when there is one,
so that logs gathered from several machines say where each line was written."""

import json
import logging

from daemon.domain.logs import JsonFormatter, TextFormatter


def record() -> logging.LogRecord:
    rec = logging.LogRecord("outboxd.frame", logging.INFO, __file__, 1, "started", (), None)
    rec.role = "dispatcher"
    return rec


def test_a_json_line_carries_the_node():
    line = json.loads(JsonFormatter("dispatcher.0", "ward-b").format(record()))
    assert line["node"] == "ward-b" and line["process"] == "dispatcher.0"
    assert line["msg"] == "started" and line["role"] == "dispatcher"


def test_without_a_node_a_json_line_has_none_and_a_text_line_is_unchanged():
    assert "node" not in json.loads(JsonFormatter("sim-http").format(record()))
    assert (
        TextFormatter("dispatcher.0")
        .format(record())
        .endswith("INFO dispatcher.0 started role=dispatcher")
    )
