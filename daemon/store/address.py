"""Where the database is, read from its URL without loading a driver: which
backend, and PostgreSQL's connection parameters. The process that hands its
store work to a worker process needs no more than this, and the worker is handed
an ``Address``: a plain value, so that it loads no settings models (pydantic)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

if TYPE_CHECKING:
    from daemon.config.database import DatabaseSettings

POSTGRES_SCHEMES = ("postgres", "postgresql")
NOTIFY_CHANNEL = "outboxd"  # PostgreSQL NOTIFY channel; the payload is the outbox channel


@dataclass(frozen=True)
class Address:
    """What opening the database takes: its URL (it may hold a password: kept out
    of the repr) and the timeouts of ``database:`` in the YAML file."""

    url: str = field(repr=False)
    busy_timeout: float
    connect_timeout: float

    @classmethod
    def of(cls, settings: DatabaseSettings | Address) -> Address:
        if isinstance(settings, Address):
            return settings
        url = settings.url.get_secret_value()
        return cls(url, settings.busy_timeout, settings.connect_timeout)


def is_postgres_url(url: str) -> bool:
    return urlsplit(url).scheme in POSTGRES_SCHEMES


def sqlite_path(url: str) -> str | None:
    """The file a ``sqlite:`` URL names (``sqlite:///var/x.db`` relative to the
    working directory, ``sqlite:////var/x.db`` absolute); None for another scheme,
    or for no file (``:memory:``)."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        return None
    raw = parts.path
    path = unquote(raw[1:] if raw.startswith("/") else raw)
    return path if path and path != ":memory:" else None


def backend_of(url: str | None) -> str | None:
    """``sqlite`` or ``postgresql``: the store backend of a database URL; None for
    no URL or one of neither (the settings models refuse it)."""
    if url is None:
        return None
    try:
        scheme = urlsplit(url).scheme
    except ValueError:
        return None
    if scheme == "sqlite":
        return "sqlite"
    return "postgresql" if scheme in POSTGRES_SCHEMES else None


def postgres_params(
    url: str, settings: DatabaseSettings | Address
) -> tuple[str | None, dict[str, Any]]:
    """The database name and psycopg's connection parameters of a PostgreSQL URL."""
    parts = urlsplit(url)
    params: dict[str, Any] = dict(parse_qsl(parts.query))
    params.setdefault("connect_timeout", max(1, round(settings.connect_timeout)))
    params.setdefault("application_name", "outboxd")
    if parts.username:
        params["user"] = unquote(parts.username)
    if parts.password is not None:
        params["password"] = unquote(parts.password)
    if parts.hostname:
        params["host"] = parts.hostname
    if parts.port:
        params["port"] = parts.port
    return unquote(parts.path.lstrip("/")) or None, params


def listen_conninfo(settings: DatabaseSettings) -> dict[str, Any] | None:
    """psycopg's parameters for a LISTEN connection of one's own (PostgreSQL);
    None where the database has no NOTIFY."""
    url = settings.url.get_secret_value()
    if not is_postgres_url(url):
        return None
    dbname, params = postgres_params(url, settings)
    return {"dbname": dbname, **params}
