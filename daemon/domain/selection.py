"""Which messages an operator action or a listing is about: by ids or a filter."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from daemon.domain.errors import Refused
from daemon.domain.limits import is_id
from daemon.domain.search import FIELD_NAMES, field_problem, text_problem
from daemon.domain.statuses import STATUSES


class OperatorRefused(Refused):
    """An operator action or a listing the rules refuse as asked (no selector, ids
    with a filter, a status the action cannot take, an unknown channel); the text
    says why and what to do instead, ``field`` which part of the selection (as
    ``MessageFilter`` names it: ``ids``, ``channel``, ``status``, ``kind``,
    ``key``, ``since``, ``until``, ``q``, a search field such as ``mrn``) or
    ``limit`` or ``cursor``. Nothing was changed."""

    def __init__(self, text: str, field: str | None = None) -> None:
        super().__init__(text, "usage", field)


class InvalidCursor(OperatorRefused):
    """A listing cursor that is not one this store handed out."""

    def __init__(self, text: str, field: str | None = "cursor") -> None:
        super().__init__(text, field)


@dataclass(frozen=True)
class MessageFilter:
    """Which messages: by ``ids``, or by a filter (the rest). ``since``/``until``
    bound the creation time; ``key_prefix`` needs ``channel`` (keys are per channel).
    ``text``: payloads holding it (any case); ``fields``: (name, value) pairs of
    ``daemon.domain.search.SEARCH_FIELDS`` the message was stored with, each exactly."""

    ids: tuple[int, ...] = ()
    channel: str | None = None
    statuses: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    kind: str | None = None
    key_prefix: str | None = None
    text: str | None = None
    fields: tuple[tuple[str, str], ...] = ()

    @property
    def searched(self) -> bool:
        """Whether it looks into what messages say (text or fields)."""
        return bool(self.text or self.fields)

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
            or self.text
            or self.fields
        )

    @property
    def given(self) -> tuple[str, ...]:
        """The parts of the filter given, as a request names them."""
        parts = (
            ("channel", self.channel), ("status", self.statuses), ("kind", self.kind),
            ("key", self.key_prefix), ("since", self.since), ("until", self.until),
            ("q", self.text),
        )  # fmt: skip
        named = {name for name, _ in self.fields}
        return tuple(name for name, value in parts if value) + tuple(
            name for name in FIELD_NAMES if name in named
        )


FILTER_FIELDS = ("channel", "status", "kind", "key", "since", "until", "q", *FIELD_NAMES)


def check_selection(selector: MessageFilter, known_channels: Collection[str] | None = None) -> None:
    """Refuse what cannot be meant: ids with a filter, an unknown status, a key
    prefix without its channel, a channel not in ``known_channels`` (when given),
    a time range that is empty. Each refusal names its field."""
    if selector.ids and selector.by_filter:
        raise OperatorRefused(
            "select messages by id or by a filter (channel, status, kind, key, time), not both",
            "filter",
        )
    if any(not is_id(i) for i in selector.ids):
        raise OperatorRefused("message ids are whole numbers from 1", "ids")
    for name, field in (("channel", "channel"), ("kind", "kind"), ("key_prefix", "key")):
        value = getattr(selector, name)
        if value is not None and not (isinstance(value, str) and value.isprintable()):
            raise OperatorRefused(f"{name.replace('_', ' ')} {value!r} cannot be one", field)
    unknown = [s for s in selector.statuses if s not in STATUSES]
    if unknown:
        raise OperatorRefused(
            f"unknown status {unknown[0]!r} (statuses: {', '.join(STATUSES)})", "status"
        )
    if selector.key_prefix is not None and not selector.channel:
        raise OperatorRefused("a key prefix needs its channel (keys are unique per channel)", "key")
    if selector.key_prefix == "":
        raise OperatorRefused("a key prefix cannot be empty", "key")
    if known_channels is not None and selector.channel and selector.channel not in known_channels:
        known = ", ".join(sorted(known_channels)) or "none configured"
        raise OperatorRefused(
            f"unknown channel {selector.channel!r} (channels: {known})", "channel"
        )
    if selector.text is not None:
        problem = text_problem(selector.text) if isinstance(selector.text, str) else "not text"
        if problem:
            raise OperatorRefused(f"q: {problem}", "q")
    for name, value in selector.fields:
        if name not in FIELD_NAMES:
            raise OperatorRefused(
                f"unknown search field {name!r} (fields: {', '.join(FIELD_NAMES)})", name
            )
        problem = field_problem(value) if isinstance(value, str) else "not text"
        if problem:
            raise OperatorRefused(f"{name}: {value!r} {problem}", name)
    if selector.since and selector.until and selector.since >= selector.until:
        raise OperatorRefused("since must be earlier than until", "until")
