"""``job: purge``: delete what has been kept long enough, in batches of a
bounded size (each its own transaction, so delivery is never held up): messages
that ended (sent, confirmed, rejected, cancelled) and their status events,
finished runs, notifications, webhook receipts. Pending, sending and failed
messages are never touched.

After messages went, the payload text index is merged (SQLite's FTS5 keeps
what deleted messages left in it until its segments merge: without this the
database grows under a steady purge while the table does not), a few hundred
pages per transaction so that delivery goes on between them, and writing at most
about one copy of the index (new messages keep adding segments: "until all is
merged" may never come on a busy system)."""

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
# The merge writes at most this many times the index's size, then stops: messages
# enqueued meanwhile add segments, so "until nothing is left" may never come.
COMPACT_BUDGET = 1.25


async def _drain(purge: Any, before: Any, batch: int) -> int:
    total = 0
    while True:
        count = await purge(before, batch)
        total += count
        if count < batch:
            return total


async def _compact(store: Any) -> int:
    """Merge the text index a step at a time until it is merged or one rewrite of it
    has been written; the steps taken."""
    budget = COMPACT_BUDGET * await store.text_index_rows()
    steps = 0
    written = 0
    while written < budget:
        step = await store.compact_text_index(COMPACT_PAGES)
        if step <= 1:  # nothing left to merge
            break
        steps += 1
        written += step
    return steps


async def run(ctx: JobContext, options: PurgeOptions) -> dict[str, Any]:
    store = ctx.store
    messages = await _drain(
        store.purge_messages,
        ctx.fire - timedelta(seconds=options.messages_older_than),
        options.batch,
    )
    compacted = await _compact(store) if messages and options.compact_search_index else 0
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
