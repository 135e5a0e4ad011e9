"""Messages as an operator handles them, the same for the CLI, the API and the
page: enqueue (one, a batch in one transaction, or JSON Lines in transactions of
``MAX_BATCH``), the listing, one message's timeline, retry, cancel and resend by
ids or by a filter (a dry run; a bulk operation beyond ``BULK_BOUND``), a bulk
operation's progress, the stats and a visit's progress. What is refused is
``Refused`` with the field at fault, as the request names it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from daemon.domain import jsontext
from daemon.domain.actions import RULES
from daemon.domain.errors import Refused
from daemon.domain.limits import MAX_BATCH
from daemon.domain.messages import EnqueueResult, InvalidMessage, NewMessage
from daemon.domain.selection import (
    FILTER_FIELDS,
    MessageFilter,
    OperatorRefused,
    check_selection,
)
from daemon.domain.views import (
    ChannelStats,
    MessagePage,
    MessageTimeline,
    OperationView,
    OperatorResult,
    VisitView,
)
from daemon.operator.base import Names, Operator, renamed
from daemon.operator.enqueue import new_message
from daemon.operator.requests import BatchIn, MessageIn, parse
from daemon.operator.summaries import stats_rows

# NewMessage's fields as a request names them (``MessageIn``)
REQUEST_FIELDS: Names = {"after_key": "after", "after_id": "after", "group_key": "group"}

# --- enqueue ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    """A message handed in and what the store made of it (``created``: new)."""

    channel: str
    key: str
    result: EnqueueResult


def checked(op: Operator, item: MessageIn) -> NewMessage:
    """The message to store, checked for its channel (``Refused`` naming the field)."""
    return new_message(op.settings, item.handed())


async def enqueue(op: Operator, body: MessageIn | BatchIn) -> list[Stored]:
    """One message, or a batch in one transaction (all or none): idempotent on
    (channel, key). A refusal names its field (``messages[2].after``)."""
    items, where = (body.messages, "messages[{}].") if isinstance(body, BatchIn) else ([body], "")
    batch = []
    for i, item in enumerate(items):
        try:
            batch.append(checked(op, item))
        except Refused as exc:
            raise renamed(exc, REQUEST_FIELDS, where.format(i)) from None
    try:
        results = await store_checked(op, batch)
    except InvalidMessage as exc:
        at = where.format(exc.index) if where and exc.index is not None else ""
        raise renamed(exc, REQUEST_FIELDS, at) from None
    return [Stored(m.channel, m.key, r) for m, r in zip(batch, results, strict=True)]


async def store_checked(op: Operator, batch: Sequence[NewMessage]) -> list[EnqueueResult]:
    """Messages ``checked`` already, stored in one transaction, in order; one
    stored before (its channel and key) is answered ``created=False``. What the
    store refuses (a prerequisite that is not there) is ``InvalidMessage`` with
    its field and index in ``batch``."""
    return await op.store.enqueue_many(list(batch), actor=op.actor)


@dataclass(frozen=True)
class LineRefused:
    line: int  # from 1
    reason: str
    field: str | None = None


@dataclass
class BatchReport:
    """What ``enqueue_lines`` did: how many were new, already there, refused."""

    new: int = 0
    duplicates: int = 0
    refused: list[LineRefused] = field(default_factory=list)


async def enqueue_lines(op: Operator, lines: Iterable[bytes], size: int = MAX_BATCH) -> BatchReport:
    """JSON Lines, each a ``MessageIn`` (blank lines are passed over), checked
    as ``enqueue`` checks them and stored ``size`` to a transaction. A line that
    is refused is reported with its number and why, and the rest are stored."""
    report = BatchReport()
    chunk: list[tuple[int, NewMessage]] = []
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            chunk.append((number, checked(op, _item(raw))))
        except Refused as exc:
            field_name = REQUEST_FIELDS.get(exc.field or "", exc.field)
            report.refused.append(LineRefused(number, str(exc), field_name))
            continue
        if len(chunk) >= size:
            await _store_lines(op, chunk, report)
            chunk = []
    if chunk:
        await _store_lines(op, chunk, report)
    report.refused.sort(key=lambda r: r.line)
    return report


def _item(raw: bytes) -> MessageIn:
    try:
        data = jsontext.loads(raw)
    except jsontext.NotJson as exc:
        raise Refused(f"not a JSON object: {exc}") from None
    if not isinstance(data, dict):
        raise Refused("not a JSON object")
    return parse(MessageIn, data)


async def _store_lines(
    op: Operator, chunk: list[tuple[int, NewMessage]], report: BatchReport
) -> None:
    """One transaction; a message the store refuses (a prerequisite that is not
    there) is reported and the transaction made again without it."""
    while chunk:
        try:
            results = await store_checked(op, [m for _, m in chunk])
        except InvalidMessage as exc:
            if exc.index is None or not 0 <= exc.index < len(chunk):
                raise
            number, _ = chunk.pop(exc.index)
            field_name = REQUEST_FIELDS.get(exc.field or "", exc.field)
            report.refused.append(LineRefused(number, str(exc), field_name))
            continue
        for r in results:
            if r.created:
                report.new += 1
            else:
                report.duplicates += 1
        return


# --- reading ----------------------------------------------------------------------------


async def listing(
    op: Operator, selector: MessageFilter, limit: int, cursor: str | None
) -> MessagePage:
    """A page of messages newest first (``cursor``: the page after that one)."""
    return await op.store.list_messages(
        selector, limit=limit, cursor=cursor, known_channels=op.channels
    )


async def timeline(op: Operator, message_id: int) -> MessageTimeline:
    found = await op.store.message_timeline(message_id)
    if found is None:
        raise Refused(f"no message with id {message_id}", "missing", "id")
    return found


async def operation(op: Operator, operation_id: int) -> OperationView:
    found = await op.store.operation(operation_id)
    if found is None:
        raise Refused(f"no operation with id {operation_id}", "missing", "id")
    return found


async def stats(op: Operator, window: float, now: datetime) -> list[ChannelStats]:
    """Every configured channel's figures (a channel with no messages: zeros)."""
    return stats_rows(await op.store.stats(now=now, window=window), op.channels)


