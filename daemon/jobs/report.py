"""``job: report``: a summary per channel over a window (delivered, failed,
what is pending and how old the oldest is), sent to notify targets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field

from daemon.domain.fields import Line, PositiveDuration
from daemon.domain.units import format_duration
from daemon.jobs.kind import JobContext, JobFailed, JobKind, JobOptions


class ReportOptions(JobOptions):
    notify: Annotated[list[Line], Field(min_length=1)]  # notify targets
    window: PositiveDuration = 86400.0


def summary(stats: list[Any], window: float, schedule: str) -> tuple[str, str]:
    subject = f"outboxd report ({schedule}): the last {format_duration(window)}"
    lines = [subject, ""]
    for s in sorted(stats, key=lambda s: s.channel):
        pending = s.counts.get("pending", 0)
        oldest = (
            f", the oldest {format_duration(s.oldest_pending_age)} old"
            if s.oldest_pending_age is not None
            else ""
        )
        rate = f" ({s.success_rate:.1%} delivered)" if s.success_rate is not None else ""
        lines.append(
            f"{s.channel}: {s.sent_in_window} delivered, {s.failed_in_window} failed{rate}; "
            f"{pending} pending{oldest}; {s.counts.get('failed', 0)} failed in all"
        )
    if not stats:
        lines.append("no messages")
    return subject, "\n".join(lines) + "\n"


async def run(ctx: JobContext, options: ReportOptions) -> dict[str, Any]:
    stats = await ctx.store.stats(window=options.window)
    subject, text = summary(stats, options.window, ctx.schedule)
    answers = await ctx.notify(options.notify, subject, text)
    if answers and all(a.startswith("failed") for a in answers):
        raise JobFailed(f"no notify target took the report: {answers[0]}")
    return {"channels": len(stats), "sent_to": answers}


def check(options: Mapping[str, Any], document: Mapping[str, Any]) -> list[tuple[str, str]]:
    targets = document.get("notify")
    known = set(targets) if isinstance(targets, dict) else set()
    names = options.get("notify")
    if not isinstance(names, list):
        return []
    return [
        (f"notify[{i}]", f"no notify target named {name!r}")
        for i, name in enumerate(names)
        if isinstance(name, str) and name not in known
    ]


def describe(options: ReportOptions) -> str:
    return f"the last {format_duration(options.window)} to {', '.join(options.notify)}"


KIND = JobKind("report", ReportOptions, run, describe, check)
