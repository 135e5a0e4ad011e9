"""Webhook delivery over HTTP(S).

What the peer receives, per message:

* the payload bytes, unchanged, as the body, with the configured method, URL and
  headers; ``Content-Type: application/json`` and ``User-Agent: outboxd/<version>``
  unless the configured headers name their own;
* a JSON body's references to its prerequisite's answer (``{{after.id}}``,
  ``daemon.channels.references``) filled in (one that cannot be: rejected);
* ``Idempotency-Key: <message key>``: the same on every attempt of a message, so the
  peer can de-duplicate a repeat (delivery is at least once);
* ``Authorization: Bearer …`` or ``Basic …`` when ``auth`` is set; with
  ``auth: {type: oauth2}`` the bearer token is the channel's access token from its
  token endpoint (``daemon.channels.oauth.tokens``: one per channel and process,
  fetched when first needed, replaced ahead of its expiry);
* with ``hmac`` set, its header (default ``X-Outboxd-Signature``) carrying
  ``sha256=<hex HMAC-SHA256 of the exact body bytes>``.

What an OAuth2 channel does besides (``SessionChannel._authorized``):

| what happens                                | the answer                              |
|---------------------------------------------|-----------------------------------------|
| no token: the token endpoint is down,       | retry, ``unsent``: not an attempt, the  |
| refuses the client, answers nonsense        | message waits; counts for the breaker   |
| the partner answers 401                     | the token dropped, a fresh one fetched, |
|                                             | the request sent once more              |
| 401 again, to the fresh token               | retry, ``unsent`` (the client's rights  |
|                                             | at the partner, not the message)        |

The headers outboxd computes (Idempotency-Key, the signature, Authorization when
``auth`` is set) win over configured headers of the same name.

Redirects are never followed. No cookies are kept. One ``aiohttp.ClientSession`` per
channel, created in the running loop on the first send, its pool sized to the
channel's ``concurrency``; every worker's sender shares it. The answer is judged
by ``http_rules.judge_response``; transport failures retry with
``transport_error=True``. Details never quote the URL's path or query, a
credential or a configured header value.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from daemon import __version__
from daemon.channels.base import Envelope, Outcome
from daemon.channels.http.rules import (
    IDEMPOTENCY_HEADER,
    RESPONSE_LIMIT,
    basic_credentials,
    decode_body,
    idempotency_value,
    judge_response,
    signature,
)
from daemon.channels.http.settings import BasicAuthSettings, BearerAuthSettings, HttpSettings
from daemon.channels.oauth.settings import OAuth2Settings
from daemon.channels.oauth.tokens import TokenSource
from daemon.channels.references import UnresolvedReference, fill_json, mentions
from daemon.channels.session import Answer, SessionChannel, read_answer, transport_failure

log = logging.getLogger(__name__)

_REDACTED = "***"
_MIN_REDACTABLE = 4  # shorter configured values are not worth hiding (and would mangle text)


class HttpChannel(SessionChannel[HttpSettings]):
    """One configured HTTP channel: its settings, its session, its senders."""

    def __init__(self, settings: HttpSettings) -> None:
        self.settings = settings
        self.url = URL(settings.url)
        self._headers = _fixed_headers(settings)
        self._secret = settings.hmac.secret.get_secret_value().encode() if settings.hmac else None
        self._secrets = _secrets_of(settings)
        if isinstance(settings.auth, OAuth2Settings):
            self.tokens = TokenSource(settings.auth)
        self._json = "json" in settings.content_type.lower()
        super().__init__()

    async def send(self, envelope: Envelope) -> Outcome:
        """Deliver one message; never raises except ``asyncio.CancelledError``."""
        if self._closed:
            return Outcome.retry("channel is closed")
        payload = envelope.payload
        if self._json and mentions(payload):
            try:
                payload = fill_json(payload, envelope.after_response)
            except UnresolvedReference as exc:
                return Outcome.rejected(f"cannot fill its references: {exc}")
            except ValueError:  # not JSON after all (stored unchecked): sent as it is
                pass
        try:
            session = self._open_session()
            headers = self._request_headers(envelope, payload)

            async def exchange(token: str | None) -> Answer:
                if token is not None:
                    headers["Authorization"] = f"Bearer {token}"
                async with session.request(
                    self.settings.method,
                    self.url,
                    data=payload,
                    headers=headers,
                    allow_redirects=False,
                ) as response:
                    return await read_answer(response, RESPONSE_LIMIT)

            answer = await self._authorized(session, exchange, lambda a: a.status)
            if isinstance(answer, Outcome):
                return answer
            body = decode_body(answer.data, answer.charset, answer.truncated)
            if answer.failure:
                body += f"\n[body incomplete: {answer.failure}]"
            return judge_response(answer.status, answer.reason, answer.headers, body)
        except asyncio.CancelledError:
            raise
        except (TimeoutError, aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError) as exc:
            failure = transport_failure(exc, self._address, self.url.host, self.settings)
            return self._unreachable(failure or self._why(exc))
        except aiohttp.ClientError as exc:
            return self._unreachable(f"HTTP exchange with {self._address} failed: {self._why(exc)}")
        except Exception as exc:
            log.warning(
                "unexpected error in HTTP send",
                extra={"host": self.url.host, "error": self._why(exc)},
            )
            return self._unreachable(f"request not sent: {self._why(exc)}")

    # --- internals ------------------------------------------------------------------

    @property
    def _address(self) -> str:
        return f"{self.url.host}:{self.url.port}"

    def _unreachable(self, detail: str) -> Outcome:
        return Outcome.retry(detail, transport_error=True)

    def _why(self, exc: BaseException) -> str:
        """``Type: message`` with every configured secret and the URL blanked out."""
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        for secret in self._secrets:
            text = text.replace(secret, _REDACTED)
        return text

    def _request_headers(self, envelope: Envelope, payload: bytes) -> CIMultiDict[str]:
        headers = self._headers.copy()
        headers[IDEMPOTENCY_HEADER] = idempotency_value(envelope.key)
        if self._secret is not None and self.settings.hmac is not None:
            headers[self.settings.hmac.header] = signature(self._secret, payload)
        return headers


def _fixed_headers(settings: HttpSettings) -> CIMultiDict[str]:
    """The headers every request carries; configured ones first, ours on top."""
    headers: CIMultiDict[str] = CIMultiDict(settings.headers)
    headers.setdefault("Content-Type", "application/json")
    headers.setdefault("User-Agent", f"outboxd/{__version__}")
    if isinstance(settings.auth, BasicAuthSettings):
        headers["Authorization"] = basic_credentials(
            settings.auth.username, settings.auth.password.get_secret_value()
        )
    elif isinstance(settings.auth, BearerAuthSettings):
        headers["Authorization"] = f"Bearer {settings.auth.token.get_secret_value()}"
    return headers


def _secrets_of(settings: HttpSettings) -> list[str]:
    """Strings a detail or log line must not show, longest first."""
    url = URL(settings.url)
    found = [settings.url, url.raw_path_qs, url.path_qs, *settings.headers.values()]
    found += [part for part in (url.raw_password, url.password) if part]
    if isinstance(settings.auth, BasicAuthSettings):
        found.append(settings.auth.password.get_secret_value())
    elif isinstance(settings.auth, BearerAuthSettings):
        found.append(settings.auth.token.get_secret_value())
    elif isinstance(settings.auth, OAuth2Settings):
        found += [settings.auth.client_secret.get_secret_value(), settings.auth.token_url]
    if settings.hmac is not None:
        found.append(settings.hmac.secret.get_secret_value())
    found = [s for s in set(found) if len(s) >= _MIN_REDACTABLE]
    return sorted(found, key=len, reverse=True)