async def visits(op: Operator, kodebooking: str, source: str | None) -> list[VisitView]:
    found = await op.store.find_visits(kodebooking, source)
    if not found:
        where = f" from source {source!r}" if source else ""
        raise Refused(f"no visit with kodebooking {kodebooking!r}{where}", "missing", "kodebooking")
    return found


# --- retry, cancel, resend ----------------------------------------------------------------

ACTIONS = tuple(RULES)  # retry, cancel, resend


def selection(
    ids: Sequence[int] | None,
    filter: MessageFilter | None,
    names: Names = {},  # noqa: B006
) -> MessageFilter:
    """The messages an action is about: by ``ids``, or by ``filter`` (None: not
    given), never both, never neither. ``names``: how the face calls ``ids``,
    ``filter``, each filter field, and ``selectors`` (all the ways to select)."""
    ids_name = names.get("ids", "ids")
    if ids and filter is not None:
        given = ", ".join(names.get(f, f) for f in filter.given) or names.get("filter", "filter")
        raise OperatorRefused(
            f"{ids_name} selects messages by id: it cannot go with {given} "
            "(select by id or by a filter, not both)",
            names.get("filter", "filter"),
        )
    if ids:
        return MessageFilter(ids=tuple(dict.fromkeys(ids)))
    if filter is None:
        ways = names.get("selectors", f"a filter ({', '.join(FILTER_FIELDS)})")
        raise OperatorRefused(f"select messages with {ids_name}, or {ways}")
    if not filter.by_filter:
        raise OperatorRefused(
            f"{names.get('filter', 'filter')}: name at least one of {', '.join(FILTER_FIELDS)}",
            names.get("filter", "filter"),
        )
    return replace(filter, statuses=tuple(dict.fromkeys(filter.statuses)))


async def act(
    op: Operator,
    action: str,
    selector: MessageFilter,
    dry_run: bool = False,
    names: Names = {},  # noqa: B006 - read only
) -> OperatorResult:
    """Retry, cancel or resend (``action``) what ``selector`` selects, as its rule
    (``daemon.domain.actions``) says: a message being sent is never touched and
    is counted under ``skipped``; a filter matching more than ``BULK_BOUND``
    starts a bulk operation (``result.operation``), to be carried on by
    ``daemon.operator.bulk``. ``dry_run``: what would change, nothing changed."""
    rule = RULES[action]
    operations = {"retry": op.store.retry, "cancel": op.store.cancel, "resend": op.store.resend}
    try:
        check_selection(selector, op.channels)
        rule.statuses(selector)
        return await operations[rule.action](
            selector, actor=op.actor, dry_run=dry_run, known_channels=op.channels,
            reason=op.reason,
        )  # fmt: skip
    except OperatorRefused as exc:
        raise renamed(exc, names) from None
