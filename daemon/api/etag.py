"""``ETag`` and ``304 Not Modified`` for lists and stats: the tag is a hash of the
body, so a poller that sends ``If-None-Match`` gets an empty answer while
nothing changed. A body with a figure that moves by itself (the age of the
oldest pending message, beside the time it counts from) is tagged weakly, by
what it holds but that figure: equal tags, equivalent answers."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from aiohttp import web

from daemon.api.params import _default


def _tag(text: str) -> str:
    return '"' + hashlib.sha256(text.encode()).hexdigest()[:32] + '"'


def cached_json(request: web.Request, data: Any, tagged: Any = None) -> web.Response:
    """``data`` as JSON with its ``ETag``, or 304 when the request names it.
    ``tagged``: what the tag is made of instead of ``data`` (a weak tag)."""
    text = json.dumps(data, default=_default, sort_keys=True)
    if tagged is None:
        tag = _tag(text)
    else:
        tag = "W/" + _tag(json.dumps(tagged, default=_default, sort_keys=True))
    headers = {"ETag": tag, "Cache-Control": "no-cache"}
    wanted = request.headers.get("If-None-Match", "")
    given = {t.strip().removeprefix("W/") for t in wanted.split(",")}  # weak comparison
    if tag.removeprefix("W/") in given or wanted.strip() == "*":
        return web.Response(status=304, headers=headers)
    return web.Response(text=text, content_type="application/json", headers=headers)
