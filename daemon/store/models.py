"""Peewee models of the outbox. Tables are created by migrations, not by
``create_tables``: the models describe the newest schema for queries.

The classes here are declarations, bound to no database. A store binds its own
copies to its database (``Models``): two stores on two databases in one process
never share a model, a connection or a proxy."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload

import peewee as pw

from daemon.domain.clock import as_utc
from daemon.domain.statuses import PENDING


def db_timestamp(value: datetime) -> str:
    """The stored form: naive UTC, always with microseconds, so text order is time order."""
    return as_utc(value).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def read_timestamp(value: str | datetime) -> datetime:
    """A stored timestamp (text on SQLite, naive datetime on PostgreSQL) as aware UTC."""
    return as_utc(datetime.fromisoformat(value) if isinstance(value, str) else value)


def tuples(query: pw.BaseQuery) -> list[tuple[Any, ...]]:
    """A query's rows as tuples (peewee's types do not follow ``.tuples()``)."""
    return cast(list[tuple[Any, ...]], list(query.tuples().execute()))


V = TypeVar("V")


class _ForeignId(Generic[V]):
    """For the type checker only: ``Model.fk_id`` is the foreign key's column on
    the class and its value (an id) on a row, as peewee's accessor makes it."""

    @overload
    def __get__(self, obj: None, owner: Any) -> pw.ForeignKeyField: ...

    @overload
    def __get__(self, obj: object, owner: Any) -> V: ...

    def __get__(self, obj: object, owner: Any) -> Any:
        raise NotImplementedError


class UtcDateTimeField(pw.Field):
    """A UTC instant: stored as a naive UTC timestamp, read as an aware datetime."""

    field_type = "DATETIME"

    def db_value(self, value: Any) -> Any:
        if isinstance(value, datetime):
            return db_timestamp(value)
        return value

    def python_value(self, value: Any) -> datetime | None:
        return None if value is None else read_timestamp(value)


class JSONTextField(pw.TextField):
    """JSON kept as text, the same on every backend."""

    def db_value(self, value: Any) -> str | None:
        return None if value is None else json.dumps(value, sort_keys=True, default=str)

    def python_value(self, value: Any) -> Any:
        return None if value is None else json.loads(value)


class BaseModel(pw.Model):
    class Meta:
        database = None  # a store's ``Models`` binds its copies
        legacy_table_names = False


class Visit(BaseModel):
    """One visit of one source (unique on source and kodebooking: two hospitals may
    use the same booking code)."""

    id = pw.BigAutoField()
    kodebooking = pw.CharField(max_length=64)
    source = pw.CharField(max_length=64)
    task_progress = JSONTextField(default=dict)
    created_at = UtcDateTimeField()
    updated_at = UtcDateTimeField()

    class Meta:
        table_name = "outboxd_visit"


class Message(BaseModel):
    id = pw.BigAutoField()
    channel = pw.CharField(max_length=64)
    kind = pw.CharField(max_length=64)
    key = pw.CharField(max_length=255)
    payload = pw.BlobField()
    status = pw.CharField(max_length=16, default=PENDING)
    attempts = pw.IntegerField(default=0)
    next_attempt_at = UtcDateTimeField()
    lease_owner = pw.CharField(max_length=128, null=True)
    lease_expires_at = UtcDateTimeField(null=True)
    last_error = pw.TextField(null=True)
    response = pw.TextField(null=True)
    after = pw.ForeignKeyField("self", null=True, column_name="after_id", on_delete="SET NULL")
    group_key = pw.CharField(max_length=255, null=True)  # ordered channels: one in flight per key
    created_at = UtcDateTimeField()
    updated_at = UtcDateTimeField()
    sent_at = UtcDateTimeField(null=True)
    visit = pw.ForeignKeyField(
        Visit, null=True, column_name="visit_id", on_delete="SET NULL", lazy_load=False
    )  # the tracked item the message reports on
    predecessors_resent_at = UtcDateTimeField(null=True)  # its group's earlier ones sent again
    if TYPE_CHECKING:
        after_id = _ForeignId[int | None]()
        visit_id = _ForeignId[int | None]()

    class Meta:
        table_name = "outboxd_message"
        # made by the migrations; listed for the reader (and checked by a test)
        indexes = (
            (("channel", "key"), True),
            (("created_at", "id"), False),
            (("channel", "created_at", "id"), False),
            (("channel", "status", "created_at", "id"), False),
        )


