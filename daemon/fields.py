"""The field types every settings model shares, and the frozen, strict base model.

Durations are seconds (``float``) parsed from ``30s``-style strings; rates are
``Rate``; ports, names, time zones, URLs and encodings are checked where they are
read, so a model only says which one a field is.
"""

from __future__ import annotations

import codecs
from typing import Annotated
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator

from daemon.cron import crontab_trigger
from daemon.units import Rate, parse_duration, parse_rate


def _check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r} (use an IANA name such as Asia/Jakarta)"
        ) from None
    return name


def _check_cron(expression: str) -> str:
    crontab_trigger(expression, "UTC")
    return expression


def _check_encoding(name: str) -> str:
    try:
        codecs.lookup(name)
    except LookupError:
        raise ValueError(f"unknown text encoding {name!r}") from None
    return name


def _check_http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected an http:// or https:// URL, got {url!r}")
    return url


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``: safe for logs and summaries."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    netloc = f"{parts.username}:***@{host}" if parts.username else f":***@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


Duration = Annotated[float, BeforeValidator(parse_duration)]
PositiveDuration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
RateValue = Annotated[Rate, PlainValidator(parse_rate)]
Port = Annotated[int, Field(ge=1, le=65535)]
TimeZoneName = Annotated[str, AfterValidator(_check_timezone)]
CronExpression = Annotated[str, AfterValidator(_check_cron)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")]
HttpUrl = Annotated[str, AfterValidator(_check_http_url)]
Encoding = Annotated[str, AfterValidator(_check_encoding)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
