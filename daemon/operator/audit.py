"""The audit as an operator reads it, the same for ``outboxd audit`` and ``GET
/api/v1/audit``: operator actions newest first, a page at a time (``before``: the
id the last page ended at), each who, what, on what, how many and why."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from daemon.domain.errors import Refused
from daemon.domain.limits import MAX_PAGE
from daemon.operator.base import Names, Operator
from daemon.operator.summaries import printable


@dataclass(frozen=True)
class AuditPage:
    items: list[dict[str, Any]]  # as the store keeps them: id, actor, action, target, …
    next: int | None  # the ``before`` of the next page; None: this is the last

    def json(self) -> dict[str, Any]:
        return {"items": self.items, "next": self.next}


async def audit_page(
    op: Operator,
    limit: int = 100,
    before: int | None = None,
    names: Names = {},  # noqa: B006 - read only
) -> AuditPage:
    """``limit`` entries (1 to ``MAX_PAGE``), newest first, older than ``before``."""
    if not 1 <= limit <= MAX_PAGE:
        field = names.get("limit", "limit")
        raise Refused(f"{field}: {limit} is outside 1..{MAX_PAGE}", "usage", "limit")
    items = await op.store.audit(limit=limit, before_id=before)
    return AuditPage(items, items[-1]["id"] if len(items) == limit else None)


def audit_lines(page: AuditPage, zone: ZoneInfo) -> list[str]:
    """The page as ``outboxd audit`` prints it: one line an action, the time in
    the file's zone, and, after it, the reason given."""
    lines = []
    for entry in page.items:
        at = datetime.fromisoformat(entry["at"]).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
        line = f"{entry['id']:>6}  {at}  {entry['actor']}  {entry['action']}"
        if entry.get("target"):
            line += f" {entry['target']}"
        line += f": {entry['changed']} changed"
        reason = (entry.get("details") or {}).get("reason")
        if reason:
            line += f" (why: {reason})"
        lines.append(printable(line))
    if not lines:
        lines.append("no operator actions")
    if page.next is not None:
        lines.append(f"more: outboxd audit --before {page.next}")
    return lines
