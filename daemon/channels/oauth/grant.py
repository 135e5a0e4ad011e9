"""The OAuth 2.0 client credentials grant (RFC 6749 §4.4) as pure functions: the
token request a client sends, and what the token endpoint's answer means.

| the token endpoint answers                       | here                                 |
|--------------------------------------------------|--------------------------------------|
| 2xx, JSON with ``access_token``                  | a ``Token``                          |
|   ``expires_in`` a number, or text of one        |   its lifetime in seconds            |
|   ``expires_in`` absent, 0, negative, unreadable |   lifetime unknown (the caller's)    |
|   ``token_type`` any case of ``bearer``, or      |   taken (sent as ``Bearer``)         |
|   ``BearerToken`` (SATUSEHAT), or absent         |                                      |
|   another ``token_type`` (``mac``, ``DPoP``)     | ``invalid``: it cannot be used       |
| 2xx that is not such JSON                        | ``invalid``                          |
| 408, 429, 5xx, another status                    | ``failed`` (try again later)         |
| another 4xx (§5.2 ``invalid_client`` …)          | ``refused``, with ``error`` and its  |
|                                                  | description (or a gateway's          |
|                                                  | ``fault.faultstring``)               |

No text made here quotes the secret or a token; the endpoint's own words are
quoted only from its ``error`` and ``error_description`` fields, cut short.
"""

from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote_plus, urlencode

GRANT_TYPE = "client_credentials"
FORM = "application/x-www-form-urlencoded"
LONGEST_LIFETIME = 366 * 86400.0  # a longer expires_in is taken as this
QUOTED = 200  # characters of the endpoint's error description kept

# RFC 6750 §2.1 b64token: what an Authorization: Bearer value may hold.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_NUMBER = re.compile(r"\s*[0-9]+(\.[0-9]+)?\s*")

Result = Literal["ok", "refused", "failed", "invalid"]  # a fetch, as the metrics count it


@dataclass(frozen=True)
class TokenRequest:
    """What to POST to the token endpoint: the form body and the headers."""

    body: bytes
    headers: dict[str, str] = field(repr=False)  # Authorization holds the secret


@dataclass(frozen=True)
class Token:
    value: str = field(repr=False)
    expires_in: float | None  # seconds from the request; None: the answer did not say
    token_type: str = "Bearer"
    scope: str | None = None  # the scope granted, when the answer names it


class TokenError(Exception):
    """No token from this answer: ``result`` (``refused``, ``failed``, ``invalid``) and
    why, in one line; ``retry_after`` when the endpoint asked for a wait."""

    def __init__(self, result: Result, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.result = result
        self.detail = detail
        self.retry_after = retry_after


def basic_client_credentials(client_id: str, client_secret: str) -> str:
    """``Basic …`` for a client (RFC 6749 §2.3.1): the id and the secret each
    form-urlencoded (Appendix B) before they are joined by ``:`` and base64-encoded."""
    joined = f"{quote_plus(client_id)}:{quote_plus(client_secret)}"
    return "Basic " + base64.b64encode(joined.encode()).decode("ascii")


def token_request(
    client_id: str,
    client_secret: str,
    scope: str | None = None,
    client_auth: Literal["basic", "body"] = "basic",
) -> TokenRequest:
    """The access token request of §4.4.2, the client authenticated by HTTP Basic or
    by ``client_id`` and ``client_secret`` in the body (§2.3.1)."""
    params = [("grant_type", GRANT_TYPE)]
    if scope:
        params.append(("scope", scope))
    headers = {"Content-Type": FORM, "Accept": "application/json"}
    if client_auth == "basic":
        headers["Authorization"] = basic_client_credentials(client_id, client_secret)
    else:
        params += [("client_id", client_id), ("client_secret", client_secret)]
    return TokenRequest(urlencode(params).encode("ascii"), headers)


def lifetime(value: Any) -> float | None:
    """``expires_in`` in seconds: a number or the text of one (``"14399"``), at most
    ``LONGEST_LIFETIME``; None when absent or not a positive number."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        if not _NUMBER.fullmatch(value):
            return None
        value = float(value)
    if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        return None
    return min(float(value), LONGEST_LIFETIME)


def _text(value: Any) -> str:
    line = " ".join(str(value).split())
    return line if len(line) <= QUOTED else line[: QUOTED - 1] + "…"


def _document(body: bytes) -> dict[str, Any] | None:
    try:
        found = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return found if isinstance(found, dict) else None


def read_token_response(status: int, body: bytes, retry_after: float | None = None) -> Token:
    """The token in an answer of the token endpoint, or ``TokenError`` saying why
    there is none (the table above)."""
    document = _document(body)
    if 200 <= status <= 299:
        if document is None:
            raise TokenError(
                "invalid", f"HTTP {status} from the token endpoint is not a JSON object"
            )
        value = document.get("access_token")
        if not isinstance(value, str) or not value:
            raise TokenError(
                "invalid", f"HTTP {status} from the token endpoint has no access_token"
            )
        if not _B64TOKEN.fullmatch(value):
            raise TokenError("invalid", "the access_token holds characters a header cannot carry")
        kind = document.get("token_type")
        if kind is not None and not (
            isinstance(kind, str) and kind.strip().lower() in ("bearer", "bearertoken")
        ):
            raise TokenError("invalid", f"token_type {_text(kind)!r} is not a bearer token")
        scope = document.get("scope")
        return Token(
            value,
            lifetime(document.get("expires_in")),
            "Bearer",
            scope if isinstance(scope, str) and scope else None,
        )
    if status in (408, 429) or status >= 500 or status < 400:
        return _failed(status, document, retry_after)
    detail = f"the token endpoint refused the client: HTTP {status}"
    said = _error_of(document or {})
    raise TokenError("refused", f"{detail} {said}" if said else detail)


def _error_of(document: dict[str, Any]) -> str:
    """``error: error_description`` (RFC 6749 §5.2), or an API gateway's
    ``fault.faultstring`` (SATUSEHAT's), or nothing."""
    error = document.get("error")
    if error:
        description = document.get("error_description")
        return f"{_text(error)}: {_text(description)}" if description else _text(error)
    fault = document.get("fault")
    if isinstance(fault, dict) and fault.get("faultstring"):
        return _text(fault["faultstring"])
    return ""


def _failed(status: int, document: dict[str, Any] | None, retry_after: float | None) -> Token:
    detail = f"the token endpoint answered HTTP {status}"
    said = _error_of(document or {})
    if said:
        detail += f" {said}"
    if retry_after is not None:
        detail += f"; it asked to wait {retry_after:g}s"
    raise TokenError("failed", detail, retry_after)
