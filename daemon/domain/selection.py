"""Which messages an operator action or a listing is about: by ids or a filter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


class OperatorRefused(ValueError):
    """An operator action or a listing the rules refuse as asked (no selector, ids
    with a filter, a status the action cannot take, an unknown channel); the text
    says why and what to do instead. Nothing was changed."""


class InvalidCursor(ValueError):
    """A listing cursor that is not one this store handed out."""


@dataclass(frozen=True)
class MessageFilter:
    """Which messages: by ``ids``, or by a filter (the rest). ``since``/``until``
    bound the creation time; ``key_prefix`` needs ``channel`` (keys are per channel)."""

    ids: tuple[int, ...] = ()
    channel: str | None = None
    statuses: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    kind: str | None = None
    key_prefix: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.ids or self.by_filter)

    @property
    def by_filter(self) -> bool:
        return bool(
            self.channel
            or self.statuses
            or self.since
            or self.until
            or self.kind
            or self.key_prefix
        )
