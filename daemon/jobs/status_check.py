"""``job: status_check``: ask a partner what became of what was sent (the filing
status of a tax or e-invoicing submission) and move each message on.

For each ``sent`` message of ``channel`` due a check (never checked, or last
checked ``every`` ago), a request to ``url``, where ``{key}`` is the message's
key and ``{id}`` the id the partner gave it (read with the JSON pointer
``id_pointer`` from the answer kept when it was sent). The answer's status (the
JSON pointer ``status_pointer``) is mapped by ``statuses`` to ``confirmed`` or
``rejected``; any other status leaves it open. Each change is a status event,
written with the check; a message still open after ``max_checks`` is flagged for
an operator. A partner that does not answer changes nothing: the message is
checked again next time, and when no check got an answer the run fails (and is
retried as its schedule says).

``auth`` authenticates each request as an ``http`` channel's does: a bearer token,
basic auth, or OAuth2 client credentials (``type: oauth2``: one access token per
channel and process, kept between runs, fetched again after a 401 and the check
asked once more; no token is a check without an answer).
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import quote

from pydantic import Field, field_validator

from daemon.channels.http.rules import basic_credentials
from daemon.channels.http.settings import (
    BasicAuthSettings,
    BearerAuthSettings,
    HttpAuth,
    HttpHeaders,
)
from daemon.channels.oauth.settings import OAuth2Settings
from daemon.domain.fields import Integer, Line, PositiveDuration, masked_url, redact_url
from daemon.domain.tracking import CheckResult, DueCheck, Verdict
from daemon.domain.units import format_duration
from daemon.jobs.kind import JobContext, JobFailed, JobKind, JobOptions

if TYPE_CHECKING:
    import aiohttp

    from daemon.channels.oauth.tokens import TokenSource


def pointer(document: Any, path: str) -> Any:
    """The value at a JSON pointer (RFC 6901: ``/a/0/b``, ``~1`` is ``/``, ``~0`` is
    ``~``); None where the document has nothing there."""
    if path in ("", "/"):
        return document if path == "" else _step(document, "")
    node = document
    for token in path.lstrip("/").split("/"):
        node = _step(node, token.replace("~1", "/").replace("~0", "~"))
        if node is None:
            return None
    return node


def _step(node: Any, token: str) -> Any:
    if isinstance(node, Mapping):
        return node.get(token)
    if isinstance(node, list) and token.isdigit() and int(token) < len(node):
        return node[int(token)]
    return None


Pointer = Annotated[str, Field(max_length=500), Field(pattern=r"^(/.*)?$")]


class StatusCheckOptions(JobOptions):
    channel: Line
    url: Line  # http(s)://…/{key} or …/{id}
    method: Literal["GET", "POST"] = "GET"
    headers: HttpHeaders = Field(default_factory=dict)
    auth: HttpAuth | None = None
    id_pointer: Pointer | None = None  # where the partner's id is in the answer kept at send
    status_pointer: Pointer = "/status"
    statuses: dict[Line, Literal["confirmed", "rejected"]]
    every: PositiveDuration = 300.0  # between two checks of one message
    max_checks: Annotated[Integer, Field(ge=1, le=10_000)] = 48
    batch: Annotated[Integer, Field(ge=1, le=10_000)] = 200  # messages checked per run
    concurrency: Annotated[Integer, Field(ge=1, le=64)] = 4
    timeout: PositiveDuration = 30.0

    @field_validator("url")
    @classmethod
    def _template(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"expected an http:// or https:// URL, got {masked_url(url)}")
        try:
            url.format(key="k", id="i")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"{exc!r} is not {{key}} or {{id}}") from None
        return url


def _url(options: StatusCheckOptions, due: DueCheck) -> str | None:
    partner_id = ""
    if options.id_pointer is not None:
        try:
            answer = json.loads(due.response or "null")
        except ValueError:
            answer = None
        found = pointer(answer, options.id_pointer)
        if found is None:
            return None
        partner_id = str(found)
    return options.url.format(key=quote(due.key, safe=""), id=quote(partner_id, safe=""))


# The token sources of this process, by event loop, then by (channel, auth): one
# token per channel and process, kept from one run to the next.
_TOKENS: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, OAuth2Settings], TokenSource]
] = weakref.WeakKeyDictionary()


def _tokens(ctx: JobContext, options: StatusCheckOptions) -> TokenSource | None:
    if not isinstance(options.auth, OAuth2Settings):
        return None
    from daemon.channels.oauth.tokens import TokenSource

    sources = _TOKENS.setdefault(asyncio.get_running_loop(), {})
    key = (options.channel, options.auth)
    source = sources.get(key)
    if source is None:
        source = sources[key] = TokenSource(options.auth)
        channel, count = options.channel, ctx.count_token
        source.count = lambda result: count(channel, result)
    return source


def _fixed_headers(options: StatusCheckOptions) -> dict[str, str]:
    headers = dict(options.headers)
    if isinstance(options.auth, BasicAuthSettings):
        headers["Authorization"] = basic_credentials(
            options.auth.username, options.auth.password.get_secret_value()
        )
    elif isinstance(options.auth, BearerAuthSettings):
        headers["Authorization"] = f"Bearer {options.auth.token.get_secret_value()}"
    return headers


async def _get(
    session: aiohttp.ClientSession,
    options: StatusCheckOptions,
    url: str,
    tokens: TokenSource | None,
) -> tuple[int, bytes]:
    """One request (once more with a fresh token after a 401): the status and body."""
    headers = _fixed_headers(options)
    for last in (False, True):
        token = await tokens.get(session) if tokens is not None else None
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with session.request(
            options.method, url, headers=headers, allow_redirects=False
        ) as response:
            body = await response.content.read(1 << 20)
            status = response.status
        if status != 401 or tokens is None or token is None or last:
            break
        tokens.invalidate(token)
    return status, body


async def _ask(
    session: aiohttp.ClientSession,
    options: StatusCheckOptions,
    due: DueCheck,
    tokens: TokenSource | None = None,
) -> CheckResult | str:
    """The partner's verdict on one message, or why there is none (a string)."""
    import aiohttp

    from daemon.channels.oauth.tokens import TokenUnavailable

    url = _url(options, due)
    if url is None:
        return f"message {due.id}: no {options.id_pointer} in the answer kept at send"
    where = redact_url(url.split("?")[0])
    try:
        status, body = await _get(session, options, url, tokens)
    except TokenUnavailable as exc:
        return f"{where}: no access token: {exc.detail}"
    except (TimeoutError, aiohttp.ClientError) as exc:
        return f"{where}: {type(exc).__name__}: {exc}"
    if status == 401 and tokens is not None:
        return f"{where} answered HTTP 401 to a freshly fetched access token"
    if status >= 500 or status in (408, 429):
        return f"{where} answered HTTP {status}"
    try:
        said = pointer(json.loads(body), options.status_pointer)
    except (ValueError, RecursionError):
        if 200 <= status <= 299:
            return f"{where}: the answer is not JSON"
        said = f"HTTP {status}"  # it answered, saying nothing we can read: still open
    text = str(said) if said is not None else f"HTTP {status}"
    verdict: Verdict = options.statuses.get(text, "open")
    return CheckResult(due.id, verdict, text[:200])