class MessageField(BaseModel):
    """A field a message is found by (``daemon.domain.search.SEARCH_FIELDS``: an
    HL7 message's MSH-10, MSH-9, PID-3, PV1-19), written as it is stored."""

    name = pw.CharField(max_length=32)
    value = pw.CharField(max_length=255)
    message = pw.ForeignKeyField(
        Message, column_name="message_id", on_delete="CASCADE", lazy_load=False
    )

    class Meta:
        table_name = "outboxd_message_field"
        primary_key = pw.CompositeKey("name", "value", "message")
        # made by the migrations (the payloads' text index is no model: SQLite's is
        # a virtual table, PostgreSQL's an index on an expression)
        indexes = ((("message_id",), False),)

    if TYPE_CHECKING:
        message_id = _ForeignId[int]()


class StatusEvent(BaseModel):
    id = pw.BigAutoField()
    message = pw.ForeignKeyField(Message, column_name="message_id", on_delete="CASCADE")
    from_status = pw.CharField(max_length=16, null=True)
    to_status = pw.CharField(max_length=16)
    actor = pw.CharField(max_length=128)
    details = JSONTextField(null=True)
    at = UtcDateTimeField()

    class Meta:
        table_name = "outboxd_status_event"

    if TYPE_CHECKING:
        message_id = _ForeignId[int]()


class RateBucket(BaseModel):
    """A channel's token bucket, shared by every dispatcher process."""

    channel = pw.CharField(max_length=64, primary_key=True)
    tokens = pw.DoubleField()
    updated_at = UtcDateTimeField()

    class Meta:
        table_name = "outboxd_rate_bucket"


class PollCursor(BaseModel):
    source = pw.CharField(max_length=64, primary_key=True)
    value = pw.TextField()
    updated_at = UtcDateTimeField()

    class Meta:
        table_name = "outboxd_poll_cursor"


class Schedule(BaseModel):
    """A schedule: its definition (the validated settings as JSON), where it
    comes from (``file``: the YAML; ``operator``: the CLI or the API), paused
    with a note, removed (from the YAML: kept for its ledger)."""

    id = pw.BigAutoField()
    name = pw.CharField(max_length=64, unique=True)
    definition = JSONTextField()
    origin = pw.CharField(max_length=16)
    revision = pw.IntegerField()
    paused = pw.BooleanField()
    pause_note = pw.TextField(null=True)
    paused_by = pw.CharField(max_length=128, null=True)
    paused_at = UtcDateTimeField(null=True)
    removed_at = UtcDateTimeField(null=True)
    created_at = UtcDateTimeField()
    updated_at = UtcDateTimeField()
    # the runs its fires made (cron and catch-up first attempts, whatever their end),
    # counted against max_runs as they are claimed, while it has one
    runs_made = pw.BigIntegerField(default=0)

    class Meta:
        table_name = "outboxd_schedule"


class JobRun(BaseModel):
    """One entry of the fire ledger: a fire (unique on schedule, fire time and
    attempt) and what became of it."""

    id = pw.BigAutoField()
    schedule = pw.ForeignKeyField(
        Schedule, column_name="schedule_id", on_delete="CASCADE", lazy_load=False
    )
    fire_time = UtcDateTimeField()
    attempt = pw.IntegerField()
    trigger = pw.CharField(max_length=16)
    status = pw.CharField(max_length=16)
    retry_of = pw.BigIntegerField(null=True)  # the first run of the fire
    due_at = UtcDateTimeField()
    started_at = UtcDateTimeField(null=True)
    finished_at = UtcDateTimeField(null=True)
    lease_owner = pw.CharField(max_length=128, null=True)
    lease_expires_at = UtcDateTimeField(null=True)
    error = pw.TextField(null=True)
    output = JSONTextField(null=True)
    note = pw.TextField(null=True)
    created_at = UtcDateTimeField()
    # an operator asked for the run to be cancelled: who, when, why (the scheduler
    # holding a running run reads it and stops the job)
    cancel_requested_at = UtcDateTimeField(null=True)
    cancel_requested_by = pw.CharField(max_length=128, null=True)
    cancel_note = pw.TextField(null=True)
    if TYPE_CHECKING:
        schedule_id = _ForeignId[int]()

    class Meta:
        table_name = "outboxd_job_run"


