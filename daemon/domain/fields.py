"""The field types every settings model shares, and the frozen, strict base model.

Durations are seconds (``float``) parsed from ``30s``-style strings; rates are
``Rate``; ports, names, time zones, URLs and encodings are checked where they are
read, so a model only says which one a field is.
"""

from __future__ import annotations

import codecs
import ipaddress
import math
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    SecretStr,
)

from daemon.domain.jsonpointer import MAX_POINTER, check_pointer
from daemon.domain.limits import NAME_PATTERN, NODE, NODE_MAX, NODE_RULE
from daemon.domain.units import Rate, parse_duration, parse_rate, parse_size


def _check_timezone(name: str) -> str:
    try:
        if len(name) > 64:
            raise ValueError(name)
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"unknown time zone {name!r} (use an IANA name such as Asia/Jakarta)"
        ) from None
    return name


def _check_encoding(name: str) -> str:
    try:
        codecs.lookup(name)
    except LookupError:
        raise ValueError(f"unknown text encoding {name!r}") from None
    return name


def _check_host(host: str) -> str:
    if not host or len(host) > 253 or any(c.isspace() or not c.isprintable() for c in host):
        raise ValueError(f"not a host name or address: {host!r}")
    return host


def _check_node(name: str) -> str:
    if NODE.fullmatch(name) is None:
        raise ValueError(f"not a node name: {name!r} ({NODE_RULE})")
    return name


def default_node(host: str) -> str:
    """The node name a host called ``host`` gets when the file gives none: its
    name up to the first dot, each character a node name may not hold made '-'."""
    label = host.split(".", 1)[0]
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", label).lstrip("_.-")[:NODE_MAX]
    return name or "localhost"


_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")


def host_name(text: str) -> str:
    """A name a request's ``Host`` may give, as compared: lower case, no trailing
    dot, an IPv6 address without brackets; ``ValueError`` for one that is not a
    DNS name or an IP address (a port, a scheme, a path, a wildcard)."""
    name = text.strip().lower().removesuffix(".")
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        pass
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(
            f"not a host name: {text[:80]!r} (a DNS name or an IP address, without a port, "
            "a scheme or a wildcard)"
        )
    return name


def _check_line(text: str) -> str:
    if not text.isprintable():
        raise ValueError(f"must be one line of printable text, got {text!r}")
    return text


def masked_url(text: str) -> str:
    """A URL as an error message may show it, whatever it holds and however
    malformed: the scheme, the user name and the host, the password replaced by
    ``***``, the path, query and fragment by ``…`` (a webhook's URL may carry its
    secret in the path or the query). Never raises."""
    scheme, sep, rest = text.partition("://")
    if not sep:  # not a URL at all: it could be anything (a secret in the wrong place)
        return f"text of {len(text)} characters without a scheme://"
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    if "@" in authority:
        userinfo, _, host = authority.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        authority = f"{user}:***@{host}" if colon else f"{user}@{host}"
    shown = f"{scheme}://{authority}" + (tail[0] + "…" if tail.strip("/") else tail)
    return repr(shown[:200])


def _check_http_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a port that is not one
    except ValueError:
        raise ValueError(f"not a URL: {masked_url(url)} (its host or port)") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL, got {masked_url(url)}")
    if not url.isprintable() or any(c.isspace() for c in url):
        raise ValueError(f"a URL has no spaces or control characters: {masked_url(url)}")
    return url


check_http_url = _check_http_url  # for a field that is a URL once something is filled in


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


LONGEST_SETTING = 366 * 86400.0  # the longest duration a setting takes
_WHOLE = re.compile(r"[+-]?\d{1,18}")


def _kind(value: Any) -> str:
    return {bool: "a boolean", float: "a fraction", str: "text"}.get(
        type(value), type(value).__name__
    )


def setting_duration(value: Any) -> float:
    seconds = parse_duration(value)
    if seconds > LONGEST_SETTING:
        raise ValueError(f"duration {value!r} is too long: at most 366d")
    return seconds


def whole(value: Any) -> Any:
    """A whole number: an integer, or text of one (from ``${VAR}``); never a
    boolean (``true`` is not 1) or a fraction."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _WHOLE.fullmatch(value.strip()):
        return int(value)
    shown = repr(value) if isinstance(value, str | float) else _kind(value)
    raise ValueError(f"expected a whole number, got {shown}")


def _flag(value: Any) -> Any:
    """``true`` or ``false`` (or their text, from ``${VAR}``); never 0 or 1."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    shown = repr(value) if isinstance(value, str | int | float) else _kind(value)
    raise ValueError(f"expected true or false, got {shown}")


def _number(value: Any) -> Any:
    """A finite number, or text of one; never a boolean."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected a number, got {_kind(value)}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {value!r}")
    return number


Duration = Annotated[float, BeforeValidator(setting_duration)]
PositiveDuration = Annotated[float, BeforeValidator(setting_duration), Field(gt=0)]
RateValue = Annotated[Rate, PlainValidator(parse_rate)]
ByteSize = Annotated[int, BeforeValidator(parse_size)]  # bytes, from 65536 or 64KiB
Integer = Annotated[int, BeforeValidator(whole)]
Flag = Annotated[bool, BeforeValidator(_flag)]
Number = Annotated[float, BeforeValidator(_number)]
Port = Annotated[int, BeforeValidator(whole), Field(ge=1, le=65535)]
TimeZoneName = Annotated[str, AfterValidator(_check_timezone)]
Name = Annotated[str, Field(pattern=f"^{NAME_PATTERN}$")]
NodeName = Annotated[str, AfterValidator(_check_node)]  # ``node:``
HttpUrl = Annotated[str, AfterValidator(_check_http_url)]
Encoding = Annotated[str, AfterValidator(_check_encoding)]
Host = Annotated[str, AfterValidator(_check_host)]
HostName = Annotated[str, AfterValidator(host_name)]  # as a request's Host names it
Line = Annotated[str, AfterValidator(_check_line)]  # one line of printable text
JsonPointer = Annotated[str, Field(max_length=MAX_POINTER), AfterValidator(check_pointer)]


class FromEnvironment:
    """Marks a setting the file must name as ``${VAR}`` and never hold itself (a
    client secret): the loader refuses a value written out in the file, so a
    secret never sits in a file that is copied, versioned or shown."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "FROM_ENVIRONMENT"


FROM_ENVIRONMENT = FromEnvironment()
# A secret given only as ``${VAR}`` (or ``${VAR:-…}``, ``${VAR:?…}``); never printed.
EnvSecret = Annotated[SecretStr, FROM_ENVIRONMENT]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


EventLoopName = Literal["uvloop", "asyncio"]  # the asyncio event loop a process runs on
EVENT_LOOPS: tuple[EventLoopName, ...] = ("uvloop", "asyncio")
