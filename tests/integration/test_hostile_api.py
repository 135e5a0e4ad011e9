"""The control API probed as an attacker or a careless client would, over a real
socket, on SQLite and PostgreSQL: text outboxd cannot keep (the same 4xx naming
the field on both), JSON that is not JSON, headers given twice, a webhook of the
wrong type, writes from another site and requests to another host name, an
oversized header in the log, and connections held open. Each case checks the
answer, that nothing changed, and that the server still serves."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from daemon.domain.messages import Delivered, NewMessage
from daemon.webhooks.signing import secret_key, signed_headers
from tests.integration.api_harness import TOKENS, Api, serve_api

SECRET = "whsec_bmV3LXNlY3JldC1uZXctc2VjcmV0LWtleTE="
WEBHOOKS = f"""
webhooks:
  taxoffice:
    secret: "{SECRET}"
    channel: hook
    message_key: /submission/ref
    status: /status
    statuses: {{ACCEPTED: confirmed}}
"""
FAST = """  idle_timeout: 1s
  body_timeout: 1s
"""


@pytest.fixture
async def api(db_url: str) -> AsyncIterator[Api]:
    async with serve_api(db_url, WEBHOOKS) as api:
        yield api


@pytest.fixture
async def open_api(db_url: str) -> AsyncIterator[Api]:
    """No tokens: every caller is local (the demo's and a laptop's setup)."""
    async with serve_api(db_url, WEBHOOKS, tokens=False) as api:
        yield api


def _port(api: Api) -> int:
    return urlsplit(api.base).port or 80


async def _raw(api: Api, data: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
    """Send ``data`` as it is (it should ask to close the connection) and read the
    answer to its end: the status and the body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(api))
    try:
        writer.write(data)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


async def _still_serves(api: Api) -> None:
    status, _, _ = await api.call("GET", "/api/v1/stats", role="viewer")
    assert status == 200


async def _sent(api: Api, key: str = "m1") -> int:
    store = api.control.store
    [result] = await store.enqueue_many([NewMessage("hook", key, b'{"n": 1}')], actor="test")
    [claimed] = await store.claim(["hook"], "w", 10, 60)
    await store.record("w", [Delivered(claimed.id, '{"ok": true}')])
    return result.id


def _signed(body: bytes, webhook_id: str = "msg_1") -> dict[str, str]:
    return {
        **signed_headers([secret_key(SECRET)], webhook_id, int(time.time()), body),
        "Content-Type": "application/json",
    }


# --- text outboxd cannot keep: the same answer on both databases ------------------------


# a byte that is not UTF-8 comes as a surrogate (as aiohttp reads a header)
@pytest.mark.parametrize("webhook_id", ["m" * 256, "msg\t1", "msg_\u00a01", "msg_\udcff"])
async def test_a_signed_webhook_whose_id_cannot_be_kept_is_400_naming_it(api: Api, webhook_id):
    message = await _sent(api)
    body = json.dumps({"submission": {"ref": "m1"}, "status": "ACCEPTED"}).encode()
    headers = _signed(body, webhook_id)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (
        f"POST /webhooks/taxoffice HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode("utf-8", "surrogateescape") + body
    status, answer = await _raw(api, request)
    problem = json.loads(answer)
    assert status == 400 and problem["field"] == "webhook-id", problem
    assert await api.control.store.webhook_receipts() == []
    _, shown, _ = await api.call("GET", f"/api/v1/messages/{message}")
    assert shown["status"] == "sent"
    status, done, _ = await api.call(
        "POST", "/webhooks/taxoffice", role=None, data=body, headers=_signed(body)
    )
    assert status == 200 and done["result"] == "applied"


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"submission": {"ref": "m1\u0000"}, "status": "ACCEPTED"}, "/submission/ref"),
        ({"submission": {"ref": "m1\n"}, "status": "ACCEPTED"}, "/submission/ref"),
        ({"submission": {"ref": "m" * 256}, "status": "ACCEPTED"}, "/submission/ref"),
        ({"submission": {"ref": "m1"}, "status": "ACCEPTED\u0000"}, "/status"),
        ({"submission": {"ref": "m1"}, "status": "A" * 256}, "/status"),
    ],
)
async def test_text_in_a_webhook_that_cannot_be_kept_is_400_with_its_receipt(
    api: Api, document, field
):
    message = await _sent(api)
    body = json.dumps(document).encode()
    status, problem, _ = await api.call(
        "POST", "/webhooks/taxoffice", role=None, data=body, headers=_signed(body)
    )
    assert status == 400 and problem["field"] == field and problem["result"] == "unreadable"
    [receipt] = await api.control.store.webhook_receipts()
    assert receipt.result == "unreadable" and receipt.answer["field"] == field
    _, shown, _ = await api.call("GET", f"/api/v1/messages/{message}")
    assert shown["status"] == "sent"
    status, again, _ = await api.call(  # a replay: the first answer
        "POST", "/webhooks/taxoffice", role=None, data=body, headers=_signed(body)
    )
    assert status == 400 and again == problem


