"""``/api/v1/visits/{kodebooking}``: a tracked visit's task progress, as ``outboxd
visit`` shows it (the same store read, the same JSON): every step's status and
times, and why one is held or failed."""

from __future__ import annotations

from aiohttp import web

from daemon.api.context import operator_of
from daemon.api.etag import cached_json
from daemon.api.params import Param, read_query
from daemon.domain.limits import NAME_MAX
from daemon.operator.messages import visits
from daemon.operator.shapes import visit_json

KODEBOOKING_PARAM = {  # printable ASCII, no spaces: as SIMRS and BPJS write booking codes
    "kodebooking": {"type": "string", "pattern": "^[!-~]{1,64}$", "maxLength": 64}
}
VISIT_QUERY = (
    Param("source", "string", "the source's name, when several have this booking code",
          max_length=NAME_MAX),
)  # fmt: skip


async def show(request: web.Request) -> web.Response:
    query = read_query(request, VISIT_QUERY)
    found = await visits(operator_of(request), request.match_info["kodebooking"], query["source"])
    return cached_json(request, {"items": [visit_json(v) for v in found]})
