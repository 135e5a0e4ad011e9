"""Human-readable text for the CLI: the config summary, the stats table, a
visit. Never prints a secret; what came from a file, a peer or the database is
printed with its control characters escaped, so it cannot fake a line or
drive the terminal."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any

from daemon.channels.kind import ChannelSettings
from daemon.channels.registry import kind_of
from daemon.config.settings import Settings, WebhookSettings
from daemon.domain.clock import shown
from daemon.domain.fields import redact_url
from daemon.domain.statuses import STATUSES
from daemon.domain.units import format_duration
from daemon.domain.views import ChannelStats, VisitView
from daemon.jobs.registry import JOB_KINDS
from daemon.notify.registry import NOTIFY_KINDS


def printable(text: str) -> str:
    """``text`` with every character that is not printable written as an escape."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _channel_line(name: str, channel: ChannelSettings) -> str:
    target = kind_of(channel).describe(channel)
    rate = f"rate {channel.rate}" if channel.rate else "no rate limit"
    retry = channel.retry
    return (
        f"  {name}: {channel.kind} → {target}, {rate}, up to {retry.max_attempts} attempts "
        f"within {format_duration(retry.max_age)}"
    )


def config_summary(settings: Settings, source: str) -> list[str]:
    lines = [
        f"{source}: OK",
        f"node: {settings.node}",
        f"database: {redact_url(settings.database.url.get_secret_value())}",
        f"timezone: {settings.timezone}",
        f"channels: {len(settings.channels)}",
    ]
    lines += [_channel_line(n, c) for n, c in sorted(settings.channels.items())]
    lines.append(f"sources: {len(settings.sources)}")
    lines += [
        f"  {n}: {s.kind} → channel {s.channel}, every {format_duration(s.interval)}"
        for n, s in sorted(settings.sources.items())
    ]
    lines.append(f"schedules: {len(settings.schedules)}")
    lines += [
        f"  {n}: {s.job} ({JOB_KINDS[s.job].describe(s.options)}) "
        + (f"at '{s.cron}'" if s.cron else f"every {format_duration(s.every or 0)}")
        + f" ({s.timezone or settings.timezone})"
        + ("" if s.enabled else ", disabled")
        for n, s in sorted(settings.schedules.items())
    ]
    lines.append(f"notify: {len(settings.notify)}")
    lines += [
        f"  {n}: {NOTIFY_KINDS[t.kind].describe(t)}" for n, t in sorted(settings.notify.items())
    ]
    lines.append(f"alerts: {len(settings.alerts)}")
    lines += [f"  {a.rule} → {', '.join(a.notify)}" for a in settings.alerts]
    control = settings.control
    lines.append(
        f"control: {control.host}:{control.port}, tokens: "
        + (", ".join(f"{t.name} ({t.role})" for t in control.tokens) or "none")
    )
    lines.append(f"webhooks: {len(settings.webhooks)}")
    lines += [f"  {n}: {_webhook(w)}" for n, w in sorted(settings.webhooks.items())]
    roles = settings.roles
    lines.append(
        "health/metrics base ports: "
        + ", ".join(f"{role} {getattr(roles, role).base_port}" for role in type(roles).model_fields)
    )
    return [printable(line) for line in lines]


def _webhook(webhook: WebhookSettings) -> str:
    """What a webhook does, for ``check-config`` (no secret)."""
    if webhook.message_key is not None:
        names = f"by key at {webhook.message_key}"
    else:
        names = f"by the partner's id at {webhook.message_ref} (sent: {webhook.id_pointer})"
    return f"{webhook.channel} messages {names}, status at {webhook.status}"


def stats_rows(stats: Sequence[ChannelStats], configured: Sequence[str]) -> list[ChannelStats]:
    """The store's figures plus a zero row for each configured channel with no messages."""
    seen = {s.channel for s in stats}
    empty = [ChannelStats(c, {}, 0, None, 0, 0) for c in configured if c not in seen]
    return sorted([*stats, *empty], key=lambda s: s.channel)


def stats_json(stats: Sequence[ChannelStats], window: float, at: str) -> dict[str, Any]:
    return {
        "at": at,
        "window_seconds": window,
        "channels": [
            {
                "channel": s.channel,
                "counts": {status: s.counts.get(status, 0) for status in STATUSES},
                "due": s.due,
                "oldest_pending_age_seconds": s.oldest_pending_age,
                "oldest_pending_since": None
                if s.oldest_pending_at is None
                else s.oldest_pending_at.isoformat(),
                "sent_in_window": s.sent_in_window,
                "failed_in_window": s.failed_in_window,
                "success_rate": s.success_rate,
            }
            for s in stats
        ],
    }


def stats_table(stats: Sequence[ChannelStats], window: float) -> list[str]:
    if not stats:
        return ["no channels configured and no messages stored"]
    window_label = format_duration(window)
    header = ["channel", *STATUSES, "due", "oldest pending", f"success ({window_label})"]
    rows = [header]
    for s in stats:
        age = format_duration(s.oldest_pending_age) if s.oldest_pending_age is not None else "-"
        rate = f"{s.success_rate:.1%}" if s.success_rate is not None else "-"
        rows.append(
            [s.channel, *(str(s.counts.get(x, 0)) for x in STATUSES), str(s.due), age, rate]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return [
        printable(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )
        for row in rows
    ]


_STEP_ORDER = {"add": -1, "99": 100}


def _step_key(step: str) -> int:
    return _STEP_ORDER.get(step, int(step) if step.isdigit() else 50)


def visit_lines(visit: VisitView, tz: tzinfo) -> list[str]:
    """A visit's progress, one step a line, times in the configured zone:
    ``task 5   sent     waktu 09:12:30, sent 09:12:31``."""
    lines = [
        f"kodebooking {visit.kodebooking} (source {visit.source}), "
        f"updated {shown(visit.updated_at, tz)}"
    ]
    for step in sorted(visit.task_progress, key=_step_key):
        entry = visit.task_progress[step]
        name = "add" if step == "add" else f"task {step}"
        status = str(entry.get("status", "?"))
        times = []
        if "waktu" in entry:
            at = datetime.fromtimestamp(entry["waktu"] / 1000, UTC)
            times.append(f"waktu {shown(at, tz, date=False)}")
        for field, label in (("sent_at", "at"), ("next_attempt_at", "next attempt")):
            if field in entry:
                at = datetime.fromisoformat(entry[field])
                times.append(f"{label} {shown(at, tz, date=False)}")
        line = f"  {name:<8} {status:<8}"
        if times:
            line += " " + ", ".join(times)
        facts = entry.get("source")
        if isinstance(facts, dict) and facts.get("time") == "observed":
            line += " (time observed by the poller: the source has none)"
        if "reason" in entry:
            line += f" — {entry['reason']}"
        lines.append(printable(line.rstrip()))
    return [printable(lines[0]), *lines[1:]]
