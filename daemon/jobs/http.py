"""``job: http``: call a URL (a method, headers, a body); a 2xx answer succeeds,
anything else (another status, no answer within ``timeout``) fails the run."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field

from daemon.channels.http.settings import HttpHeaders
from daemon.domain.fields import HttpUrl, PositiveDuration, redact_url
from daemon.jobs.kind import JobContext, JobFailed, JobKind, JobOptions

ANSWER_KEPT = 500  # characters of the answer kept in the run's output


class HttpJobOptions(JobOptions):
    url: HttpUrl
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "GET"
    headers: HttpHeaders = Field(default_factory=dict)
    body: str | dict[str, Any] | list[Any] | None = None  # a mapping or list goes as JSON
    timeout: PositiveDuration = 30.0


async def run(ctx: JobContext, options: HttpJobOptions) -> dict[str, Any]:
    import aiohttp  # the job's own dependency, loaded when it runs

    headers = dict(options.headers)
    data: bytes | None = None
    if isinstance(options.body, str):
        data = options.body.encode()
    elif options.body is not None:
        data = json.dumps(options.body).encode()
        headers.setdefault("Content-Type", "application/json")
    timeout = aiohttp.ClientTimeout(total=options.timeout)
    where = redact_url(options.url.split("?")[0])
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout, trust_env=False) as session,
            session.request(
                options.method, options.url, data=data, headers=headers, allow_redirects=False
            ) as response,
        ):
            text = (await response.content.read(ANSWER_KEPT * 4)).decode("utf-8", "replace")
            status = response.status
    except TimeoutError:
        raise JobFailed(
            f"{options.method} {where}: no answer within {options.timeout:g}s"
        ) from None
    except aiohttp.ClientError as exc:
        raise JobFailed(f"{options.method} {where}: {type(exc).__name__}: {exc}") from None
    if not 200 <= status <= 299:
        raise JobFailed(f"{options.method} {where} answered HTTP {status}: {text[:200]}")
    return {"status": status, "answer": text[:ANSWER_KEPT]}


def describe(options: HttpJobOptions) -> str:
    return f"{options.method} {redact_url(options.url.split('?')[0])}"


KIND = JobKind("http", HttpJobOptions, run, describe)
