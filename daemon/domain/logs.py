"""Structured logs to stderr: one line per record, text or JSON.

Context goes in ``extra`` (``log.info("claimed", extra={"channel": "hie", "count": 3})``)
and comes out as ``key=value`` pairs or JSON fields.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _timestamp(record: logging.LogRecord) -> str:
    millis = int(record.msecs)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{millis:03d}Z"


def _one_line(value: object) -> str:
    """A value as one line: a line break or an escape a request put in a path
    or a header cannot start a line of its own in the log."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class TextFormatter(logging.Formatter):
    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), record.levelname, self.process, _one_line(record.getMessage())]
        parts += [f"{k}={_one_line(v)}" for k, v in _fields(record).items()]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def __init__(self, process: str, node: str | None = None) -> None:
        super().__init__()
        self.process = process
        self.node = node  # the host's name in the suite, for logs gathered in one place

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            **({"node": self.node} if self.node else {}),
            "process": self.process,
            "logger": record.name,
            "msg": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(level: str, fmt: str, process: str, node: str | None = None) -> None:
    """Log to stderr; a JSON line carries ``node`` when given (a text line, written
    to its host's own log files, names the node in its "started" line)."""
    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter(process, node) if fmt == "json" else TextFormatter(process)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiohttp.access", "peewee", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
