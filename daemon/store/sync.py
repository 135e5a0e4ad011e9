"""The store: every operation on one database, each one unit of work in one
transaction. Roles await them through ``daemon.store.aio.AsyncStore``.

``Store`` is the one facade: it builds its parts on one ``Unit`` (the database,
its dialect and its own models) and hands each part the others it uses, by
reference; every operation is a part's method, named here."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

import peewee as pw

from daemon.store.actions import Actions
from daemon.store.alerts import Alerts
from daemon.store.audit import Audit
from daemon.store.browse import Browse
from daemon.store.enqueue import Enqueuer
from daemon.store.gauges import Gauges
from daemon.store.migrations import require_current
from daemon.store.models import Models
from daemon.store.operations import Operations
from daemon.store.operator import Operator
from daemon.store.outbox import Outbox
from daemon.store.schedules import Schedules
from daemon.store.selection import Selection
from daemon.store.tallies import Tallies
from daemon.store.tracking import Tracking
from daemon.store.unit import Unit
from daemon.store.upkeep import Upkeep
from daemon.store.visits import VisitProgress, Visits
from daemon.store.webhooks import Webhooks

P = ParamSpec("P")
T = TypeVar("T")
Part = TypeVar("Part")


class _Op(Generic[Part, P, T]):
    """``Store.name``: the operation ``method`` of the store's part ``part``, with
    its signature and document (``Store.enqueue(store, …)`` and
    ``store.enqueue(…)`` alike)."""

    def __init__(self, part: str, method: Callable[Concatenate[Part, P], T]) -> None:
        self.part = part
        self.method = method

        @functools.wraps(method)
        def operation(store: Store, /, *args: P.args, **kwargs: P.kwargs) -> T:
            return method(getattr(store, part), *args, **kwargs)

        self.operation = operation

    def __set_name__(self, owner: type, name: str) -> None:
        if name != self.method.__name__:
            raise TypeError(f"Store.{name} names {self.part}.{self.method.__name__}")

    @overload
    def __get__(self, obj: None, owner: type) -> Callable[Concatenate[Store, P], T]: ...

    @overload
    def __get__(self, obj: Store, owner: type) -> Callable[P, T]: ...

    def __get__(self, obj: Store | None, owner: type) -> Any:
        if obj is None:
            return self.operation
        return functools.partial(self.method, getattr(obj, self.part))


class Store:
    """Every operation on one database. Each method is one unit of work in one
    transaction; roles await them through ``daemon.store.aio.AsyncStore``."""

    def __init__(self, db: pw.Database) -> None:
        self.unit = unit = Unit(db)
        self.selection = Selection(unit)
        self.audit_log = Audit(unit)
        self.enqueuer = Enqueuer(unit)
        self.progress = VisitProgress(unit)
        self.outbox = Outbox(unit, self.enqueuer, self.progress)
        self.visits = Visits(unit, self.enqueuer, self.progress)
        self.tallies = Tallies(unit)
        self.gauges = Gauges(unit, self.tallies)
        self.actions = Actions(unit, self.audit_log)
        self.bulk = Operations(unit, self.actions, self.selection)
        self.operator = Operator(unit, self.actions, self.bulk, self.selection, self.tallies)
        self.browse = Browse(unit, self.selection)
        self.ledger = Schedules(unit, self.audit_log)
        self.upkeep = Upkeep(unit)
        self.tracking = Tracking(unit)
        self.webhooks = Webhooks(unit, self.tracking)
        self.alerts = Alerts(unit)

    @property
    def db(self) -> pw.Database:
        return self.unit.db

    @property
    def models(self) -> Models:
        """This store's models, bound to its database."""
        return self.unit.models

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgres``."""
        return self.unit.sql.name

    @property
    def postgres(self) -> bool:
        return self.unit.sql.name == "postgres"

    def check_schema(self) -> int:
        """The schema version, when it is the one this code expects (else raises)."""
        return require_current(self.unit.db)

    def ping(self) -> bool:
        """Does the database answer? (For health checks.)"""
        return self.unit.read(lambda: self.unit.sql.one("SELECT 1")[0] == 1)

    def close(self) -> None:
        self.unit.close()

    # delivery
    enqueue = _Op("outbox", Outbox.enqueue)
    enqueue_many = _Op("outbox", Outbox.enqueue_many)
    claim = _Op("outbox", Outbox.claim)
    record = _Op("outbox", Outbox.record)
    resend_predecessors = _Op("outbox", Outbox.resend_predecessors)
    take_tokens = _Op("outbox", Outbox.take_tokens)
    renew_leases = _Op("outbox", Outbox.renew_leases)
    expire_leases = _Op("outbox", Outbox.expire_leases)
    # sources and their visits
    get_cursor = _Op("visits", Visits.get_cursor)
    task_progress = _Op("visits", Visits.task_progress)
    sync_visits = _Op("visits", Visits.sync_visits)
    find_visits = _Op("visits", Visits.find_visits)
    troubled_visits = _Op("visits", Visits.troubled_visits)
    # operators
    list_messages = _Op("browse", Browse.list_messages)
    message_timeline = _Op("browse", Browse.message_timeline)
    retry = _Op("operator", Operator.retry)
    cancel = _Op("operator", Operator.cancel)
    resend = _Op("operator", Operator.resend)
    advance_operation = _Op("bulk", Operations.advance_operation)
    operation = _Op("bulk", Operations.operation)
    operations = _Op("bulk", Operations.operations)
    audit = _Op("audit_log", Audit.audit)
    record_action = _Op("audit_log", Audit.record_action)
    # figures
    stats = _Op("tallies", Tallies.stats)
    tally_counts = _Op("tallies", Tallies.tally_counts)
    fold_tallies = _Op("tallies", Tallies.fold_tallies)
    queue_gauges = _Op("gauges", Gauges.queue_gauges)
    per_minute = _Op("gauges", Gauges.per_minute)
    # schedules and the fire ledger
    schedules = _Op("ledger", Schedules.schedules)
    sync_file_schedules = _Op("ledger", Schedules.sync_file_schedules)
    schedule = _Op("ledger", Schedules.schedule)
    last_fires = _Op("ledger", Schedules.last_fires)
    claim_fire = _Op("ledger", Schedules.claim_fire)
    claim_fires = _Op("ledger", Schedules.claim_fires)
    record_fires = _Op("ledger", Schedules.record_fires)
    queue_runs = _Op("ledger", Schedules.queue_runs)
    start_queued = _Op("ledger", Schedules.start_queued)
    renew_runs = _Op("ledger", Schedules.renew_runs)
    finish_run = _Op("ledger", Schedules.finish_run)
    finish_runs = _Op("ledger", Schedules.finish_runs)
    expired_runs = _Op("ledger", Schedules.expired_runs)
    interrupt_run = _Op("ledger", Schedules.interrupt_run)
    runs = _Op("ledger", Schedules.runs)
    cancel_run = _Op("ledger", Schedules.cancel_run)
    cancel_requests = _Op("ledger", Schedules.cancel_requests)
    put_schedule = _Op("ledger", Schedules.put_schedule)
    remove_schedule = _Op("ledger", Schedules.remove_schedule)
    pause_schedule = _Op("ledger", Schedules.pause_schedule)
    purge_runs = _Op("ledger", Schedules.purge_runs)
    # the jobs' work
    purge_messages = _Op("upkeep", Upkeep.purge_messages)
    purge_notifications = _Op("upkeep", Upkeep.purge_notifications)
    compact_text_index = _Op("upkeep", Upkeep.compact_text_index)
    text_index_rows = _Op("upkeep", Upkeep.text_index_rows)
    purge_receipts = _Op("upkeep", Upkeep.purge_receipts)
    export_page = _Op("upkeep", Upkeep.export_page)
    due_status_checks = _Op("tracking", Tracking.due_status_checks)
    record_status_checks = _Op("tracking", Tracking.record_status_checks)
    # partners' status callbacks
    receive_webhook = _Op("webhooks", Webhooks.receive_webhook)
    webhook_receipts = _Op("webhooks", Webhooks.webhook_receipts)
    # alerts and breakers
    alert_inputs = _Op("alerts", Alerts.alert_inputs)
    move_alerts = _Op("alerts", Alerts.move_alerts)
    record_notification = _Op("alerts", Alerts.record_notification)
    notifications = _Op("alerts", Alerts.notifications)
    breakers = _Op("alerts", Alerts.breakers)
    report_breaker = _Op("alerts", Alerts.report_breaker)
