"""``/api/v1/visits/{kodebooking}``: a tracked visit's task progress, as ``outboxd
visit`` shows it (the same store read, the same JSON): every step's status and
times, and why one is held or failed; ``/api/v1/visits``: the visits that cannot
go on; ``/api/v1/receipts``: partners' callbacks as received."""

from __future__ import annotations

from aiohttp import web

from daemon.api.context import control_of, operator_of
from daemon.api.etag import cached_json
from daemon.api.params import Param, read_query
from daemon.domain.limits import MAX_ID, MAX_PAGE, NAME_MAX
from daemon.domain.tracking import VISIT_TROUBLES
from daemon.operator import tracked
from daemon.operator.messages import visits
from daemon.operator.shapes import visit_json

KODEBOOKING_PARAM = {  # printable ASCII, no spaces: as SIMRS and BPJS write booking codes
    "kodebooking": {"type": "string", "pattern": "^[!-~]{1,64}$", "maxLength": 64}
}
VISIT_QUERY = (
    Param("source", "string", "the source's name, when several have this booking code",
          max_length=NAME_MAX),
)  # fmt: skip


TROUBLED_QUERY = (
    Param("problem", "enum", "held, failed or cancelled (default: any)", repeated=True,
          choices=VISIT_TROUBLES),
    Param("source", "string", "the source's name", max_length=NAME_MAX),
    Param("limit", "integer", "visits per page", minimum=1, maximum=MAX_PAGE, default=50),
    Param("before", "integer", "visits older than this (the page's next)", minimum=1,
          maximum=MAX_ID),
)  # fmt: skip
RECEIPTS_QUERY = (
    Param("webhook", "string", "one webhook's", max_length=NAME_MAX),
    Param("result", "enum", "one result", choices=tracked.RECEIPT_RESULTS),
    Param("limit", "integer", "receipts per page", minimum=1, maximum=MAX_PAGE, default=50),
    Param("before", "integer", "receipts older than this id (the page's next)", minimum=1,
          maximum=MAX_ID),
)  # fmt: skip


async def show(request: web.Request) -> web.Response:
    query = read_query(request, VISIT_QUERY)
    found = await visits(operator_of(request), request.match_info["kodebooking"], query["source"])
    zone = control_of(request).zone
    return cached_json(request, {"items": [visit_json(v, zone) for v in found]})


async def troubled(request: web.Request) -> web.Response:
    q = read_query(request, TROUBLED_QUERY)
    kinds = tuple(q["problem"]) or VISIT_TROUBLES
    found, following = await tracked.troubled_visits(
        operator_of(request), kinds, q["limit"], q["before"], q["source"]
    )
    zone = control_of(request).zone
    items = [{"id": i, **visit_json(v, zone)} for i, v in found]
    return cached_json(request, {"items": items, "next": following})


async def receipts(request: web.Request) -> web.Response:
    q = read_query(request, RECEIPTS_QUERY)
    found = await tracked.receipts(
        operator_of(request), q["webhook"], q["result"], q["limit"], q["before"]
    )
    zone = control_of(request).zone
    following = found[-1].id if len(found) == q["limit"] else None
    return cached_json(
        request, {"items": [tracked.receipt_json(r, zone) for r in found], "next": following}
    )