class Alert(BaseModel):
    """The state of one alert condition (a rule for one subject): firing or
    clear, and when it was last notified: one notification per window."""

    rule = pw.CharField(max_length=128)
    subject = pw.CharField(max_length=255)
    state = pw.CharField(max_length=16)
    since = UtcDateTimeField()
    notified_at = UtcDateTimeField(null=True)
    details = pw.TextField(null=True)

    class Meta:
        table_name = "outboxd_alert"
        primary_key = pw.CompositeKey("rule", "subject")


class Notification(BaseModel):
    """Every notification sent: what, to whom, when, and the answer."""

    id = pw.BigAutoField()
    rule = pw.CharField(max_length=128)
    subject = pw.CharField(max_length=255)
    event = pw.CharField(max_length=16)  # firing | resolved | report
    target = pw.CharField(max_length=64)
    ok = pw.BooleanField()
    answer = pw.TextField(null=True)
    at = UtcDateTimeField()
    title = pw.TextField(null=True)  # the subject line sent
    text = pw.TextField(null=True)  # the text sent

    class Meta:
        table_name = "outboxd_notification"


class BreakerState(BaseModel):
    """A dispatcher process's circuit breaker on a channel, while not closed."""

    channel = pw.CharField(max_length=64)
    owner = pw.CharField(max_length=128)
    state = pw.CharField(max_length=16)
    since = UtcDateTimeField()
    detail = pw.TextField(null=True)
    updated_at = UtcDateTimeField()

    class Meta:
        table_name = "outboxd_breaker"
        primary_key = pw.CompositeKey("channel", "owner")


class StatusCheck(BaseModel):
    """Remote status checks of a sent message (a filing's status at the partner)."""

    message = pw.ForeignKeyField(
        Message, column_name="message_id", primary_key=True, on_delete="CASCADE", lazy_load=False
    )
    checks = pw.IntegerField()
    checked_at = UtcDateTimeField()
    answer = pw.TextField(null=True)
    flagged = pw.BooleanField()
    if TYPE_CHECKING:
        message_id = _ForeignId[int]()

    class Meta:
        table_name = "outboxd_status_check"


class AuditEntry(BaseModel):
    """An operator action: who, what, on what (ids or a filter), how many changed;
    written in the transaction of the change."""

    id = pw.BigAutoField()
    actor = pw.CharField(max_length=128)
    action = pw.CharField(max_length=64)
    target = pw.TextField(null=True)
    details = JSONTextField(null=True)
    changed = pw.IntegerField()
    at = UtcDateTimeField()

    class Meta:
        table_name = "outboxd_audit"


class Operation(BaseModel):
    """A bulk operator action (retry, cancel, resend by a filter matching many),
    done in batches of their own transactions: what, by whom, how far."""

    id = pw.BigAutoField()
    action = pw.CharField(max_length=64)
    filter = JSONTextField()
    actor = pw.CharField(max_length=128)
    state = pw.CharField(max_length=16)
    matched = pw.IntegerField()
    done = pw.IntegerField()
    skipped = JSONTextField(null=True)  # left as they are when it started, by status
    position = pw.BigIntegerField()  # the last message id done
    upto = pw.BigIntegerField()  # the newest message id when it started
    result = JSONTextField(null=True)
    started_at = UtcDateTimeField()
    finished_at = UtcDateTimeField(null=True)

    class Meta:
        table_name = "outboxd_operation"


class WebhookReceipt(BaseModel):
    """A partner's signed status callback (unique on webhook and ``webhook-id``):
    what it said, what it changed, and the answer given, so that a repeat of
    it is answered the same and changes nothing."""

    id = pw.BigAutoField()
    webhook = pw.CharField(max_length=64)
    webhook_id = pw.CharField(max_length=255)
    received_at = UtcDateTimeField()
    body = pw.TextField()  # as received, up to WEBHOOK_BODY_KEPT characters
    body_size = pw.IntegerField()  # bytes received
    partner_status = pw.CharField(max_length=255, null=True)
    result = pw.CharField(max_length=32)
    message = pw.ForeignKeyField(
        Message, null=True, column_name="message_id", on_delete="SET NULL", lazy_load=False
    )
    answer_status = pw.IntegerField()  # the HTTP status answered
    answer = JSONTextField()
    if TYPE_CHECKING:
        message_id = _ForeignId[int | None]()

    class Meta:
        table_name = "outboxd_webhook_receipt"


