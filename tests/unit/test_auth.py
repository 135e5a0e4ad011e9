"""Tokens and roles of the control API (``daemon.domain.auth``)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from daemon.config.settings import ControlToken
from daemon.domain import auth
from daemon.domain.auth import (
    ROLES,
    TOKEN_PREFIX,
    AuthError,
    Principal,
    authenticate,
    bearer,
    hash_token,
    lookup,
    new_token,
    permits,
    token_entry_line,
)

TOKENS = {name: new_token() for name in ("ana", "budi", "citra")}
ENTRIES = [
    ControlToken(name="ana", role="viewer", sha256=hash_token(TOKENS["ana"])),
    ControlToken(name="budi", role="operator", sha256=hash_token(TOKENS["budi"])),
    ControlToken(name="citra", role="admin", sha256=hash_token(TOKENS["citra"])),
]


def test_a_token_hashes_to_the_hex_sha256_of_its_text():
    assert hash_token("obx_abc") == hashlib.sha256(b"obx_abc").hexdigest()
    assert len(hash_token("x")) == 64 and hash_token("x") == hash_token("x").lower()


def test_new_tokens_are_prefixed_random_and_long():
    made = {new_token() for _ in range(100)}
    assert len(made) == 100
    for token in made:
        assert token.startswith(TOKEN_PREFIX)
        assert len(token) == len(TOKEN_PREFIX) + 43  # 32 bytes, URL-safe base64, unpadded
        assert bearer(f"Bearer {token}") == token  # every one passes as a bearer token


@pytest.mark.parametrize("name", ["ana", "budi", "citra"])
def test_lookup_finds_each_configured_token(name: str):
    entry = next(e for e in ENTRIES if e.name == name)
    assert lookup(TOKENS[name], ENTRIES) == Principal(name, entry.role)


@pytest.mark.parametrize(
    "token",
    ["", "obx_unknown", TOKENS["ana"] + "x", TOKENS["ana"][:-1], hash_token("x")],
    ids=["empty", "unknown", "a-token-and-more", "a-token-less-one", "a-hash"],  # the same in
)  # every pytest-xdist worker, which each make their own tokens
def test_lookup_refuses_what_is_not_a_token(token: str):
    assert lookup(token, ENTRIES) is None
    assert lookup(token, []) is None


def test_the_hash_itself_is_not_a_token():
    assert lookup(ENTRIES[0].sha256, ENTRIES) is None


def test_lookup_compares_with_every_entry_in_constant_time(monkeypatch: pytest.MonkeyPatch):
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    for token in (TOKENS["ana"], TOKENS["citra"], "obx_nobody"):
        compared.clear()
        lookup(token, ENTRIES)
        assert len(compared) == len(ENTRIES)  # a match on the first stops nothing
        assert [b for _, b in compared] == [bytes.fromhex(e.sha256) for e in ENTRIES]
        assert all(isinstance(a, bytes) and len(a) == 32 for a, _ in compared)
    compared.clear()
    lookup("obx_nobody", [])
    assert len(compared) == 1  # the same work with nothing configured


def test_roles_are_ordered():
    assert ROLES == ("viewer", "operator", "admin")
    expected = {
        ("viewer", "viewer"): True,
        ("viewer", "operator"): False,
        ("viewer", "admin"): False,
        ("operator", "viewer"): True,
        ("operator", "operator"): True,
        ("operator", "admin"): False,
        ("admin", "viewer"): True,
        ("admin", "operator"): True,
        ("admin", "admin"): True,
    }
    for (role, needed), allowed in expected.items():
        assert permits(role, needed) is allowed, (role, needed)


@pytest.mark.parametrize("role", ["", "root", "Admin", "superuser"])
def test_an_unknown_role_permits_nothing(role: str):
    assert not any(permits(role, needed) for needed in ROLES)


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer obx_abc", "obx_abc"),
        ("bearer obx_abc", "obx_abc"),  # the scheme in any case
        ("BEARER obx_abc", "obx_abc"),
        ("Bearer   obx_abc  ", "obx_abc"),
        ("Bearer a-b.c_d~e+f/g==", "a-b.c_d~e+f/g=="),  # RFC 6750's b64token
    ],
)
def test_a_bearer_header(header: str, token: str):
    assert bearer(header) == token


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("   ", "missing"),
        ("obx_abc", "malformed"),
        ("Basic dXNlcjpwYXNz", "malformed"),
        ("Bearer", "malformed"),
        ("Bearer ", "malformed"),
        ("Bearer a b", "malformed"),
        ("Bearer obx_ä", "malformed"),
        ("Bearer a\x00b", "malformed"),
        ("Bearer=obx_abc", "malformed"),
        ("Bearer " + "a" * 5000, "malformed"),
    ],
)
def test_what_is_not_a_bearer_header(header: str | None, reason: str):
    with pytest.raises(AuthError) as caught:
        bearer(header)
    assert caught.value.reason == reason
    assert "Bearer" in str(caught.value) or "too long" in str(caught.value)


def test_authenticate_says_who_or_why_not():
    assert authenticate(f"Bearer {TOKENS['budi']}", ENTRIES) == Principal("budi", "operator")
    for header, reason in ((None, "missing"), ("Token x", "malformed"), ("Bearer x", "unknown")):
        with pytest.raises(AuthError) as caught:
            authenticate(header, ENTRIES)
        assert caught.value.reason == reason
    with pytest.raises(AuthError) as caught:
        authenticate(f"Bearer {TOKENS['budi']}x", ENTRIES)
    assert TOKENS["budi"] not in str(caught.value)


def test_the_entry_line_is_yaml_of_one_token():
    import yaml

    line = token_entry_line("null", "admin", "1" * 64)  # names and hashes YAML would retype
    assert yaml.safe_load(line) == [{"name": "null", "role": "admin", "sha256": "1" * 64}]
