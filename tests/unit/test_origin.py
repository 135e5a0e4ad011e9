"""The names the control API answers to, from where it listens (a table): no
foreign ``Host`` (DNS rebinding), and which ``Origin`` counts as its own."""

from __future__ import annotations

import socket

import pytest

from daemon.api.origin import _authority, _same_origin, names_of


@pytest.mark.parametrize(
    ("host", "allowed", "name", "answers"),
    [
        ("127.0.0.1", [], "127.0.0.1", True),
        ("127.0.0.1", [], "127.0.0.53", True),  # loopback: this machine either way
        ("127.0.0.1", [], "::1", True),
        ("127.0.0.1", [], "localhost", True),
        ("127.0.0.1", [], "10.0.0.7", False),
        ("127.0.0.1", [], "attacker.example", False),
        ("127.0.0.1", ["outboxd.example.org"], "outboxd.example.org", True),
        ("localhost", [], "127.0.0.1", True),
        ("::1", [], "localhost", True),
        ("10.0.0.7", [], "10.0.0.7", True),
        ("10.0.0.7", [], "10.0.0.8", False),
        ("10.0.0.7", [], "localhost", False),  # not listening on loopback
        ("outboxd.lan", [], "outboxd.lan", True),
        ("outboxd.lan", [], "10.0.0.7", False),
        ("0.0.0.0", [], "10.0.0.7", True),  # any address: any IP literal (no rebinding)
        ("0.0.0.0", [], "fe80::1", True),
        ("::", [], "localhost", True),
        ("0.0.0.0", [], socket.gethostname().lower(), True),
        ("0.0.0.0", [], "attacker.example", False),
    ],
)
def test_the_names_a_host_may_give(host, allowed, name, answers):
    assert names_of(host, allowed).allow(name) is answers


@pytest.mark.parametrize(
    ("value", "read"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("LocalHost.", ("localhost", None)),
        ("[::1]:8080", ("::1", 8080)),
        ("outboxd.example.org", ("outboxd.example.org", None)),
        ("a b", None),
        ("x:port", None),
        ("user@host", None),
        ("host/path", None),
        ("", None),
    ],
)
def test_a_host_header_read(value, read):
    assert _authority(value) == read


@pytest.mark.parametrize(
    ("origin", "host", "same"),
    [
        ("http://127.0.0.1:8080", "127.0.0.1:8080", True),
        ("http://localhost:8080", "localhost:8080", True),
        ("http://127.0.0.1:8081", "127.0.0.1:8080", False),  # another program here
        ("http://localhost:8080", "127.0.0.1:8080", False),  # another site to a browser
        ("https://outboxd.example.org", "outboxd.example.org", True),
        ("https://outboxd.example.org", "127.0.0.1:8080", True),  # the proxy's own Host
        ("https://outboxd.example.org:8443", "outboxd.example.org", False),
        ("http://evil.example", "127.0.0.1:8080", False),
        ("null", "127.0.0.1:8080", False),
        ("file://", "127.0.0.1:8080", False),
        ("http://127.0.0.1:8080/path", "127.0.0.1:8080", False),
    ],
)
def test_which_origin_is_the_apis_own(origin, host, same):
    names = names_of("127.0.0.1", ["outboxd.example.org"])
    assert _same_origin(origin, host, names) is same