class Tally(BaseModel):
    """How many messages a (channel, status) has: the sum of its rows (kept by the
    triggers of schema v5; on PostgreSQL, one row per change until folded)."""

    id = pw.BigAutoField()
    channel = pw.CharField(max_length=64)
    status = pw.CharField(max_length=16)
    n = pw.BigIntegerField()

    class Meta:
        table_name = "outboxd_tally"


class MinuteTally(BaseModel):
    """How many messages of a channel became ``status`` (sent or failed) in the
    minute starting at ``minute``: the sum of its rows."""

    id = pw.BigAutoField()
    channel = pw.CharField(max_length=64)
    minute = UtcDateTimeField()
    status = pw.CharField(max_length=16)
    n = pw.BigIntegerField()

    class Meta:
        table_name = "outboxd_minute_tally"


MODELS: tuple[type[BaseModel], ...] = (
    Message,
    MessageField,
    StatusEvent,
    RateBucket,
    Visit,
    PollCursor,
    Schedule,
    JobRun,
    Alert,
    Notification,
    BreakerState,
    StatusCheck,
    AuditEntry,
    Operation,
    WebhookReceipt,
    Tally,
    MinuteTally,
)


M = TypeVar("M", bound=BaseModel)


class Models:
    """The models bound to one database: a subclass of each declaration, whose
    foreign keys point at the other models of the same database."""

    def __init__(self, db: pw.Database) -> None:
        self.db = db
        self._bound: dict[type[BaseModel], type[BaseModel]] = {}
        waiting = list(MODELS)
        while waiting:  # a model after those its foreign keys name
            model = next(m for m in waiting if self._ready(m))
            self._bound[model] = self._bind(model)
            waiting.remove(model)
        self.Message = self.of(Message)
        self.MessageField = self.of(MessageField)
        self.StatusEvent = self.of(StatusEvent)
        self.RateBucket = self.of(RateBucket)
        self.Visit = self.of(Visit)
        self.PollCursor = self.of(PollCursor)
        self.Schedule = self.of(Schedule)
        self.JobRun = self.of(JobRun)
        self.Alert = self.of(Alert)
        self.Notification = self.of(Notification)
        self.BreakerState = self.of(BreakerState)
        self.StatusCheck = self.of(StatusCheck)
        self.AuditEntry = self.of(AuditEntry)
        self.Operation = self.of(Operation)
        self.WebhookReceipt = self.of(WebhookReceipt)
        self.Tally = self.of(Tally)
        self.MinuteTally = self.of(MinuteTally)

    def of(self, model: type[M]) -> type[M]:
        """The copy of ``model`` bound to this database."""
        bound = self._bound[model]
        assert issubclass(bound, model)
        return bound

    def _ready(self, model: type[BaseModel]) -> bool:
        return all(f.rel_model is model or f.rel_model in self._bound for f in _foreign_keys(model))

    def _bind(self, model: type[BaseModel]) -> type[BaseModel]:
        meta = type("Meta", (), {"database": self.db, "table_name": model._meta.table_name})
        attrs: dict[str, Any] = {"Meta": meta, "__module__": __name__}
        for fk in _foreign_keys(model):
            target: Any = "self" if fk.rel_model is model else self._bound[fk.rel_model]
            attrs[fk.name] = pw.ForeignKeyField(
                target,
                null=fk.null,
                column_name=fk.column_name,
                on_delete=fk.on_delete,
                lazy_load=fk.lazy_load,
                primary_key=fk.primary_key,
                backref="+",  # none: no model of another store is touched
            )
        return type(model.__name__, (model,), attrs)


def _foreign_keys(model: type[BaseModel]) -> list[pw.ForeignKeyField]:
    return [f for f in model._meta.sorted_fields if isinstance(f, pw.ForeignKeyField)]
