"""The store: every operation on one database, each one unit of work in one
transaction. Roles await them through ``daemon.store.aio.AsyncStore``."""

from __future__ import annotations

from daemon.store.alerts import AlertOps
from daemon.store.browse import BrowseOps
from daemon.store.gauges import GaugeOps, MinuteOps
from daemon.store.migrations import require_current
from daemon.store.operator import OperatorOps
from daemon.store.outbox import OutboxOps
from daemon.store.schedules import ScheduleOps
from daemon.store.tracking import TrackingOps
from daemon.store.upkeep import UpkeepOps
from daemon.store.visits import VisitOps
from daemon.store.webhooks import WebhookOps


class Store(
    OutboxOps,
    OperatorOps,
    BrowseOps,
    VisitOps,
    ScheduleOps,
    UpkeepOps,
    WebhookOps,
    TrackingOps,
    AlertOps,
    GaugeOps,
    MinuteOps,
):
    """Every operation on one database. Each method is one unit of work in one
    transaction; roles await them through ``daemon.store.aio.AsyncStore``."""

    def check_schema(self) -> int:
        """The schema version, when it is the one this code expects (else raises)."""
        return require_current(self.db)
