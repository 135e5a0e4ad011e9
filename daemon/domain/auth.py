"""Tokens and roles of the control API. Pure: no I/O, no web framework.

A caller sends ``Authorization: Bearer <token>``; the file keeps only the
token's SHA-256 (``control.tokens``: name, role, sha256), never the token.
A token is looked up by comparing its hash with every configured one in
constant time (``hmac.compare_digest``), all of them every time, so how long
a lookup takes says nothing about which entry, if any, matched. Roles are
ordered: ``viewer`` < ``operator`` < ``admin``; a role permits what every role
below it may do.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")  # in order: each permits more
TOKEN_PREFIX = "obx_"  # so that a leaked token is recognisable as one of outboxd's
TOKEN_BYTES = 32
_BEARER = re.compile(r"Bearer +([A-Za-z0-9\-._~+/]+=*) *", re.IGNORECASE)
_NO_MATCH = bytes(32)  # what a lookup compares against when nothing is configured
MAX_HEADER = 4096  # characters of an Authorization header worth reading


class AuthError(Exception):
    """A request that does not authenticate; ``reason`` says why (``missing``,
    ``malformed``, ``unknown``) and the text in words (never the token)."""

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(text)
        self.reason = reason


class TokenEntry(Protocol):
    """A configured token: ``control.tokens`` entries are these."""

    @property
    def name(self) -> str: ...

    @property
    def role(self) -> Role: ...

    @property
    def sha256(self) -> str: ...


@dataclass(frozen=True)
class Principal:
    """Who a request is: the token's name and role."""

    name: str
    role: Role


def hash_token(token: str) -> str:
    """The SHA-256 of a token, 64 lowercase hex digits: what the file keeps."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh random token: ``obx_`` and 32 random bytes, URL-safe base64."""
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def permits(role: str, needed: Role) -> bool:
    """Whether ``role`` may do what ``needed`` may (an unknown role may nothing)."""
    rank = {name: i for i, name in enumerate(ROLES)}
    return role in rank and rank[role] >= rank[needed]


def bearer(header: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header value (the
    scheme in any case, RFC 7235); ``AuthError`` for none or another form."""
    if header is None or not header.strip():
        raise AuthError("missing", "no Authorization header: send Authorization: Bearer <token>")
    if len(header) > MAX_HEADER:
        raise AuthError("malformed", "the Authorization header is too long")
    match = _BEARER.fullmatch(header.strip())
    if match is None:
        raise AuthError("malformed", "expected Authorization: Bearer <token>")
    return match.group(1)


def lookup(token: str, entries: Sequence[TokenEntry]) -> Principal | None:
    """The principal whose configured hash is the token's, or None. Every entry
    is compared, in constant time, whatever matched."""
    given = hashlib.sha256(token.encode("utf-8")).digest()
    found: TokenEntry | None = None
    for entry in entries:
        try:
            expected = bytes.fromhex(entry.sha256)
        except ValueError:
            expected = _NO_MATCH
        if hmac.compare_digest(given, expected) and found is None:
            found = entry
    if not entries:
        hmac.compare_digest(given, _NO_MATCH)  # the same work when nothing is configured
    return None if found is None else Principal(found.name, found.role)


def authenticate(header: str | None, entries: Sequence[TokenEntry]) -> Principal:
    """The principal of an ``Authorization`` header value; ``AuthError`` when
    there is none, it is not a bearer token, or no configured token is it."""
    principal = lookup(bearer(header), entries)
    if principal is None:
        raise AuthError("unknown", "the token is not one of control.tokens")
    return principal


def token_entry_line(name: str, role: Role, digest: str) -> str:
    """The YAML line of one ``control.tokens`` entry (values quoted: a name like
    ``null`` or a hash of digits only stays text)."""
    return f'- {{name: "{name}", role: {role}, sha256: "{digest}"}}'
