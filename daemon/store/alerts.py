"""What alert rules read, the alert states they move, the notifications sent,
and the dispatchers' circuit breakers as they report them.

An alert condition (a rule for one subject: a schedule, a channel) moves
between ``clear`` and ``firing`` in one transaction, so that however many
schedulers evaluate the rules, one of them sends each notification: the one
whose update made the change (or, while it stays firing, the one that took the
next window)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime, timedelta

import peewee as pw

from daemon.domain.alerts import AlertInputs, NotificationRow, Transition
from daemon.domain.statuses import (
    FAILED,
    FAILED_RUN,
    INTERRUPTED,
    MISSED,
    PENDING,
    QUEUED,
    RUNNING,
    SUCCEEDED,
)
from daemon.store import models
from daemon.store.models import db_timestamp, read_timestamp, tuples
from daemon.store.unit import Unit


def _notification(row: models.Notification) -> NotificationRow:
    return NotificationRow(
        row.id, row.rule, row.subject, row.event, row.target, bool(row.ok), row.answer, row.at,
        row.title, row.text,
    )  # fmt: skip


class Alerts:
    def __init__(self, unit: Unit) -> None:
        self.unit = unit
        self.sql = unit.sql
        self.m = unit.models

    def alert_inputs(
        self, window: float, now: datetime | None = None, breaker_fresh: float = 120.0
    ) -> AlertInputs:
        when = self.unit.now(now)
        since = when - timedelta(seconds=window)
        m = self.m
        Schedule, JobRun, Message, StatusEvent = m.Schedule, m.JobRun, m.Message, m.StatusEvent
        BreakerState = m.BreakerState

        def work() -> AlertInputs:
            facts = AlertInputs(when)
            names = {row.id: row for row in Schedule.select().where(Schedule.removed_at.is_null())}
            for schedule_id, row in names.items():
                facts.schedule_since[row.name] = row.updated_at
                under_way = JobRun.select(JobRun.fire_time).where(
                    (JobRun.schedule_id == schedule_id) & JobRun.status.in_([QUEUED, RUNNING])
                )
                pending = {JobRun.fire_time.python_value(at) for (at,) in tuples(under_way)}
                finished = (
                    JobRun.select(JobRun.status, JobRun.error, JobRun.fire_time)
                    .where(
                        (JobRun.schedule_id == schedule_id)
                        & JobRun.status.in_([SUCCEEDED, FAILED_RUN, INTERRUPTED])
                    )
                    .order_by(JobRun.finished_at.desc(), JobRun.id.desc())
                    .limit(len(pending) + 20)
                )
                # the latest fire whose runs are done: a fire still retrying decides nothing
                done = next((r for r in finished if r.fire_time not in pending), None)
                if done is not None:
                    facts.last_outcomes[row.name] = (done.status, done.error, False)
                    facts.last_fire[row.name] = done.fire_time
                success = (
                    JobRun.select(pw.fn.MAX(JobRun.finished_at))
                    .where((JobRun.schedule_id == schedule_id) & (JobRun.status == SUCCEEDED))
                    .scalar()
                )
                facts.last_success[row.name] = (
                    JobRun.finished_at.python_value(success) if success is not None else None
                )
            missed = (
                JobRun.select(JobRun.schedule_id, pw.fn.COUNT(JobRun.id))
                .where((JobRun.status == MISSED) & (JobRun.created_at >= since))
                .group_by(JobRun.schedule_id)
            )
            for schedule_id, count in tuples(missed):
                if schedule_id in names:
                    facts.missed[names[schedule_id].name] = count
            failed = (
                StatusEvent.select(Message.channel, pw.fn.COUNT(StatusEvent.id))
                .join(Message)
                .where((StatusEvent.at >= since) & (StatusEvent.to_status == FAILED))
                .group_by(Message.channel)
            )
            facts.failed_messages = {channel: n for channel, n in tuples(failed)}
            waiting = (
                Message.select(Message.channel, pw.fn.MIN(Message.created_at))
                .where(Message.status == PENDING)
                .group_by(Message.channel)
            )
            facts.oldest_pending = {channel: read_timestamp(at) for channel, at in tuples(waiting)}
            fresh = when - timedelta(seconds=breaker_fresh)
            for breaker in BreakerState.select().where(
                (BreakerState.state == "open") & (BreakerState.updated_at >= fresh)
            ):
                current = facts.breakers_open.get(breaker.channel)
                facts.breakers_open[breaker.channel] = (
                    breaker.since if current is None else min(current, breaker.since)
                )
            return facts

        return self.unit.read(work)

    def move_alerts(
        self,
        rule: str,
        firing: Mapping[str, str],
        window: float,
        now: datetime | None = None,
    ) -> list[Transition]:
        """The rule's conditions now: ``firing`` maps each subject that holds to
        its details; the others are clear. Answers the transitions this call
        made, each to be notified once: a subject newly firing, one still firing
        past its window, one that cleared."""
        Alert = self.m.Alert

        def work() -> list[Transition]:
            when = self.unit.now(now)
            query = Alert.select().where(Alert.rule == rule)
            rows = {row.subject: row for row in self.sql.for_update(query)}
            out: list[Transition] = []
            for subject, details in sorted(firing.items()):
                row = rows.get(subject)
                if row is None:
                    inserted = tuples(
                        Alert.insert(
                            rule=rule, subject=subject, state="firing", since=when,
                            notified_at=when, details=details,
                        )
                        .on_conflict_ignore()
                        .returning(Alert.subject)
                    )  # fmt: skip
                    if inserted:
                        out.append(Transition(rule, subject, "firing", details, when))
                elif row.state != "firing":
                    Alert.update(
                        state="firing", since=when, notified_at=when, details=details
                    ).where((Alert.rule == rule) & (Alert.subject == subject)).execute()
                    out.append(Transition(rule, subject, "firing", details, when))
                elif row.notified_at is None or row.notified_at <= when - timedelta(seconds=window):
                    Alert.update(notified_at=when, details=details).where(
                        (Alert.rule == rule) & (Alert.subject == subject)
                    ).execute()
                    out.append(Transition(rule, subject, "firing", details, row.since))
            for subject, row in rows.items():
                if row.state == "firing" and subject not in firing:
                    Alert.update(state="clear", since=when, details=None).where(
                        (Alert.rule == rule) & (Alert.subject == subject)
                    ).execute()
                    out.append(Transition(rule, subject, "resolved", row.details, row.since))
            return out

        return self.unit.write(work)

    def record_notification(
        self,
        rule: str,
        subject: str,
        event: str,
        target: str,
        ok: bool,
        answer: str | None,
        now: datetime | None = None,
        title: str | None = None,
        text: str | None = None,
    ) -> None:
        def work() -> None:
            self.m.Notification.insert(
                rule=rule, subject=subject, event=event, target=target, ok=ok,
                answer=answer, at=self.unit.now(now), title=title, text=text,
            ).execute()  # fmt: skip

        self.unit.write(work)

    def notifications(
        self,
        limit: int = 100,
        before_id: int | None = None,
        rule: str | None = None,
        subject: str | None = None,
        target: str | None = None,
        events: Collection[str] = (),
        ok: bool | None = None,
    ) -> list[NotificationRow]:
        """The notifications sent (or tried), newest first, a page at a time
        (``before_id``: the cursor), of one rule, subject or target, of these
        events, that a target took (``ok``) or refused."""
        Notification = self.m.Notification

        def work() -> list[NotificationRow]:
            query = Notification.select()
            if before_id is not None:
                query = query.where(Notification.id < before_id)
            for field, value in (
                (Notification.rule, rule),
                (Notification.subject, subject),
                (Notification.target, target),
                (Notification.ok, ok),
            ):
                if value is not None:
                    query = query.where(field == value)
            if events:
                query = query.where(Notification.event.in_(list(events)))
            query = query.order_by(Notification.id.desc()).limit(limit)
            return [_notification(row) for row in query]

        return self.unit.read(work)

    def breakers(self) -> list[dict[str, object]]:
        """Every circuit breaker a dispatcher reports not closed: channel, owner,
        state, since (ISO UTC), detail."""
        BreakerState = self.m.BreakerState

        def work() -> list[dict[str, object]]:
            query = BreakerState.select().order_by(BreakerState.channel, BreakerState.owner)
            return [
                {"channel": b.channel, "owner": b.owner, "state": b.state,
                 "since": b.since.isoformat(), "detail": b.detail}
                for b in query
            ]  # fmt: skip

        return self.unit.read(work)

    def report_breaker(
        self,
        channel: str,
        owner: str,
        state: str,
        detail: str | None = None,
        now: datetime | None = None,
    ) -> None:
        """A dispatcher's breaker on a channel: ``closed`` removes the report; any
        other state is kept (with when it began) and refreshed while it lasts."""

        def work() -> None:
            if state == "closed":
                self.sql.clear_breaker(channel, owner)
            else:
                stamp = db_timestamp(self.unit.now(now))
                self.sql.report_breaker(channel, owner, state, detail, stamp)

        self.unit.write(work)
