"""HL7 FHIR R4 over REST (SATUSEHAT and other FHIR servers).

Each message is one operation, named by its kind (``rules.py``'s table):
``create``, ``update``, ``conditional-create`` or ``search``; its payload a
resource or a Bundle (JSON, checked at enqueue), or a search's query. References
to the prerequisite's answer (``{{after.id}}``, ``daemon.channels.references``)
are filled in just before it is sent. Every request carries ``Content-Type`` and
``Accept: application/fhir+json`` (unless the configured headers name their
own) and, with ``auth``, the credentials; with OAuth2 the channel's access
token (``SessionChannel._authorized``).

What each answer becomes:

| the server answers                            | the outcome                               |
|-----------------------------------------------|-------------------------------------------|
| 2xx to a write                                | delivered; the resource it answered (or   |
|                                               | its type, id, version from ``Location``)  |
|                                               | kept as the response: ``{{after.id}}``    |
| 200 to a conditional create                   | delivered: it existed, nothing created    |
| 2xx to a search with exactly one match        | delivered; that resource kept             |
| 2xx to a search with none, or several         | rejected, saying how many                 |
| 4xx with an OperationOutcome                  | rejected, its issues (severity, code,     |
|                                               | diagnostics, expression) in the detail,   |
|                                               | the whole answer kept                     |
| 3xx, another 4xx                              | rejected                                  |
| 408, 429, 5xx                                 | retry, honouring ``Retry-After``          |
| 401 (OAuth2)                                  | a fresh token, sent once more; a 401 to   |
|                                               | that too: held (the channel's, not the    |
|                                               | message's)                                |
| no token (the token endpoint down or refusing)| held: not an attempt, the message waits   |
| not reached, no answer, connection dropped    | retry, ``transport_error`` (the breaker)  |
| a reference the prerequisite's answer cannot  | rejected, naming the pointer              |
| fill                                          |                                           |

A ``conditional-create`` repeated after an answer was lost finds what the first
created (``If-None-Exist``) and creates nothing twice; a plain ``create`` cannot
promise that. Redirects are never followed, no cookies are kept, details never
quote a credential or a configured header value. One session per channel,
shared by its senders (``SessionChannel``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from daemon import __version__
from daemon.channels.base import Envelope, Outcome
from daemon.channels.fhir.rules import SEARCH, judge_search, judge_write, plan
from daemon.channels.fhir.settings import FhirSettings
from daemon.channels.http.rules import basic_credentials, decode_body
from daemon.channels.http.settings import BasicAuthSettings, BearerAuthSettings
from daemon.channels.oauth.settings import OAuth2Settings
from daemon.channels.oauth.tokens import TokenSource
from daemon.channels.references import UnresolvedReference, fill_json, fill_text
from daemon.channels.session import Answer, SessionChannel, read_answer, transport_failure

log = logging.getLogger("outboxd.channels.fhir")

FHIR_JSON = "application/fhir+json"
ANSWER_LIMIT = 1 << 20  # bytes of an answer read (a search's Bundle may be long)
_REDACTED = "***"


class FhirChannel(SessionChannel[FhirSettings]):
    """One configured FHIR server: its settings, its session, its token source."""

    def __init__(self, settings: FhirSettings) -> None:
        self.settings = settings
        self.base = URL(settings.base_url.rstrip("/") + "/")
        self._headers = _fixed_headers(settings)
        self._secrets = _secrets_of(settings)
        if isinstance(settings.auth, OAuth2Settings):
            self.tokens = TokenSource(settings.auth)
        super().__init__()

    async def send(self, envelope: Envelope) -> Outcome:
        """Deliver one message; never raises except ``asyncio.CancelledError``."""
        if self._closed:
            return Outcome.retry("channel is closed")
        try:
            body, target = self._prepare(envelope)
        except UnresolvedReference as exc:
            return Outcome.rejected(f"cannot fill its references: {exc}")
        except (ValueError, UnicodeDecodeError) as exc:  # stored unchecked
            return Outcome.rejected(f"not a FHIR payload this channel can send: {exc}")
        request = plan(envelope.kind, target)
        headers = self._headers.copy()
        headers.update(request.headers)
        url = URL(str(self.base) + request.path, encoded=True)
        try:
            session = self._open_session()

            async def exchange(token: str | None) -> Answer:
                if token is not None:
                    headers["Authorization"] = f"Bearer {token}"
                async with session.request(
                    request.method, url, data=body, headers=headers, allow_redirects=False
                ) as response:
                    return await read_answer(response, ANSWER_LIMIT)

            answer = await self._authorized(session, exchange, lambda a: a.status)
            if isinstance(answer, Outcome):
                return answer
            text = decode_body(answer.data, answer.charset, answer.truncated)
            if envelope.kind == SEARCH:
                assert isinstance(target, str)
                return judge_search(answer.status, answer.reason, answer.headers, text, target)
            kind_of = str(target.get("resourceType")) if isinstance(target, dict) else ""
            return judge_write(
                answer.status, answer.reason, answer.headers, text, envelope.kind, kind_of
            )
        except asyncio.CancelledError:
            raise
        except (TimeoutError, aiohttp.ClientError) as exc:
            failure = transport_failure(exc, self._address, self.base.host, self.settings)
            detail = failure or f"HTTP exchange with {self._address} failed: {self._why(exc)}"
            return Outcome.retry(detail, transport_error=True)
        except Exception as exc:
            log.warning("unexpected error in FHIR send", extra={"error": self._why(exc)})
            return Outcome.retry(f"request not sent: {self._why(exc)}", transport_error=True)

    # --- internals ------------------------------------------------------------------

    def _prepare(self, envelope: Envelope) -> tuple[bytes | None, dict[str, Any] | str]:
        """The body to send and what it plans from: the resource (references
        filled), or a search's query."""
        if envelope.kind == SEARCH:
            query = fill_text(envelope.payload.decode("utf-8").strip(), envelope.after_response)
            return None, query
        payload = envelope.payload
        if envelope.after_response is not None or b"{{after" in payload:
            payload = fill_json(payload, envelope.after_response)
        resource = json.loads(payload)
        if not isinstance(resource, dict):
            raise ValueError("the payload is not a JSON object")
        return payload, resource

    @property
    def _address(self) -> str:
        return f"{self.base.host}:{self.base.port}"

    def _why(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        for secret in self._secrets:
            text = text.replace(secret, _REDACTED)
        return text


def _fixed_headers(settings: FhirSettings) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict(settings.headers)
    headers.setdefault("Content-Type", FHIR_JSON)
    headers.setdefault("Accept", FHIR_JSON)
    headers.setdefault("User-Agent", f"outboxd/{__version__}")
    if isinstance(settings.auth, BasicAuthSettings):
        headers["Authorization"] = basic_credentials(
            settings.auth.username, settings.auth.password.get_secret_value()
        )
    elif isinstance(settings.auth, BearerAuthSettings):
        headers["Authorization"] = f"Bearer {settings.auth.token.get_secret_value()}"
    return headers


def _secrets_of(settings: FhirSettings) -> list[str]:
    found = [*settings.headers.values()]
    if isinstance(settings.auth, BasicAuthSettings):
        found.append(settings.auth.password.get_secret_value())
    elif isinstance(settings.auth, BearerAuthSettings):
        found.append(settings.auth.token.get_secret_value())
    elif isinstance(settings.auth, OAuth2Settings):
        found += [
            settings.auth.client_secret.get_secret_value(),
            settings.auth.client_id.get_secret_value(),
        ]
    return sorted({s for s in found if len(s) >= 4}, key=len, reverse=True)
