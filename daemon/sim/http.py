"""An HTTP sink: a webhook receiver for the tests and the demo that records every
request and answers as told, faults included.

In a test::

    async with HttpSink(Faults(status=503, headers={"Retry-After": "2"})) as sink:
        ...  # send to sink.url("/hook"); inspect sink.requests; change sink.faults

As a process (the demo's ``sim-http``)::

    python -m daemon.sim.http --host 127.0.0.1 --port 8081 [--fail-first 2] ...

``GET /_sink/requests`` lists what it kept, as JSON. Exits 0 on SIGTERM or SIGINT.

A partner that tracks what it was sent: ``GET /status/{key}`` answers the status
of a submission (a request that carried ``Idempotency-Key: {key}``), and the
status moves on over time — ``RECEIVED``, then ``PROCESSING`` after
``status_stage`` seconds, then, after as long again, ``ACCEPTED`` (or
``REJECTED`` for one key in ``reject_every``, by a hash of the key: the same
key always ends the same way) — with ``{"key": …, "status": …}``; a key it was
never sent is a 404 with status ``UNKNOWN``. The faults apply to it too.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from daemon.channels.http.rules import basic_credentials, signature_matches
from daemon.domain.logs import setup_logging
from daemon.runtime import eventloop
from daemon.sim import fail
from daemon.sim.fail import FailSwitch
from daemon.sim.server import SimulatorServer

log = logging.getLogger(__name__)

REQUESTS_PATH = "/_sink/requests"


@dataclass
class Faults:
    """How the sink answers; change the fields between requests to change its mind.

    Order per request: record it, wait ``delay``, drop the connection if ``drop``,
    check credentials (401), fail the first ``fail_first`` requests with
    ``fail_status``, else answer ``status`` with ``body`` and ``headers``.
    """

    status: int = 200
    body: bytes = b'{"ok": true}'
    headers: dict[str, str] = field(default_factory=dict)  # on every answer (Retry-After…)
    delay: float = 0.0  # seconds before answering
    fail_first: int = 0  # this many requests get fail_status before the others succeed
    fail_status: int = 503
    drop: bool = False  # close the connection, after reading the request, without answering
    bearer_token: str | None = None  # require Authorization: Bearer <token>
    # require a bearer token this says is valid (an OAuth2 issuer's ``valid``)
    bearer_valid: Callable[[str], bool] | None = None
    basic: tuple[str, str] | None = None  # require Authorization: Basic (username, password)
    hmac_secret: str | None = None  # require a valid sha256= signature of the body
    hmac_header: str = "X-Outboxd-Signature"


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str  # with the query string
    headers: CIMultiDict[str]
    body: bytes
    peer: str = ""  # the client's host:port: one value per connection

    def json(self) -> Any:
        return json.loads(self.body)

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "headers": dict(self.headers),
            "body": self.body.decode("utf-8", errors="replace"),
            "peer": self.peer,
        }


class HttpSink(SimulatorServer):
    """An aiohttp server on a loopback port that records requests and injects faults."""

    inspect_path = REQUESTS_PATH
    default_path = "/"

    def __init__(
        self,
        faults: Faults | None = None,
        *,
        keep: int | None = None,
        status_stage: float = 10.0,
        reject_every: int = 5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.faults = faults or Faults()
        self.keep = keep  # keep only the latest ``keep`` requests (None: all)
        self.requests: list[ReceivedRequest] = []
        self.failed = 0  # requests answered with fail_status so far
        self.status_stage = status_stage
        self.reject_every = reject_every
        self.clock = clock
        self.submitted: dict[str, float] = {}  # key → when it was first sent

    def status_of(self, key: str) -> str | None:
        """What the partner says of a submission now; None for one never sent."""
        first = self.submitted.get(key)
        if first is None:
            return None
        elapsed = self.clock() - first
        if elapsed < self.status_stage:
            return "RECEIVED"
        if elapsed < 2 * self.status_stage:
            return "PROCESSING"
        digest = int(hashlib.sha256(key.encode()).hexdigest(), 16)
        rejected = self.reject_every > 0 and digest % self.reject_every == 0
        return "REJECTED" if rejected else "ACCEPTED"

    # --- handlers -----------------------------------------------------------------

    async def _receive(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        received = ReceivedRequest(
            request.method, request.path_qs, CIMultiDict(request.headers), body, _peer(request)
        )
        self._record(received)
        faults = self.faults
        if faults.delay > 0:
            await asyncio.sleep(faults.delay)
        if faults.drop and request.transport is not None:
            request.transport.close()
            return web.Response()  # never reaches the client
        refusal = _refusal(faults, received)
        if refusal is not None:
            return _answer(401, refusal.encode(), {"WWW-Authenticate": "Bearer, Basic"})
        if self.failed < faults.fail_first:
            self.failed += 1
            return _answer(faults.fail_status, b'{"error": "injected failure"}', faults.headers)
        if request.method != "GET" and self.fail_switch.fails():
            body = json.dumps({"error": self.fail_switch.reason}).encode()
            return _answer(503, body, faults.headers)
        if request.method == "GET" and request.path.startswith("/status/") and faults.status < 300:
            wanted = request.match_info.get("tail", "")[len("status/") :]
            status = self.status_of(wanted)
            body = json.dumps({"key": wanted, "status": status or "UNKNOWN"}).encode()
            return _answer(200 if status else 404, body, faults.headers)
        key = received.headers.get("Idempotency-Key")
        if key is not None and request.method != "GET":
            self.submitted.setdefault(key, self.clock())
        return _answer(faults.status, faults.body, faults.headers)

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response([r.as_dict() for r in self.requests])

    def _record(self, received: ReceivedRequest) -> None:
        self.requests.append(received)
        if self.keep is not None and len(self.requests) > self.keep:
            del self.requests[: len(self.requests) - self.keep]
        log.info(
            "received",
            extra={"method": received.method, "path": received.path, "bytes": len(received.body)},
        )


def _refusal(faults: Faults, received: ReceivedRequest) -> str | None:
    """Why the credentials are wrong, or None when they are right (or not required)."""
    authorization = received.headers.get("Authorization", "")
    if faults.bearer_token is not None and not _same(
        authorization, f"Bearer {faults.bearer_token}"
    ):
        return "bad or missing bearer token"
    if faults.bearer_valid is not None and not (
        authorization[:7].lower() == "bearer " and faults.bearer_valid(authorization[7:])
    ):
        return "bad, expired or missing bearer token"
    if faults.basic is not None and not _same(authorization, basic_credentials(*faults.basic)):
        return "bad or missing basic credentials"
    if faults.hmac_secret is not None and not signature_matches(
        faults.hmac_secret.encode(), received.body, received.headers.get(faults.hmac_header)
    ):
        return f"bad or missing {faults.hmac_header}"
    return None


def _peer(request: web.Request) -> str:
    peername = request.transport.get_extra_info("peername") if request.transport else None
    return f"{peername[0]}:{peername[1]}" if peername else ""


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _answer(status: int, body: bytes, headers: Mapping[str, str]) -> web.Response:
    content_type = None if "Content-Type" in CIMultiDict(headers) else "application/json"
    if status in (204, 304):
        body = b""
    return web.Response(status=status, body=body, headers=headers, content_type=content_type)


# --- as a process -------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m daemon.sim.http", description="HTTP sink for the outboxd demo"
    )
    eventloop.add_argument(parser)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--status", type=int, default=200, help="answer with this status")
    parser.add_argument("--retry-after", help="send this Retry-After on every answer")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before answering")
    parser.add_argument("--fail-first", type=int, default=0, help="fail this many requests")
    parser.add_argument("--fail-status", type=int, default=503)
    parser.add_argument("--drop", action="store_true", help="drop every connection")
    fail.add_argument(parser)
    parser.add_argument(
        "--bearer-token",
        default=os.environ.get("OUTBOXD_SIM_BEARER_TOKEN"),
        help="require this bearer token (default: $OUTBOXD_SIM_BEARER_TOKEN)",
    )
    parser.add_argument(
        "--hmac-secret",
        default=os.environ.get("OUTBOXD_SIM_HMAC_SECRET"),
        help="require a valid body signature (default: $OUTBOXD_SIM_HMAC_SECRET)",
    )
    parser.add_argument("--hmac-header", default="X-Outboxd-Signature")
    parser.add_argument("--keep", type=int, default=1000, help="requests kept for inspection")
    parser.add_argument(
        "--status-stage", type=float, default=10.0, help="seconds per status of a submission"
    )
    parser.add_argument(
        "--reject-every", type=int, default=5, help="one submission in this many is rejected"
    )
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> int:
    faults = Faults(
        status=args.status,
        headers={"Retry-After": args.retry_after} if args.retry_after else {},
        delay=args.delay,
        fail_first=args.fail_first,
        fail_status=args.fail_status,
        drop=args.drop,
        bearer_token=args.bearer_token,
        hmac_secret=args.hmac_secret,
        hmac_header=args.hmac_header,
    )
    sink = HttpSink(
        faults, keep=args.keep, status_stage=args.status_stage, reject_every=args.reject_every
    )
    sink.fail_switch = FailSwitch(args.fail_switch, "sim-http")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await sink.start(args.host, args.port)
    log.info("listening", extra={"host": args.host, "port": sink.port})
    try:
        await stop.wait()
    finally:
        await sink.stop()
    log.info("stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    setup_logging("INFO", "text", "sim-http")
    return eventloop.run(_serve(args), args.event_loop)


if __name__ == "__main__":
    sys.exit(main())
