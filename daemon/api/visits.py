"""``/api/v1/visits/{kodebooking}``: a tracked visit's task progress, as ``outboxd
visit`` shows it (the same store read, the same JSON): every step's status and
times, and why one is held or failed."""

from __future__ import annotations

from aiohttp import web

from daemon.api.context import control_of
from daemon.api.etag import cached_json
from daemon.api.params import Param, read_query
from daemon.api.problems import Problem
from daemon.operator.shapes import visit_json

KODEBOOKING_PARAM = {  # printable ASCII, no spaces: as SIMRS and BPJS write booking codes
    "kodebooking": {"type": "string", "pattern": "^[!-~]{1,64}$", "maxLength": 64}
}
VISIT_QUERY = (
    Param("source", "string", "the source's name, when several have this booking code",
          max_length=64),
)  # fmt: skip


async def show(request: web.Request) -> web.Response:
    control = control_of(request)
    query = read_query(request, VISIT_QUERY)
    kodebooking = request.match_info["kodebooking"]
    visits = await control.store.find_visits(kodebooking, query["source"])
    if not visits:
        where = f" from source {query['source']!r}" if query["source"] else ""
        raise Problem(404, f"no visit with kodebooking {kodebooking!r}{where}")
    return cached_json(request, {"items": [visit_json(v) for v in visits]})