@pytest.mark.parametrize("note", ["down\u0000time", "a\nb", "tab\there", "n" * 1001])
async def test_a_pause_note_that_cannot_be_kept_is_400_naming_note(api: Api, note):
    status, problem, _ = await api.call(
        "POST", "/api/v1/schedules/nightly/pause", role="operator", json={"note": note}
    )
    assert status == 400 and problem["field"] == "note", problem
    _, shown, _ = await api.call("GET", "/api/v1/schedules/nightly")
    assert shown["paused"] is False
    _, audit, _ = await api.call("GET", "/api/v1/audit")
    assert audit["items"] == []


# --- JSON that is not JSON ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"channel": "hook", "key": "k", "payload": "{\\"v\\": NaN}"}', "payload"),
        ('{"channel": "hook", "key": "k", "payload": "[-Infinity]"}', "payload"),
        ('{"channel": "hook", "key": "k", "payload": "{\\"v\\": 1e400}"}', "payload"),
        ('{"channel": "hook", "key": "k", "payload": "{\\"a\\": 1, \\"a\\": 2}"}', "payload"),
        ('{"channel": "hook", "key": "k", "payload": {"v": NaN}}', "payload.v"),
        ('{"channel": "hook", "key": "k", "payload": {"v": -Infinity}}', "payload.v"),
        ('{"channel": "hook", "key": "k", "payload": {"v": [1e400]}}', "payload.v[0]"),
        ('{"channel": "hook", "key": "k", "key": "j", "payload": {}}', "key"),
        ('{"messages": [{"channel": "hook", "key": "k", "payload": {"v": NaN}}]}',
         "messages[0].payload.v"),
    ],
)  # fmt: skip
async def test_json_a_partner_would_not_read_as_we_do_is_refused_naming_the_field(
    api: Api, body, field
):
    status, problem, _ = await api.call(
        "POST", "/api/v1/messages", role="operator", data=body.encode(),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert status == 400 and problem["field"] == field, problem
    _, listed, _ = await api.call("GET", "/api/v1/messages")
    assert listed["items"] == []


# --- headers given twice, a webhook of the wrong type -----------------------------------


async def test_two_authorization_headers_are_400_whatever_they_hold(api: Api):
    message = await _sent(api)
    for second in ("junk", f"Bearer {TOKENS['admin']}"):
        request = (
            "POST /api/v1/messages/resend HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {TOKENS['admin']}\r\nAuthorization: {second}\r\n"
            "Content-Type: application/json\r\nContent-Length: 11\r\n"
            'Connection: close\r\n\r\n{"ids": [1]}'[:-1]
        )
        body = json.dumps({"ids": [message]})
        request = request.replace("Content-Length: 11", f"Content-Length: {len(body)}")
        request = request.rsplit("\r\n\r\n", 1)[0] + "\r\n\r\n" + body
        status, answer = await _raw(api, request.encode())
        problem = json.loads(answer)
        assert status == 400 and problem["field"] == "Authorization", problem
    _, shown, _ = await api.call("GET", f"/api/v1/messages/{message}")
    assert shown["status"] == "sent"
    _, audit, _ = await api.call("GET", "/api/v1/audit")
    assert audit["items"] == []


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_a_signed_webhook_that_is_not_json_is_415_and_nothing_is_kept(api: Api, content_type):
    message = await _sent(api)
    body = json.dumps({"submission": {"ref": "m1"}, "status": "ACCEPTED"}).encode()
    headers = _signed(body)
    del headers["Content-Type"]
    if content_type:
        headers["Content-Type"] = content_type
    status, problem, _ = await api.call(
        "POST", "/webhooks/taxoffice", role=None, data=body, headers=headers
    )
    assert status == 415 and problem["field"] == "Content-Type", problem
    assert await api.control.store.webhook_receipts() == []
    refused = api.control.metrics.webhook_receipts.labels("taxoffice", "refused")._value.get()
    assert refused == 1
    _, shown, _ = await api.call("GET", f"/api/v1/messages/{message}")
    assert shown["status"] == "sent"


async def test_a_webhook_header_given_twice_is_400(api: Api):
    body = json.dumps({"submission": {"ref": "m1"}, "status": "ACCEPTED"}).encode()
    headers = _signed(body)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += f"webhook-signature: {headers['webhook-signature']}\r\n"
    request = (
        f"POST /webhooks/taxoffice HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    status, answer = await _raw(api, request)
    assert status == 400 and json.loads(answer)["field"] == "webhook-signature"
    assert await api.control.store.webhook_receipts() == []


# --- writes from another site, requests to another name ---------------------------------


CROSS_SITE = [
    ({"Origin": "http://evil.example", "Content-Type": "application/json"}, 403, "Origin"),
    ({"Origin": "null", "Content-Type": "application/json"}, 403, "Origin"),
    ({"Origin": "http://127.0.0.1:1", "Content-Type": "application/json"}, 403, "Origin"),
    ({"Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"}, 403,
     "Sec-Fetch-Site"),
    ({"Sec-Fetch-Site": "same-site", "Content-Type": "application/json"}, 403,
     "Sec-Fetch-Site"),
    ({"Content-Type": "text/plain"}, 415, "Content-Type"),
    ({"Content-Type": "application/x-www-form-urlencoded"}, 415, "Content-Type"),
    ({"Content-Type": "multipart/form-data; boundary=x"}, 415, "Content-Type"),
    ({}, 415, "Content-Type"),
]  # fmt: skip


@pytest.mark.parametrize(("headers", "status", "field"), CROSS_SITE)
@pytest.mark.parametrize("tokens", [False, True])
async def test_a_write_from_another_site_is_refused_whatever_the_auth_mode(
    db_url: str, tokens, headers, status, field
):
    async with serve_api(db_url, WEBHOOKS, tokens=tokens) as api:
        message = await _sent(api)
        auth = {"Authorization": f"Bearer {TOKENS['admin']}"} if tokens else {}
        for path, body in (
            ("/api/v1/schedules/nightly/run", b""),
            ("/api/v1/messages/resend", json.dumps({"ids": [message]}).encode()),
            ("/api/v1/processes/outboxd:dispatcher-0/stop", b""),
        ):
            async with api.session.post(
                api.base + path, data=body, headers={**auth, **headers}
            ) as response:
                problem = await response.json(content_type=None)
            assert response.status == status and problem["field"] == field, (path, problem)
        _, shown, _ = await api.call("GET", f"/api/v1/messages/{message}")
        assert shown["status"] == "sent"
        _, runs, _ = await api.call("GET", "/api/v1/schedules/nightly/runs")
        assert runs["items"] == []
        _, audit, _ = await api.call("GET", "/api/v1/audit")
        assert audit["items"] == []
        # the page's own origin, or no browser at all, with JSON: done
        same = {"Origin": api.base, "Sec-Fetch-Site": "same-origin"}
        for extra in (same, {}, {"X-Requested-With": "curl"}):
            status_now, answer, _ = await api.call(
                "POST", "/api/v1/schedules/nightly/run", headers=extra
            )
            assert status_now == 202, answer
        await _still_serves(api)


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("attacker.example", 400),
        ("attacker.example:{port}", 400),
        ("127.0.0.1.nip.io:{port}", 400),
        ("a b", 400),
        ("127.0.0.1:{port}", 200),
        ("localhost:{port}", 200),
        ("LOCALHOST.", 200),
        ("[::1]:{port}", 200),
        ("127.0.0.2", 200),
        ("10.0.0.1", 400),
    ],
)
async def test_only_the_control_apis_own_host_names_are_answered(open_api: Api, host, status):
    await _sent(open_api)
    request = (
        f"GET /api/v1/messages HTTP/1.1\r\nHost: {host.format(port=_port(open_api))}\r\n"
        "Connection: close\r\n\r\n"
    )
    got, body = await _raw(open_api, request.encode())
    assert got == status, body
    if status == 400:
        assert json.loads(body)["field"] == "Host" and b"m1" not in body


