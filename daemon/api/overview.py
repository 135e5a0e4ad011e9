"""``/api/v1/stats``, ``/api/v1/audit`` and ``/api/v1/me``: the figures per
channel, the record of operator actions, and who is asking."""

from __future__ import annotations

from aiohttp import web

from daemon.api.context import control_of, operator_of, principal_of
from daemon.api.etag import cached_json
from daemon.api.params import Param, json_response, read_query
from daemon.domain.clock import utcnow
from daemon.domain.limits import MAX_ID, MAX_PAGE
from daemon.operator.audit import audit_page
from daemon.operator.messages import stats as channel_stats
from daemon.operator.summaries import stats_json

STATS_QUERY = (
    Param("window", "integer", "seconds of the success-rate window", minimum=60,
          maximum=7 * 86400, default=3600),
    Param("minutes", "integer", "also the sent and failed of each of the last N minutes "
          "(all channels) and the delivered per minute over the last 5 and 60",
          minimum=0, maximum=180, default=0),
)  # fmt: skip
AUDIT_QUERY = (
    Param("limit", "integer", "entries, newest first", minimum=1, maximum=MAX_PAGE,
          default=100),
    Param("before", "integer", "entries older than this id (the page cursor)", minimum=1,
          maximum=MAX_ID),
)  # fmt: skip


async def stats(request: web.Request) -> web.Response:
    control = control_of(request)
    query = read_query(request, STATS_QUERY)
    now = utcnow()
    window = float(query["window"])
    rows = await channel_stats(operator_of(request), window, now)
    data = stats_json(rows, window, now.replace(microsecond=0).isoformat())
    data.pop("at")  # the tag is of the figures, not of the moment they were read
    data["timezone"] = str(control.zone)  # the zone the page shows times in
    data["breakers"] = await control.store.breakers()
    if query["minutes"]:
        series = await control.store.per_minute(max(query["minutes"], 60), now=now)
        data["per_minute"] = [
            {"minute": m.start.isoformat(), "sent": m.sent, "failed": m.failed}
            for m in series[-query["minutes"] :]
        ]
        data["delivered_per_minute"] = {
            "5m": sum(m.sent for m in series[-5:]) / 5,
            "60m": sum(m.sent for m in series[-60:]) / 60,
        }
    # the ages move by themselves; the time each counts from does not
    steady = {**data, "channels": [
        {k: v for k, v in c.items() if k != "oldest_pending_age_seconds"}
        for c in data["channels"]
    ]}  # fmt: skip
    return cached_json(request, data, tagged=steady)


async def audit(request: web.Request) -> web.Response:
    query = read_query(request, AUDIT_QUERY)
    page = await audit_page(operator_of(request), query["limit"], query["before"])
    return cached_json(request, page.json())


async def me(request: web.Request) -> web.Response:
    """Who the caller is: the token's name and role (with no tokens configured,
    ``local``, as every caller on this machine is)."""
    read_query(request, ())
    principal = principal_of(request)
    tokens = bool(control_of(request).settings.control.tokens)
    return json_response({"name": principal.name, "role": principal.role, "tokens": tokens})
