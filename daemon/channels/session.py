"""What the HTTP-based channels share: one aiohttp session per channel, made
lazily inside the running loop, used by every worker's sender."""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar

import aiohttp

from daemon.channels.base import Envelope, Outcome


class _SessionSettings(Protocol):
    @property
    def concurrency(self) -> int: ...

    @property
    def timeout(self) -> float: ...

    @property
    def connect_timeout(self) -> float: ...


S = TypeVar("S", bound=_SessionSettings)


class SessionChannel(Generic[S]):
    """Subclasses implement ``send``; after ``close`` they should answer retry."""

    settings: S

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

    async def close(self) -> None:
        """Close the session and its connections; later sends answer retry."""
        self._closed = True
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


class SharedSender:
    """A worker's handle on the channel; every sender shares the channel's session."""

    def __init__(self, channel: SessionChannel) -> None:
        self.channel = channel

    async def send(self, envelope: Envelope) -> Outcome:
        return await self.channel.send(envelope)

    async def close(self) -> None:
        """Nothing to release: the session belongs to the channel."""
