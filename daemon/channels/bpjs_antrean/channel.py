"""BPJS Antrean RS delivery over HTTPS.

A message's ``kind`` names the call and its payload is the JSON body:

| kind               | call                       |
|--------------------|----------------------------|
| ``bpjs.add``        | POST ``{base}/antrean/add``        |
| ``bpjs.updatewaktu``| POST ``{base}/antrean/updatewaktu`` |
| ``bpjs.batal``      | POST ``{base}/antrean/batal``      |

The body is checked (``daemon.bpjs.payloads``) before anything is sent: a body BPJS
would refuse is rejected here. It is then sent as stored, byte for byte, with a
fresh ``X-timestamp`` and ``X-signature`` on every attempt. The answer is read by
``daemon.bpjs.results`` and becomes an ``Outcome``:

* delivered, and duplicate (BPJS already holds it) → delivered;
* a missing predecessor task (or add) → retry after ``predecessor_wait``, not a
  transport error;
* BPJS's "Gagal dicoba kembali", HTTP 408/429/5xx (Retry-After honoured), a 2xx that is
  not JSON → retry; a network failure or timeout → retry with ``transport_error``;
* anything else, the wrong service date and answers no rule covers included →
  rejected, BPJS's message in the detail and the full answer kept as ``response``.

One ``aiohttp.ClientSession`` per channel, created in the running loop on the first
send and shared by every sender; redirects are not followed, no cookies are kept.
Details never carry the secret or the user key.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable

import aiohttp
from yarl import URL

from daemon import __version__
from daemon.bpjs import signing
from daemon.bpjs.flow import CALLS, check_payload
from daemon.bpjs.results import Classification, Result, classify_answer, wrong_service_date
from daemon.channels.base import Envelope, Outcome
from daemon.channels.bpjs_antrean.settings import BpjsAntreanSettings
from daemon.channels.http.rules import RESPONSE_LIMIT, decode_body, parse_retry_after
from daemon.channels.session import SessionChannel

log = logging.getLogger(__name__)

CONTENT_TYPES = {"json": "application/json", "form": "application/x-www-form-urlencoded"}

_REDACTED = "***"


class BpjsAntreanChannel(SessionChannel[BpjsAntreanSettings]):
    """One configured BPJS Antrean channel: its settings, its session, its senders."""

    def __init__(
        self, settings: BpjsAntreanSettings, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = settings
        self.base_url = URL(settings.base_url.rstrip("/") + "/")
        self._clock = clock  # the X-timestamp's source; tests inject one
        self._secret = settings.secret.get_secret_value()
        self._user_key = settings.user_key.get_secret_value()
        self._content_type = CONTENT_TYPES[settings.content_type]
        super().__init__()

    async def send(self, envelope: Envelope) -> Outcome:
        """Deliver one message; never raises except ``asyncio.CancelledError``."""
        try:
            check_payload(envelope.kind, envelope.payload)
        except ValueError as exc:
            return Outcome.rejected(f"not sent: {exc}")
        if self._closed:
            return Outcome.retry("channel is closed")
        call = CALLS[envelope.kind]
        try:
            session = self._open_session()
            async with session.post(
                self.base_url.join(URL(call)),
                data=envelope.payload,
                headers=self._headers(),
                allow_redirects=False,
            ) as response:
                data, truncated = await _read_limited(response, RESPONSE_LIMIT)
                body = decode_body(data, response.charset, truncated)
                found = classify_answer(response.status, body, call, response.reason or "")
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                return self._outcome(call, found, body, retry_after)
        except asyncio.CancelledError:
            raise
        except aiohttp.ConnectionTimeoutError:
            return _unreachable(f"connect timed out after {self.settings.connect_timeout:g}s")
        except TimeoutError:
            return _unreachable(f"no response within {self.settings.timeout:g}s")
        except aiohttp.ClientConnectorDNSError:
            return _unreachable(f"DNS lookup failed for {self.base_url.host}")
        except aiohttp.ClientConnectorError as exc:
            errno = exc.os_error.errno
            reason = os.strerror(errno) if errno else exc.strerror or type(exc.os_error).__name__
            return _unreachable(f"cannot connect to {self._address}: {reason}")
        except aiohttp.ServerDisconnectedError:
            return _unreachable(f"{self._address} closed the connection without answering")
        except aiohttp.ClientError as exc:
            return _unreachable(f"HTTP exchange with {self._address} failed: {self._why(exc)}")
        except Exception as exc:
            log.warning(
                "unexpected error in BPJS send",
                extra={"host": self.base_url.host, "error": self._why(exc)},
            )
            return _unreachable(f"request not sent: {self._why(exc)}")

    # --- internals ------------------------------------------------------------------

    def _outcome(
        self, call: str, found: Classification, body: str, retry_after: float | None
    ) -> Outcome:
        why = f"{call}: {found.why}"
        if found.result is Result.DELIVERED:
            return Outcome.delivered(response=body, detail=why)
        if found.result is Result.DUPLICATE:
            return Outcome.delivered(
                response=body, detail=f"duplicate: already recorded by BPJS ({why})"
            )
        if found.result is Result.WAIT_FOR_PREDECESSOR:
            wait = self.settings.predecessor_wait
            return Outcome.retry(
                f"waiting {wait:g}s for the predecessor task ({why})",
                response=body,
                retry_after=wait,
                awaits_predecessor=True,
            )
        if found.result is Result.RETRY:
            detail = why if retry_after is None else f"{why}; asked to retry after {retry_after:g}s"
            return Outcome.retry(detail, response=body, retry_after=retry_after)
        if found.result is Result.REJECTED and wrong_service_date(found.message):
            why = f"task time is not on the booking's service date ({why})"
        return Outcome.rejected(why, response=body)

    @property
    def _address(self) -> str:
        return f"{self.base_url.host}:{self.base_url.port}"

    def _why(self, exc: BaseException) -> str:
        """``Type: message`` with the secret and the user key blanked out."""
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        for secret in sorted((self._secret, self._user_key), key=len, reverse=True):
            if secret:
                text = text.replace(secret, _REDACTED)
        return text

    def _headers(self) -> dict[str, str]:
        timestamp = signing.timestamp_text(self._clock())
        headers = signing.signed_headers(
            self.settings.cons_id, self._secret, self._user_key, timestamp
        )
        headers["Content-Type"] = self._content_type
        headers["Accept"] = "application/json"
        headers["User-Agent"] = f"outboxd/{__version__}"
        return headers


def _unreachable(detail: str) -> Outcome:
    return Outcome.retry(detail, transport_error=True)


async def _read_limited(response: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    """Up to ``limit`` bytes of the body, and whether there was more."""
    buffer = bytearray()
    while len(buffer) <= limit:
        chunk = await response.content.read(limit + 1 - len(buffer))
        if not chunk:
            break
        buffer += chunk
    return bytes(buffer[:limit]), len(buffer) > limit
