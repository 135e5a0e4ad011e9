"""What a channel promises the dispatcher: a sender per worker, and one verdict type."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class Verdict(enum.Enum):
    DELIVERED = "delivered"  # the peer accepted it
    RETRY = "retry"  # transient: try again later (maybe after ``retry_after``)
    REJECTED = "rejected"  # permanent: the peer refused it; retrying will not help


@dataclass(slots=True)  # read-only by convention: frozen costs per message
class Outcome:
    verdict: Verdict
    detail: str = ""  # for the operator: why, in one line
    response: str | None = None  # what the peer answered, as text
    retry_after: float | None = None  # seconds the peer asked to wait
    transport_error: bool = False  # the peer could not be reached (counts for the breaker)
    # The peer has no record of an earlier message this one needs (BPJS: the add or
    # the task before). Waiting for it does not count as an attempt; when the earlier
    # ones are recorded delivered here, they are sent again first (once).
    awaits_predecessor: bool = False
    # The message never left: the channel itself could not send (no access token
    # from its token endpoint, or the partner refused a fresh one). Not an attempt,
    # and no reason to give up on the message: it waits ``retry_after`` and goes
    # when the channel can send again. Counts for the breaker.
    unsent: bool = False

    @classmethod
    def delivered(cls, response: str | None = None, detail: str = "") -> Outcome:
        return cls(Verdict.DELIVERED, detail, response)

    @classmethod
    def retry(
        cls,
        detail: str,
        response: str | None = None,
        retry_after: float | None = None,
        transport_error: bool = False,
        awaits_predecessor: bool = False,
    ) -> Outcome:
        return cls(
            Verdict.RETRY, detail, response, retry_after, transport_error, awaits_predecessor
        )

    @classmethod
    def rejected(cls, detail: str, response: str | None = None) -> Outcome:
        return cls(Verdict.REJECTED, detail, response)

    @classmethod
    def held(cls, detail: str, retry_after: float | None = None) -> Outcome:
        """Not sent: the channel cannot send now (see ``unsent``)."""
        return cls(Verdict.RETRY, detail, None, retry_after, True, False, True)


@dataclass(slots=True)  # read-only by convention: frozen costs per message
class Envelope:
    """What a sender gets to send: the stored payload and its identity."""

    id: int
    key: str
    kind: str
    payload: bytes
    attempt: int  # 1 for the first attempt
    # What the peer answered the message's prerequisite (``after``), as stored; None
    # without one. A kind that fills references (``{{after.id}}``) reads it.
    after_response: str | None = None


class Sender(Protocol):
    """One worker's connection to the peer. Not shared between tasks."""

    async def send(self, envelope: Envelope) -> Outcome: ...

    async def close(self) -> None: ...


@runtime_checkable
class CountsTokens(Protocol):
    """A channel that fetches access tokens: ``count`` is called with each fetch's
    result (ok, refused, failed, invalid), for the metrics."""

    def count_tokens(self, count: Callable[[str], None]) -> None: ...


class Channel(Protocol):
    """A configured channel: hands each worker a sender; closed at drain."""

    def sender(self) -> Sender: ...

    async def close(self) -> None: ...
