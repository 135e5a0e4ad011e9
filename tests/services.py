"""Where the tests find the servers and tools outside Python (PostgreSQL, MariaDB,
promtool and the Prometheus server, amtool, Chromium, openssl), and what they do
when one is absent.

One that does not answer skips its tests with the reason and what to install,
unless ``OUTBOXD_REQUIRE_SERVICES=1`` (set by CI), which turns the skip into a
failure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NoReturn
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


PG_REMEDY = (
    "install and start PostgreSQL (Debian: apt-get install postgresql) with a database "
    "`test` the user postgres may use without a password, or set OUTBOXD_TEST_PG_URL"
)
MARIADB_REMEDY = (
    "install and start MariaDB (Debian: apt-get install mariadb-server), root without a "
    "password on 127.0.0.1:3306, or set OUTBOXD_TEST_MARIADB_URL"
)
PROMTOOL_REMEDY = (
    "install Prometheus's promtool (Debian: apt-get install prometheus; .ci/run unpacks "
    "that package without installing it) or put it on PATH"
)

PROMETHEUS_REMEDY = (
    "install the Prometheus server (Debian: apt-get install prometheus; .ci/run unpacks "
    "that package without installing it) or put its `prometheus` binary on PATH"
)
DEBIAN_AM_TEMPLATE = Path("/usr/share/prometheus/alertmanager/default.tmpl")
AMTOOL_REMEDY = (
    "install Alertmanager and its amtool (Debian: apt-get install prometheus-alertmanager; "
    ".ci/run unpacks that package without installing it) or put it on PATH"
)


def unavailable(what: str, reason: object, remedy: str) -> NoReturn:
    """Skip (or, with ``OUTBOXD_REQUIRE_SERVICES``, fail) for want of ``what``,
    saying why and what to install (``remedy``)."""
    message = f"{what} is not available ({reason})"
    if services_required():
        pytest.fail(f"{message}; OUTBOXD_REQUIRE_SERVICES is set, so this is a failure")
    pytest.skip(f"{message}: to run these tests, {remedy}")


def promtool() -> str:
    """The path of promtool, or a skip/fail."""
    found = shutil.which("promtool")
    if found is None:
        unavailable("promtool", "not on PATH", PROMTOOL_REMEDY)
    return found


def prometheus() -> str:
    """The path of the Prometheus server binary, or a skip/fail."""
    found = shutil.which("prometheus")
    if found is None:
        unavailable("the Prometheus server", "`prometheus` is not on PATH", PROMETHEUS_REMEDY)
    return found


def amtool() -> str:
    """The path of amtool (Alertmanager's), or a skip/fail."""
    found = shutil.which("amtool")
    if found is None:
        unavailable("amtool", "not on PATH", AMTOOL_REMEDY)
    return found


def alertmanager() -> str:
    """The path of the Alertmanager server (Debian names it prometheus-alertmanager),
    or a skip/fail."""
    found = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if found is None:
        unavailable("Alertmanager", "`prometheus-alertmanager` is not on PATH", AMTOOL_REMEDY)
    # Debian's build reads its mail templates from there (upstream's has them built in)
    if Path(found).name == "prometheus-alertmanager" and not DEBIAN_AM_TEMPLATE.exists():
        unpacked = Path(found).resolve().parents[1] / "share/prometheus/alertmanager"
        unavailable(
            "Alertmanager (its mail templates)",
            f"{DEBIAN_AM_TEMPLATE} does not exist",
            f"copy {unpacked}/*.tmpl to {DEBIAN_AM_TEMPLATE.parent}/ (as .ci/run does) "
            "or install the package",
        )
    return found


def pg_admin_connect() -> psycopg.Connection:
    """An autocommit psycopg connection to the test server, or a skip/fail."""
    try:
        return psycopg.connect(PG_URL.split("?")[0], autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        unavailable(f"PostgreSQL at {PG_URL}", str(exc).strip().splitlines()[0], PG_REMEDY)


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
        unavailable(f"MariaDB at {where}", exc, MARIADB_REMEDY)
    with conn.cursor() as cursor:
        cursor.execute("SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION'")
    return conn
