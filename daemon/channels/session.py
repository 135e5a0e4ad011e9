"""What the HTTP-based channels share: one aiohttp session per channel, made
lazily inside the running loop, used by every worker's sender; and, for a
channel whose partner issues OAuth2 tokens, one token source (``tokens``) and
the rule for a 401: the token is dropped, a fresh one fetched and the request
sent once more; a 401 to the fresh one too is the channel's problem, not the
message's (``Outcome.held``)."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import aiohttp
from multidict import CIMultiDictProxy

from daemon.channels.base import Envelope, Outcome
from daemon.channels.oauth.tokens import TokenSource, TokenUnavailable

UNAUTHORIZED = 401


class _SessionSettings(Protocol):
    @property
    def concurrency(self) -> int: ...

    @property
    def timeout(self) -> float: ...

    @property
    def connect_timeout(self) -> float: ...


S = TypeVar("S", bound=_SessionSettings)
A = TypeVar("A")


@dataclass(frozen=True)
class Answer:
    """An HTTP answer, read: status, reason, headers and up to a limit of the body."""

    status: int
    reason: str
    headers: CIMultiDictProxy[str]
    data: bytes
    truncated: bool = False  # the body was longer than the limit
    failure: str | None = None  # why reading the body stopped early (the status still holds)
    charset: str | None = None


class SessionChannel(Generic[S]):
    """Subclasses implement ``send``; after ``close`` they should answer retry."""

    settings: S
    tokens: TokenSource | None = None  # set by a subclass whose partner wants OAuth2

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def sender(self) -> SharedSender:
        return SharedSender(self)

    @property
    def session(self) -> aiohttp.ClientSession | None:
        """The shared session, once the first send has created it."""
        return self._session

    async def send(self, envelope: Envelope) -> Outcome:
        raise NotImplementedError

    def count_tokens(self, count: Callable[[str], None]) -> None:
        """How each token fetch is counted (``CountsTokens``); no-op without OAuth2."""
        if self.tokens is not None:
            self.tokens.count = count

    async def close(self) -> None:
        """Close the session and its connections; later sends answer retry."""
        self._closed = True
        if self.tokens is not None:
            await self.tokens.close()
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.settings.concurrency),
                timeout=aiohttp.ClientTimeout(
                    total=self.settings.timeout, sock_connect=self.settings.connect_timeout
                ),
                cookie_jar=aiohttp.DummyCookieJar(),  # keep no cookies between messages
                trust_env=False,  # no proxy from the environment
            )
        return self._session

    async def _authorized(
        self,
        session: aiohttp.ClientSession,
        exchange: Callable[[str | None], Awaitable[A]],
        status: Callable[[A], int],
    ) -> A | Outcome:
        """``exchange(token)`` with the channel's access token (None without OAuth2);
        on a 401 once more with a fresh token. An ``Outcome`` (held) when there is no
        token, or the partner refuses a fresh one too."""
        if self.tokens is None:
            return await exchange(None)
        try:
            token = await self.tokens.get(session)
            answer = await exchange(token)
            if status(answer) != UNAUTHORIZED:
                return answer
            self.tokens.invalidate(token)
            token = await self.tokens.get(session)
            answer = await exchange(token)
        except TokenUnavailable as exc:
            return Outcome.held(f"no access token: {exc.detail}", exc.retry_after)
        if status(answer) == UNAUTHORIZED:
            return Outcome.held(
                "the partner answered HTTP 401 to a freshly fetched access token: "
                "check the client's rights at the partner"
            )
        return answer


async def read_answer(response: aiohttp.ClientResponse, limit: int) -> Answer:
    """The answer with up to ``limit`` bytes of its body: a timeout or a dropped
    connection after the status line arrived is noted, and the status still decides."""
    buffer = bytearray()
    failure = None
    try:
        while len(buffer) <= limit:
            chunk = await response.content.read(limit + 1 - len(buffer))
            if not chunk:
                break
            buffer += chunk
    except TimeoutError:
        failure = "timed out"
    except aiohttp.ClientError as exc:
        failure = type(exc).__name__
    return Answer(
        response.status,
        response.reason or "",
        response.headers,
        bytes(buffer[:limit]),
        len(buffer) > limit,
        failure,
        response.charset,
    )


def transport_failure(
    exc: Exception, address: str, host: str | None, settings: _SessionSettings
) -> str | None:
    """What went wrong reaching the peer at ``address``, in one line, for the
    exceptions aiohttp raises when it was not reached or did not answer; None for
    any other exception (the caller's to describe)."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return f"connect timed out after {settings.connect_timeout:g}s"
    if isinstance(exc, TimeoutError):
        return f"no response within {settings.timeout:g}s"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"DNS lookup failed for {host}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        errno = exc.os_error.errno
        reason = os.strerror(errno) if errno else exc.strerror or type(exc.os_error).__name__
        return f"cannot connect to {address}: {reason}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return f"{address} closed the connection without answering"
    return None


class SharedSender:
    """A worker's handle on the channel; every sender shares the channel's session."""

    def __init__(self, channel: SessionChannel) -> None:
        self.channel = channel

    async def send(self, envelope: Envelope) -> Outcome:
        return await self.channel.send(envelope)

    async def close(self) -> None:
        """Nothing to release: the session belongs to the channel."""