async def test_a_host_given_twice_is_400(open_api: Api):
    request = (
        "GET /api/v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: attacker.example\r\n"
        "Connection: close\r\n\r\n"
    )
    status, _ = await _raw(open_api, request.encode())
    assert status == 400


async def test_a_reverse_proxys_name_is_answered_once_it_is_allowed(db_url: str):
    control = "  allowed_hosts: [outboxd.example.org]\n"
    async with serve_api(db_url, WEBHOOKS, tokens=False, control_yaml=control) as api:
        for host, origin, status in (
            ("outboxd.example.org", "https://outboxd.example.org", 202),  # Host kept
            ("127.0.0.1:{port}", "https://outboxd.example.org", 202),  # Host rewritten
            ("outboxd.example.org", "https://outboxd.example.org:8443", 403),
            ("elsewhere.example.org", "https://outboxd.example.org", 400),
        ):
            request = (
                "POST /api/v1/schedules/nightly/run HTTP/1.1\r\n"
                f"Host: {host.format(port=_port(api))}\r\nOrigin: {origin}\r\n"
                "Content-Type: application/json\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            got, body = await _raw(api, request.encode())
            assert got == status, (host, origin, body)
            await asyncio.sleep(0.001)  # two runs queued in one microsecond would be one


# --- an oversized header, in the log --------------------------------------------------


async def test_an_oversized_authorization_header_is_one_short_line_in_the_log(
    api: Api, caplog: pytest.LogCaptureFixture
):
    token = TOKENS["admin"]
    long_header = f"Bearer {token}" + "A" * 9000
    with caplog.at_level(logging.DEBUG):
        for _ in range(30):
            request = (
                f"GET /api/v1/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {long_header}"
                "\r\nConnection: close\r\n\r\n"
            )
            status, _ = await _raw(api, request.encode())
            assert status == 400
        await _still_serves(api)
    records = [r for r in caplog.records if r.name.startswith(("outboxd", "aiohttp"))]
    refused = [r for r in records if "malformed request" in r.getMessage()]
    assert 1 <= len(refused) <= 10 and all(r.levelno == logging.WARNING for r in refused)
    for record in records:
        text = record.getMessage() + repr(vars(record))
        assert token not in text and "AAAA" not in text and record.exc_info is None


# --- connections held open ----------------------------------------------------------------


@pytest.fixture
async def fast_api(db_url: str) -> AsyncIterator[Api]:
    async with serve_api(db_url, WEBHOOKS, tokens=False, control_yaml=FAST) as api:
        yield api


async def _until_closed(reader: asyncio.StreamReader) -> bytes:
    """What the server sent before it closed the connection. A server that closes
    with bytes of the request still unread makes its kernel reset the connection
    (RST, not FIN): what it sent before is kept, read a piece at a time as it came,
    and the reset counts as the close it is."""
    data = b""
    try:
        while chunk := await reader.read(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


async def test_an_idle_connection_is_closed_after_the_idle_timeout(fast_api: Api):
    # the server makes each connection's handler with the configured idle timeout
    # (1 s), not the default (15 s) nor aiohttp's own (an hour)
    assert fast_api.runner.server is not None
    assert fast_api.runner.server().keepalive_timeout == 1.0
    connections = [await asyncio.open_connection("127.0.0.1", _port(fast_api)) for _ in range(50)]
    for reader, writer in connections:
        # nothing is sent: only the server's close ends the read (one left open
        # would run into the test's timeout)
        assert await _until_closed(reader) == b""
        writer.close()
    await _still_serves(fast_api)


async def test_a_kept_alive_connection_is_closed_after_the_idle_timeout(fast_api: Api):
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(fast_api))
    started = time.monotonic()  # before the answer that starts the idle timer
    writer.write(b"GET /api/v1/stats HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    first = await reader.readuntil(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200") and b"Connection: close" not in first
    await _until_closed(reader)  # the body, then the close: only the server's ends it
    assert time.monotonic() - started > 0.5  # kept open for the idle timeout (1 s) first
    writer.close()


async def test_headers_trickled_a_byte_at_a_time_are_cut_off(fast_api: Api):
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(fast_api))
    head = b"GET /api/v1/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
    closed = asyncio.ensure_future(_until_closed(reader))
    # a header that never ends, a byte every 50 ms (the server reads up to 8,190
    # bytes of a line: 400 s of it, past the test's timeout): only the idle
    # timeout, which the bytes arriving do not put off, can end it
    sent = 0
    while not closed.done():
        writer.write(head[sent : sent + 1] if sent < len(head) else b"a")
        sent += 1
        await asyncio.wait([closed], timeout=0.05)
    assert await closed == b""  # cut off without an answer
    writer.close()
    await _still_serves(fast_api)


async def test_a_body_trickled_a_byte_at_a_time_is_408(fast_api: Api):
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(fast_api))
    body = json.dumps({"note": "slow " * 40}).encode()
    writer.write(
        b"POST /api/v1/schedules/nightly/pause HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    answered = asyncio.ensure_future(_until_closed(reader))
    for byte in body:
        if answered.done():
            break
        writer.write(bytes([byte]))
        await asyncio.wait([answered], timeout=0.05)
    answer = await asyncio.wait_for(answered, 15)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    writer.close()
    _, shown, _ = await fast_api.call("GET", "/api/v1/schedules/nightly")
    assert shown["paused"] is False
