"""``job: http``: call a URL (a method, headers, a body); a 2xx answer succeeds,
anything else (another status, no answer within ``timeout``) fails the run.

The URL, the header values and the body (a string, or every string in a mapping
or list sent as JSON) may hold the run's placeholders (``daemon.jobs.template``:
``{{fire:%Y-%m-%d}}``, ``{{schedule}}`` …), filled when it runs; in the URL each
value is percent-encoded."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from daemon.channels.http.settings import HttpHeaders
from daemon.domain.fields import PositiveDuration, check_http_url, redact_url
from daemon.jobs import template
from daemon.jobs.kind import JobContext, JobFailed, JobKind, JobOptions

ANSWER_KEPT = 500  # characters of the answer kept in the run's output


def _templated_url(url: str) -> str:
    """A URL once its placeholders are filled (with sample values)."""
    issues = template.problems(url)
    if issues:
        raise ValueError("; ".join(issues))
    check_http_url(template.render(url, template.SAMPLE, url=True))
    return url


TemplatedUrl = Annotated[str, AfterValidator(_templated_url)]
Body = str | dict[str, Any] | list[Any] | None  # a mapping or list goes as JSON


class HttpJobOptions(JobOptions):
    url: TemplatedUrl
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "GET"
    headers: Annotated[HttpHeaders, AfterValidator(template.check_tree)] = Field(
        default_factory=dict
    )
    body: Annotated[Body, AfterValidator(template.check_tree)] = None
    timeout: PositiveDuration = 30.0


async def run(ctx: JobContext, options: HttpJobOptions) -> dict[str, Any]:
    import aiohttp  # the job's own dependency, loaded when it runs

    url = ctx.render(options.url, url=True)
    headers = {name: ctx.render(value) for name, value in options.headers.items()}
    for name, value in headers.items():
        if any(c in value for c in "\r\n\0"):
            raise JobFailed(f"header {name!r}: a placeholder filled it with a line break")
    body = template.render_tree(options.body, ctx.facts)
    data: bytes | None = None
    if isinstance(body, str):
        data = body.encode()
    elif body is not None:
        data = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    timeout = aiohttp.ClientTimeout(total=options.timeout)
    where = redact_url(url.split("?")[0])
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout, trust_env=False) as session,
            session.request(
                options.method, url, data=data, headers=headers, allow_redirects=False
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
