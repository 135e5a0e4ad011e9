"""One access token per client and process, kept fresh.

| when a sender asks for the token                 | what happens                           |
|--------------------------------------------------|----------------------------------------|
| none yet, or the last one expired                | one request to the token endpoint      |
|                                                  | (others asking meanwhile wait for it)  |
| valid, but within ``refresh_before`` of expiry   | the token is used; one fresh one is    |
| (or past half its life, if that is sooner)       | fetched beside the sends               |
| valid                                            | used                                   |
| the partner answered 401 to it (``invalidate``)  | dropped; the next ask fetches one      |
| the last fetch failed, its backoff not over      | ``TokenUnavailable`` at once, without  |
|                                                  | asking the endpoint again              |

A fetch that fails waits 1 s, then twice as long each time up to ``MAX_WAIT``
(or as long as the endpoint asked, with ``Retry-After``) before the next; every
sender asking meanwhile gets ``TokenUnavailable`` with the wait left, which a
channel answers as a transient failure of its own, not of the message. Each
fetch is counted by its result (``count``: ok, refused, failed, invalid). The
expiry is counted from when the request was sent, so a slow answer never makes
a token look fresher than it is. Nothing here logs or says a secret or a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import aiohttp
from yarl import URL

from daemon.channels.oauth.grant import Token, TokenError, read_token_response, token_request
from daemon.channels.oauth.settings import OAuth2Settings
from daemon.domain.fields import redact_url
from daemon.resilience.backoff import backoff_ceiling

log = logging.getLogger("outboxd.oauth")

FIRST_WAIT = 1.0  # seconds after a failed fetch before the next
MAX_WAIT = 60.0  # the longest wait between fetches while they keep failing
ANSWER_LIMIT = 64 * 1024  # bytes of a token endpoint's answer read
_REDACTED = "***"


class TokenUnavailable(Exception):
    """No token now; ``detail`` says why in one line, ``retry_after`` how many
    seconds until the next fetch may be tried."""

    def __init__(self, detail: str, retry_after: float) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


def _ignore(_result: str) -> None:
    pass


class TokenSource:
    """The token of one client (``OAuth2Settings``); ``get`` it for each request."""

    def __init__(
        self, settings: OAuth2Settings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.count: Callable[[str], None] = _ignore  # a fetch's result, for the metrics
        self.url = URL(settings.token_url)
        self.where = redact_url(settings.token_url.split("?")[0])
        self._secrets = sorted(
            {s for s in (settings.client_secret.get_secret_value(),
                         settings.client_id.get_secret_value()) if len(s) >= 4},
            key=len, reverse=True,
        )  # fmt: skip
        self._token: Token | None = None
        self._expires_at = 0.0  # clock() when the token stops being used
        self._refresh_at = 0.0  # clock() from when a fresh one is fetched beside the sends
        self._lock = asyncio.Lock()
        self._refreshing: asyncio.Task[None] | None = None
        self._failures = 0
        self._next_try = 0.0  # clock() before which no fetch is tried
        self._last_error = ""
        self.fetches = 0  # requests sent to the token endpoint

    # --- what a channel calls ---------------------------------------------------------

    async def get(self, session: aiohttp.ClientSession) -> str:
        """A valid access token; ``TokenUnavailable`` when none can be had now."""
        now = self.clock()
        token = self._token
        if token is not None and now < self._expires_at:
            if now >= self._refresh_at and self._refreshing is None and now >= self._next_try:
                self._refreshing = asyncio.create_task(
                    self._refresh(session), name="oauth token refresh"
                )
            return token.value
        async with self._lock:
            token = self._token
            if token is not None and self.clock() < self._expires_at:
                return token.value  # fetched while this one waited
            return (await self._fetch(session)).value

    def invalidate(self, value: str) -> None:
        """The partner refused ``value`` (HTTP 401): the next ``get`` fetches a new
        token, unless another sender has already replaced it."""
        if self._token is not None and self._token.value == value:
            self._token = None
            self._next_try = 0.0  # a 401 is no failure of the endpoint: ask at once

    async def close(self) -> None:
        task, self._refreshing = self._refreshing, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def redact(self, text: str) -> str:
        """``text`` with the client's id and secret blanked out."""
        for secret in self._secrets:
            text = text.replace(secret, _REDACTED)
        return text

    # --- internals --------------------------------------------------------------------

    async def _refresh(self, session: aiohttp.ClientSession) -> None:
        """Replace a token that is still valid but near its end; on failure keep it
        (``_fetch`` set the wait before the next try)."""
        try:
            async with self._lock:
                if self.clock() >= self._refresh_at:  # not replaced meanwhile
                    await self._fetch(session)
        except TokenUnavailable:
            pass
        finally:
            self._refreshing = None

    async def _fetch(self, session: aiohttp.ClientSession) -> Token:
        """One request to the token endpoint (the lock held)."""
        now = self.clock()
        if now < self._next_try:
            wait = self._next_try - now
            raise TokenUnavailable(f"{self._last_error} (next try in {wait:.3g}s)", wait)
        sent_at = now
        self.fetches += 1
        try:
            token = await self._request(session)
        except TokenError as exc:
            self._failures += 1
            wait = backoff_ceiling(self._failures, FIRST_WAIT, MAX_WAIT)
            if exc.retry_after is not None:
                wait = max(wait, min(exc.retry_after, MAX_WAIT * 10))
            self._last_error = self.redact(exc.detail)
            self._next_try = self.clock() + wait
            self.count(exc.result)
            log.warning(
                "no access token",
                extra={
                    "token_url": self.where, "result": exc.result,
                    "error": self._last_error, "retry_in": round(wait, 3),
                },
            )  # fmt: skip
            raise TokenUnavailable(self._last_error, wait) from None
        self._failures = 0
        self._next_try = 0.0
        life = token.expires_in if token.expires_in is not None else self.settings.assumed_lifetime
        early = min(self.settings.refresh_before, life / 2)
        self._token = token
        self._expires_at = sent_at + life
        self._refresh_at = sent_at + life - early
        self.count("ok")
        log.info(
            "access token fetched",
            extra={
                "token_url": self.where,
                "expires_in": token.expires_in if token.expires_in is not None else "unknown",
            },
        )
        return token

    async def _request(self, session: aiohttp.ClientSession) -> Token:
        s = self.settings
        request = token_request(
            s.client_id.get_secret_value(),
            s.client_secret.get_secret_value(),
            s.scope,
            s.client_auth,
        )
        try:
            async with session.post(
                self.url,
                data=request.body,
                headers=request.headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=s.timeout),
            ) as response:
                body = await response.content.read(ANSWER_LIMIT)
                retry_after = _seconds(response.headers.get("Retry-After"))
                return read_token_response(response.status, body, retry_after)
        except asyncio.CancelledError:
            raise
        except TokenError:
            raise
        except TimeoutError:
            raise TokenError(
                "failed", f"the token endpoint {self.where} did not answer within {s.timeout:g}s"
            ) from None
        except aiohttp.ClientConnectorError as exc:
            why = exc.strerror or type(exc.os_error).__name__
            raise TokenError(
                "failed", f"cannot connect to the token endpoint {self.where}: {why}"
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            why = getattr(exc, "strerror", None) or type(exc).__name__
            raise TokenError(
                "failed", f"the token endpoint {self.where} did not answer: {why}"
            ) from None


def _seconds(value: str | None) -> float | None:
    """A ``Retry-After`` of delta-seconds (a date is left to the backoff)."""
    text = (value or "").strip()
    return float(min(int(text), 86400)) if text.isdigit() else None
