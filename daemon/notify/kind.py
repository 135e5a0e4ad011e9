"""What a notify target kind declares, and what a target does."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from daemon.domain.fields import Model


class NotifySettings(Model):
    kind: str


class Notifier(Protocol):
    async def send(self, subject: str, text: str, event: dict[str, Any]) -> str:
        """Deliver one notification; answers what the receiver said, in one line.
        Raises ``NotifyFailed`` when it could not be delivered."""
        ...


class NotifyFailed(Exception):
    """A notification not delivered; the text says why."""


S = TypeVar("S", bound=NotifySettings)


@dataclass(frozen=True)
class NotifyKind(Generic[S]):
    name: str
    settings: type[S]
    build: Callable[[S], Notifier]
    describe: Callable[[S], str]
