"""What the scheduler's housekeeping jobs read and delete: messages that ended
(delivered, rejected, cancelled) and old notifications purged in bounded
batches, and rows of a period paged out for an export."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import peewee as pw

from daemon.domain.statuses import CANCELLED, DELIVERED, REJECTED
from daemon.domain.views import Exported
from daemon.store.models import JobRun, Message, Visit
from daemon.store.unit import Unit

ENDED_UNDELIVERED = (REJECTED, CANCELLED)  # ended without being delivered: purged too


class Upkeep:
    def __init__(self, unit: Unit) -> None:
        self.unit = unit
        self.m = unit.models

    def purge_messages(self, before: datetime, limit: int = 1000) -> int:
        """Delete up to ``limit`` messages that ended before ``before``, with their
        status events: delivered (sent or confirmed) by when they were sent,
        rejected or cancelled by their last change; never a pending, sending or
        failed one, nor one a message still waiting names as its prerequisite."""
        Message = self.m.Message

        def work() -> int:
            waiting = Message.alias()
            ended = (Message.status.in_(list(DELIVERED)) & (Message.sent_at < before)) | (
                Message.status.in_(list(ENDED_UNDELIVERED)) & (Message.updated_at < before)
            )
            stale = (
                Message.select(Message.id)
                .where(
                    ended
                    & ~pw.fn.EXISTS(
                        waiting.select(waiting.id).where(
                            (waiting.after == Message.id) & waiting.status.not_in(list(DELIVERED))
                        )
                    )
                )
                .order_by(Message.id)
                .limit(limit)
            )
            ids = [row.id for row in stale]
            if not ids:
                return 0
            return Message.delete().where(Message.id.in_(ids)).execute()

        return self.unit.write(work)

    def text_index_rows(self) -> int:
        """How big the payload text index is, in its storage's rows (0 on PostgreSQL)."""
        return self.unit.read(self.unit.sql.text_index_rows)

    def compact_text_index(self, pages: int = 500) -> int:
        """One step of merging the payload text index (its own transaction): the
        rows it wrote, 0 once nothing is left to merge (always 0 on PostgreSQL)."""
        return self.unit.write(lambda: self.unit.sql.compact_text_index(pages))

    def purge_notifications(self, before: datetime, limit: int = 1000) -> int:
        Notification = self.m.Notification

        def work() -> int:
            stale = (
                Notification.select(Notification.id)
                .where(Notification.at < before)
                .order_by(Notification.at)
                .limit(limit)
            )
            ids = [row.id for row in stale]
            return Notification.delete().where(Notification.id.in_(ids)).execute() if ids else 0

        return self.unit.write(work)

    def purge_receipts(self, before: datetime, limit: int = 1000) -> int:
        """Webhook receipts received before ``before``, at most ``limit`` of them."""
        WebhookReceipt = self.m.WebhookReceipt

        def work() -> int:
            stale = (
                WebhookReceipt.select(WebhookReceipt.id)
                .where(WebhookReceipt.received_at < before)
                .order_by(WebhookReceipt.received_at)
                .limit(limit)
            )
            ids = [row.id for row in stale]
            if not ids:
                return 0
            return WebhookReceipt.delete().where(WebhookReceipt.id.in_(ids)).execute()

        return self.unit.write(work)

    def export_page(
        self,
        what: Exported,
        start: datetime,
        end: datetime,
        after_id: int = 0,
        limit: int = 1000,
        channel: str | None = None,
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` rows created ``start <= at < end`` with an id above
        ``after_id``, in id order (page by the last id): messages (a payload as
        text when it is UTF-8, else base64), visits, or runs."""
        m = self.m
        Message, Visit, JobRun, Schedule = m.Message, m.Visit, m.JobRun, m.Schedule

        def work() -> list[dict[str, Any]]:
            if what == "messages":
                messages = Message.select().where(
                    (Message.created_at >= start)
                    & (Message.created_at < end)
                    & (Message.id > after_id)
                )
                if channel is not None:
                    messages = messages.where(Message.channel == channel)
                return [_message(row) for row in messages.order_by(Message.id).limit(limit)]
            if what == "visits":
                visits = Visit.select().where(
                    (Visit.created_at >= start) & (Visit.created_at < end) & (Visit.id > after_id)
                )
                return [_visit(row) for row in visits.order_by(Visit.id).limit(limit)]
            runs = (
                JobRun.select(JobRun, Schedule.id, Schedule.name)
                .join(Schedule)
                .where(
                    (JobRun.fire_time >= start) & (JobRun.fire_time < end) & (JobRun.id > after_id)
                )
            )
            return [_job_run(row) for row in runs.order_by(JobRun.id).limit(limit)]

        return self.unit.read(work)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _message(row: Message) -> dict[str, Any]:
    payload = bytes(row.payload)
    try:
        text, encoding = payload.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(payload).decode("ascii"), "base64"
    return {
        "id": row.id,
        "channel": row.channel,
        "kind": row.kind,
        "key": row.key,
        "status": row.status,
        "attempts": row.attempts,
        "created_at": _iso(row.created_at),
        "sent_at": _iso(row.sent_at),
        "last_error": row.last_error,
        "payload_encoding": encoding,
        "payload": text,
    }


def _visit(row: Visit) -> dict[str, Any]:
    return {
        "id": row.id,
        "source": row.source,
        "kodebooking": row.kodebooking,
        "task_progress": row.task_progress,
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
    }


def _job_run(row: JobRun) -> dict[str, Any]:
    return {
        "id": row.id,
        "schedule": row.schedule.name,
        "fire_time": _iso(row.fire_time),
        "attempt": row.attempt,
        "trigger": row.trigger,
        "status": row.status,
        "started_at": _iso(row.started_at),
        "finished_at": _iso(row.finished_at),
        "error": row.error,
        "output": row.output,
    }
