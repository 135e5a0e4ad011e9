"""``job: export``: the messages, visits or runs of a period, or the rows of a
query against a named source, to a CSV or NDJSON file in a directory.

The period is computed in the schedule's zone from the fire time: ``yesterday``
(the day before the fire's date), ``last_week`` (Monday to Monday, the week
before the fire's), ``last_month`` (the calendar month before: "last month" in
Europe/Berlin), ``last_24h``. The file is written under a temporary name in the
directory and renamed when complete, so a reader never sees half a file; the
run's output says where it is, its size and how many rows it holds.

For a query, ``%(start)s`` and ``%(end)s`` in the SQL are the period's bounds (local
wall times, as a SIMRS stores them); the source is read through a read-only
snapshot, as a poll reads it.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import field_validator, model_validator

from daemon.domain.fields import Line, PositiveDuration
from daemon.domain.files import create_private, make_private_dirs
from daemon.jobs import template
from daemon.jobs.kind import JobContext, JobFailed, JobKind, JobOptions

Period = Literal["yesterday", "last_week", "last_month", "last_24h"]
PAGE = 1000  # rows per read
COLUMNS: dict[str, tuple[str, ...]] = {
    "messages": (
        "id", "channel", "kind", "key", "status", "attempts", "created_at", "sent_at",
        "last_error", "payload_encoding", "payload",
    ),
    "visits": ("id", "source", "kodebooking", "task_progress", "created_at", "updated_at"),
    "runs": (
        "id", "schedule", "fire_time", "attempt", "trigger", "status", "started_at",
        "finished_at", "error", "output",
    ),
}  # fmt: skip


class ExportOptions(JobOptions):
    what: Literal["messages", "visits", "runs", "query"]
    period: Period = "yesterday"
    format: Literal["csv", "ndjson"] = "csv"
    directory: Line = "var/exports"
    # the file's name: {schedule}, {what}, {start} and {end} (dates of the period),
    # {format}; and the run's placeholders: {{fire:%Y%m%d-%H%M}}, {{attempt}} …
    name: Line = "{schedule}-{what}-{start}.{format}"
    channel: Line | None = None  # messages of this channel only
    source: Line | None = None  # what: query — the source read
    sql: str | None = None  # what: query — SELECT …, with %(start)s and %(end)s
    timeout: PositiveDuration = 600.0  # for the query's reading

    @field_validator("name")
    @classmethod
    def _name_fills(cls, name: str) -> str:
        issues = template.problems(name)
        if issues:
            raise ValueError("; ".join(issues))
        try:
            _file_name(name, template.SAMPLE, "w", "2026-01-01", "e", "csv")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"{exc!r} is not one of {{schedule}}, {{what}}, {{start}}, "
                             "{end}, {format} or a run's placeholder ({{fire:FORMAT}}, "
                             "{{fire_local:FORMAT}}, {{attempt}}, {{run}})") from None  # fmt: skip
        return name

    @model_validator(mode="after")
    def _query_needs_its_parts(self) -> ExportOptions:
        if self.what == "query" and not (self.source and self.sql and self.sql.strip()):
            raise ValueError("what: query needs source (a source's name) and sql")
        if self.what != "query" and (self.source or self.sql):
            raise ValueError("source and sql are for what: query")
        if self.channel and self.what != "messages":
            raise ValueError("channel is for what: messages")
        return self


def _file_name(name: str, facts: template.RunFacts, what: str, start: str, end: str,
               fmt: str) -> str:  # fmt: skip
    """The file's name: the run's placeholders filled, then the export's own."""
    return template.render(name, facts).format(
        schedule=facts.schedule, what=what, start=start, end=end, format=fmt
    )


def period(kind: Period, fire: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The period's bounds, aware, in ``zone``: ``start <= t < end``."""
    local = fire.astimezone(zone)
    if kind == "last_24h":
        return local - timedelta(hours=24), local
    today = local.date()
    if kind == "yesterday":
        first, last = today - timedelta(days=1), today
    elif kind == "last_week":
        monday = today - timedelta(days=today.weekday())
        first, last = monday - timedelta(days=7), monday
    else:
        this_month = today.replace(day=1)
        first, last = (this_month - timedelta(days=1)).replace(day=1), this_month
    return _midnight(first, zone), _midnight(last, zone)


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone)


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return value


