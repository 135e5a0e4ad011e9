"""Where the tests find the database servers, and what they do when one is absent.

A server that does not answer skips its tests with the reason, unless
``OUTBOXD_REQUIRE_SERVICES=1`` (set by CI), which turns the skip into a failure.
"""

from __future__ import annotations

import os
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import psycopg
import pymysql
import pytest

PG_URL = os.environ.get("OUTBOXD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
# A MariaDB/MySQL server standing in for a SIMRS Khanza database; tests create
# databases of their own on it (the user needs CREATE and DROP).
MARIADB_URL = os.environ.get("OUTBOXD_TEST_MARIADB_URL", "mysql://root@127.0.0.1:3306/test")


def services_required() -> bool:
    return os.environ.get("OUTBOXD_REQUIRE_SERVICES", "") not in ("", "0", "false", "no")


def unavailable(what: str, reason: object, variable: str = "OUTBOXD_TEST_PG_URL") -> None:
    message = f"{what} is not reachable ({reason})"
    if services_required():
        pytest.fail(f"{message}; OUTBOXD_REQUIRE_SERVICES is set, so this is a failure")
    pytest.skip(f"{message}; set {variable} or start the server to run these tests")


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


def mariadb_url(database: str) -> str:
    """The MariaDB test URL naming ``database`` instead."""
    parts = urlsplit(MARIADB_URL)
    return urlunsplit(parts._replace(path=f"/{database}"))


def mariadb_connect(database: str | None = None) -> pymysql.connections.Connection:
    """An autocommit PyMySQL connection to the MariaDB test server (to ``database``,
    or none), with zero dates allowed as in a Khanza install; or a skip/fail."""
    parts = urlsplit(MARIADB_URL)
    try:
        conn = pymysql.connect(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 3306,
            user=unquote(parts.username or "root"),
            password=unquote(parts.password or ""),
            database=database,
            connect_timeout=3,
            read_timeout=30,
            autocommit=True,
            charset="utf8mb4",
        )
    except pymysql.MySQLError as exc:
        where = f"{parts.hostname}:{parts.port or 3306}"
        unavailable(f"MariaDB at {where}", exc, "OUTBOXD_TEST_MARIADB_URL")
        raise  # unreachable: unavailable() skips or fails
    with conn.cursor() as cursor:
        cursor.execute("SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION'")
    return conn