async def run(ctx: JobContext, options: StatusCheckOptions) -> dict[str, Any]:
    due = await ctx.store.due_status_checks(
        options.channel, options.every, options.max_checks, options.batch
    )
    if not due:
        return {"checked": 0}
    import aiohttp  # the job's own dependency, loaded when it runs

    timeout = aiohttp.ClientTimeout(total=options.timeout)
    limit = asyncio.Semaphore(options.concurrency)
    tokens = _tokens(ctx, options)

    async def one(check: DueCheck) -> CheckResult | str:
        async with limit:
            return await _ask(session, options, check, tokens)

    async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as session:
        answers = await asyncio.gather(*(one(d) for d in due))
    results = [a for a in answers if isinstance(a, CheckResult)]
    problems = [a for a in answers if isinstance(a, str)]
    counts = await ctx.store.record_status_checks(
        results, options.max_checks, f"status_check:{ctx.schedule}"
    )
    if problems and not results:
        raise JobFailed(f"no check got an answer ({len(problems)}): {problems[0]}")
    return {"checked": len(results), "unanswered": len(problems), **counts}


def check(options: Mapping[str, Any], document: Mapping[str, Any]) -> list[tuple[str, str]]:
    channel = options.get("channel")
    channels = document.get("channels")
    if isinstance(channel, str) and not (isinstance(channels, dict) and channel in channels):
        return [("channel", f"no channel named {channel!r}")]
    return []


def describe(options: StatusCheckOptions) -> str:
    oauth = " (OAuth2)" if isinstance(options.auth, OAuth2Settings) else ""
    return (
        f"statuses of {options.channel} at {redact_url(options.url.split('?')[0])}{oauth}, "
        f"every {format_duration(options.every)}, at most {options.max_checks} checks"
    )


KIND = JobKind("status_check", StatusCheckOptions, run, describe, check)