class _Writer:
    def __init__(self, handle: io.TextIOWrapper, fmt: str, columns: list[str]) -> None:
        self.handle = handle
        self.fmt = fmt
        self.columns = columns
        self.rows = 0
        if fmt == "csv":
            self.csv = csv.writer(handle)
            self.csv.writerow(columns)

    def write(self, row: Mapping[str, Any]) -> None:
        self.rows += 1
        if self.fmt == "csv":
            self.csv.writerow([_cell(row.get(c)) for c in self.columns])
        else:
            record = {c: row.get(c) for c in self.columns}
            self.handle.write(json.dumps(record, ensure_ascii=False, default=_cell) + "\n")


async def run(ctx: JobContext, options: ExportOptions) -> dict[str, Any]:
    start, end = period(options.period, ctx.fire, ctx.zone)
    name = _file_name(
        options.name, ctx.facts, options.what, start.date().isoformat(),
        end.date().isoformat(), options.format,
    )  # fmt: skip
    if "/" in name or name.startswith("."):
        raise JobFailed(f"the file name {name!r} is not a plain name")
    directory = Path(options.directory)
    try:
        make_private_dirs(directory)
    except OSError as exc:
        raise JobFailed(f"cannot make {directory}: {exc.strerror or exc}") from None
    final = directory / name
    partial = directory / f".{name}.{ctx.run_id}.part"
    try:  # owner-only, whatever the umask: it holds whole payloads
        partial.unlink(missing_ok=True)  # one a stopped attempt left
        with open(create_private(partial), "w", encoding="utf-8", newline="") as handle:
            rows = await _export(ctx, options, handle, start, end)
        os.replace(partial, final)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise JobFailed(f"cannot write {final}: {exc.strerror or exc}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return {
        "path": str(final),
        "bytes": final.stat().st_size,
        "rows": rows,
        "from": start.isoformat(),
        "until": end.isoformat(),
    }


async def _export(
    ctx: JobContext,
    options: ExportOptions,
    handle: io.TextIOWrapper,
    start: datetime,
    end: datetime,
) -> int:
    if options.what == "query":
        columns, rows = await _query(ctx, options, start, end)
        writer = _Writer(handle, options.format, columns)
        for values in rows:
            writer.write(dict(zip(columns, values, strict=True)))
        return writer.rows
    writer = _Writer(handle, options.format, list(COLUMNS[options.what]))
    after = 0
    while True:
        page = await ctx.store.export_page(options.what, start, end, after, PAGE, options.channel)
        for row in page:
            writer.write(row)
        if len(page) < PAGE:
            return writer.rows
        after = page[-1]["id"]


async def _query(
    ctx: JobContext, options: ExportOptions, start: datetime, end: datetime
) -> tuple[list[str], list[tuple[Any, ...]]]:
    from daemon.sources.base import SourceError
    from daemon.sources.registry import source_kind

    assert options.source is not None and options.sql is not None
    source = ctx.sources.get(options.source)
    if source is None:
        raise JobFailed(f"no source named {options.source!r}")
    kind = source_kind(source)
    if kind.query is None:
        raise JobFailed(f"a {kind.name} source cannot answer a query")
    zone = ZoneInfo(source.timezone or ctx.timezone)
    params = {
        "start": start.astimezone(zone).replace(tzinfo=None),
        "end": end.astimezone(zone).replace(tzinfo=None),
    }
    query = kind.query
    try:
        return await asyncio.wait_for(
            asyncio.to_thread(query, options.source, source, zone, options.sql, params),
            options.timeout,
        )
    except SourceError as exc:
        raise JobFailed(str(exc)) from None
    except TimeoutError:
        raise JobFailed(f"the query took longer than {options.timeout:g}s") from None


def check(options: Mapping[str, Any], document: Mapping[str, Any]) -> list[tuple[str, str]]:
    source = options.get("source")
    sources = document.get("sources")
    if isinstance(source, str) and not (isinstance(sources, dict) and source in sources):
        return [("source", f"no source named {source!r}")]
    channel = options.get("channel")
    channels = document.get("channels")
    if isinstance(channel, str) and not (isinstance(channels, dict) and channel in channels):
        return [("channel", f"no channel named {channel!r}")]
    return []


def describe(options: ExportOptions) -> str:
    what = f"query on {options.source}" if options.what == "query" else options.what
    return f"{what} of {options.period.replace('_', ' ')} to {options.directory} ({options.format})"


KIND = JobKind("export", ExportOptions, run, describe, check)
