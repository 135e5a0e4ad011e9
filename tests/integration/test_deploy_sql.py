"""docs/deploy.md's SQL runs on outboxd's schema as it is: the autovacuum and
fillfactor settings of the hot tables, and the query that counts connections."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest

from daemon.config.database import DatabaseSettings
from daemon.store.address import postgres_params

PAGE = (Path(__file__).resolve().parents[2] / "docs" / "deploy.md").read_text()
SQL = re.findall(r"```sql\n(.*?)```", PAGE, re.S)
QUERIES = re.findall(r"`(SELECT [^`]*pg_stat_activity[^`]*)`", PAGE)


def connect(url: str) -> psycopg.Connection:
    dbname, params = postgres_params(url, DatabaseSettings.model_validate({"url": url}))
    return psycopg.connect(dbname=dbname, autocommit=True, **params)


def test_the_page_has_its_sql():
    assert SQL and QUERIES


@pytest.mark.parametrize("block", SQL, ids=[f"block{i}" for i in range(len(SQL))])
def test_the_table_settings_apply_to_the_schema(pg_url: str, block: str):
    statements = [s.strip() for s in re.sub(r"\s+", " ", block).split(";") if s.strip()]
    with connect(pg_url) as conn:
        for statement in statements:
            conn.execute(statement)
        rows = conn.execute(
            "SELECT relname, reloptions FROM pg_class WHERE relname LIKE 'outboxd_%%'"
            " AND reloptions IS NOT NULL AND relnamespace = current_schema()::regnamespace"
        ).fetchall()
    options = {name: set(opts) for name, opts in rows}
    assert "fillfactor=80" in options["outboxd_message"]
    assert "autovacuum_vacuum_threshold=1000" in options["outboxd_rate_bucket"]


def test_the_connection_count_query_runs(pg_url: str):
    with connect(pg_url) as conn:
        for query in QUERIES:
            conn.execute(query).fetchall()
