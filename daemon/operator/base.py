"""Who acts and on what: the store, the settings as last loaded and the actor the
audit names, as every operator step takes them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from zoneinfo import ZoneInfo

from daemon.config.settings import Settings
from daemon.domain.errors import Refused
from daemon.domain.limits import REASON_MAX, text_problem
from daemon.store.aio import AsyncStore

Names = Mapping[str, str]  # how a face calls a field: {"until": "--until"} on the CLI


@dataclass(frozen=True)
class Operator:
    """An operator at work: ``outboxd`` on the command line (``cli:`` and the
    account's name) or a caller of the control API (``api:<token name>``), with
    the reason given for what it does now (a ticket number: in the audit of
    retry, cancel, resend and the schedule steps), if any."""

    store: AsyncStore
    settings: Settings
    actor: str
    reason: str | None = None

    def giving(self, reason: str | None, field: str = "reason") -> Operator:
        """This operator with ``reason`` (stripped; blank is none), checked by
        the text rule: ``Refused`` naming ``field`` (as the face calls it)."""
        said = (reason or "").strip()
        if not said:
            return replace(self, reason=None)
        problem = text_problem(said, REASON_MAX)
        if problem is not None:
            raise Refused(f"{field}: {problem}", "usage", field)
        return replace(self, reason=said)

    @property
    def zone(self) -> ZoneInfo:
        """The file's timezone: a time given without an offset is in it."""
        return ZoneInfo(self.settings.timezone)

    @property
    def channels(self) -> list[str]:
        return list(self.settings.channels)


def renamed(exc: Refused, names: Names, where: str = "") -> Refused:
    """``exc`` with its field as the face names it (``where`` in front)."""
    if exc.field is None:
        return exc
    moved = Refused(str(exc), exc.kind, where + names.get(exc.field, exc.field))
    moved.__cause__ = exc
    return moved
