"""Where the tests find the database servers, and what they do when one is absent.

A server that does not answer skips its tests with the reason, unless
``OUTBOXD_REQUIRE_SERVICES=1`` (set by CI), which turns the skip into a failure.
"""

from __future__ import annotations

import os
from urllib.parse import quote

import psycopg
import pytest

PG_URL = os.environ.get("OUTBOXD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def services_required() -> bool:
    return os.environ.get("OUTBOXD_REQUIRE_SERVICES", "") not in ("", "0", "false", "no")


def unavailable(what: str, reason: object) -> None:
    message = f"{what} is not reachable ({reason})"
    if services_required():
        pytest.fail(f"{message}; OUTBOXD_REQUIRE_SERVICES is set, so this is a failure")
    pytest.skip(f"{message}; set OUTBOXD_TEST_PG_URL or start the server to run these tests")


def pg_admin_connect() -> psycopg.Connection:
    """An autocommit psycopg connection to the test server, or a skip/fail."""
    try:
        return psycopg.connect(PG_URL.split("?")[0], autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        unavailable(f"PostgreSQL at {PG_URL}", str(exc).strip().splitlines()[0])
        raise  # unreachable: unavailable() skips or fails


def pg_schema_url(schema: str) -> str:
    """The test URL with ``search_path`` set to ``schema``."""
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options={quote(f'-csearch_path={schema}')}"
