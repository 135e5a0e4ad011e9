"""The audit of operator actions: each written in the transaction of the change
it records (``entry``), or on its own for an action outside the database."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from daemon.store.unit import Unit


class Audit:
    def __init__(self, unit: Unit) -> None:
        self.unit = unit
        self.m = unit.models

    def entry(
        self,
        actor: str,
        action: str,
        target: str | None,
        details: dict[str, Any] | None,
        changed: int,
        now: datetime,
        reason: str | None = None,
    ) -> int:
        """Record an operator action, inside the unit of work that makes it; its id.
        ``reason``: what the operator said (a ticket), kept in the details."""
        if reason is not None:
            details = {**(details or {}), "reason": reason}
        return int(
            self.m.AuditEntry.insert(
                actor=actor, action=action, target=target, details=details, changed=changed, at=now
            ).execute()
        )

    def record_action(
        self,
        actor: str,
        action: str,
        target: str | None,
        details: dict[str, Any] | None = None,
        changed: int = 1,
        now: datetime | None = None,
    ) -> int:
        """Record an operator action made outside the database (a process started
        or stopped through supervisord); its audit id."""
        return self.unit.write(
            lambda: self.entry(actor, action, target, details, changed, self.unit.now(now))
        )

    def audit(self, limit: int = 100, before_id: int | None = None) -> list[dict[str, Any]]:
        """The operator actions, newest first."""
        AuditEntry = self.m.AuditEntry

        def work() -> list[dict[str, Any]]:
            query = AuditEntry.select().order_by(AuditEntry.id.desc()).limit(limit)
            if before_id is not None:
                query = query.where(AuditEntry.id < before_id)
            return [
                {
                    "id": row.id,
                    "actor": row.actor,
                    "action": row.action,
                    "target": row.target,
                    "details": row.details,
                    "changed": row.changed,
                    "at": row.at.isoformat(),
                }
                for row in query
            ]

        return self.unit.read(work)
