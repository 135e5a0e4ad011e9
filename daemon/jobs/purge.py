"""``job: purge``: delete what has been kept long enough, in batches of a
bounded size (each its own transaction, so delivery is never held up): messages
that ended (sent, confirmed, rejected, cancelled) and their status events,
finished runs, notifications, webhook receipts. Pending, sending and failed
messages are never touched.

After messages went, the payload text index is merged (SQLite's FTS5 keeps
what deleted messages left in it until its segments merge: without this the
database grows under a steady purge while the table does not), a few hundred
pages per transaction so that delivery goes on between them."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from pydantic import Field

from daemon.domain.fields import Flag, Integer, PositiveDuration
from daemon.domain.units import format_duration
from daemon.jobs.kind import JobContext, JobKind, JobOptions


class PurgeOptions(JobOptions):
    messages_older_than: PositiveDuration = 30 * 86400.0  # ended this long ago
    runs_older_than: PositiveDuration = 90 * 86400.0  # finished this long ago
    notifications_older_than: PositiveDuration = 90 * 86400.0
    receipts_older_than: PositiveDuration = 90 * 86400.0  # partners' webhooks received
    batch: Annotated[Integer, Field(ge=1, le=10_000)] = 1000  # rows per transaction
    compact_search_index: Flag = True  # merge the text index after messages went


COMPACT_PAGES = 500  # index pages merged per transaction (about 2 MB)
MAX_COMPACT_STEPS = 100_000  # a bound, never reached: each step merges what is left


async def _drain(purge: Any, before: Any, batch: int) -> int:
    total = 0
    while True:
        count = await purge(before, batch)
        total += count
        if count < batch:
            return total


async def run(ctx: JobContext, options: PurgeOptions) -> dict[str, Any]:
    store = ctx.store
    messages = await _drain(
        store.purge_messages,
        ctx.fire - timedelta(seconds=options.messages_older_than),
        options.batch,
    )
    compacted = 0
    if messages and options.compact_search_index:
        while compacted < MAX_COMPACT_STEPS and await store.compact_text_index(COMPACT_PAGES) > 1:
            compacted += 1
    runs = await _drain(
        store.purge_runs, ctx.fire - timedelta(seconds=options.runs_older_than), options.batch
    )
    notifications = await _drain(
        store.purge_notifications,
        ctx.fire - timedelta(seconds=options.notifications_older_than),
        options.batch,
    )
    receipts = await _drain(
        store.purge_receipts,
        ctx.fire - timedelta(seconds=options.receipts_older_than),
        options.batch,
    )
    return {
        "messages": messages, "runs": runs, "notifications": notifications, "receipts": receipts,
        "text_index_steps": compacted,
    }  # fmt: skip


def describe(options: PurgeOptions) -> str:
    return (
        f"ended messages older than {format_duration(options.messages_older_than)}, "
        f"runs older than {format_duration(options.runs_older_than)}"
    )


KIND = JobKind("purge", PurgeOptions, run, describe)
