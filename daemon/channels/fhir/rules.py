"""The FHIR channel's wire rules, as pure functions: the request a message kind
makes, and what the server's answer means. No I/O; tested from tables.

| message kind         | request                                                    |
|----------------------|------------------------------------------------------------|
| ``create``           | ``POST [base]/[type]``; a Bundle of type ``transaction``   |
|                      | or ``batch``: ``POST [base]`` (the server processes it)    |
| ``update``           | ``PUT [base]/[type]/[id]`` (the resource's ``id``)         |
| ``conditional-create``| ``POST [base]/[type]`` with ``If-None-Exist:               |
|                      | identifier=[system]|[value]`` from the resource's first     |
|                      | identifier: a repeat creates nothing twice                 |
| ``search``           | ``GET [base]/[payload]``, the payload a search such as     |
|                      | ``Patient?identifier=https://fhir.kemkes.go.id/id/nik|…``  |
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from daemon.channels.base import Outcome
from daemon.channels.http.rules import RETRY_STATUSES, parse_retry_after, snippet

CREATE, UPDATE, CONDITIONAL_CREATE, SEARCH = "create", "update", "conditional-create", "search"
KINDS = (CREATE, UPDATE, CONDITIONAL_CREATE, SEARCH)
PROCESSED_BUNDLES = ("transaction", "batch")  # POSTed to the base, not stored as a Bundle
KEPT = 64 * 1024  # characters of an answer kept as the message's response
DETAIL_LIMIT = 500  # characters of an OperationOutcome's issues put in a detail
ISSUES_SHOWN = 5

_LOCATION = re.compile(
    r"(?:^|/)(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/(?P<vid>[^/?#]+))?/?$"
)


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # relative to the base, no leading /
    headers: dict[str, str] = field(default_factory=dict)


def identifier_query(resource: Mapping[str, Any]) -> str | None:
    """``identifier=[system]|[value]`` from the resource's first identifier with both,
    percent-encoded for a header or a URL; None without one."""
    found = resource.get("identifier")
    for identifier in found if isinstance(found, list) else [found]:
        if not isinstance(identifier, Mapping):
            continue
        system, value = identifier.get("system"), identifier.get("value")
        if isinstance(system, str) and isinstance(value, str) and system and value:
            return "identifier=" + quote(f"{system}|{value}", safe=":/|")
    return None


def plan(kind: str, resource: Mapping[str, Any] | str) -> Request:
    """The request for a message of ``kind`` (its payload, checked at enqueue: a
    resource, or for ``search`` the query text with its references filled)."""
    if kind == SEARCH:
        assert isinstance(resource, str)
        return Request("GET", resource.strip().lstrip("/"))
    assert isinstance(resource, Mapping)
    kind_of = str(resource.get("resourceType"))
    if kind == UPDATE:
        return Request("PUT", f"{kind_of}/{resource.get('id')}", _WRITE)
    if kind == CONDITIONAL_CREATE:
        query = identifier_query(resource)
        headers = {**_WRITE, "If-None-Exist": query} if query else dict(_WRITE)
        return Request("POST", kind_of, headers)
    if kind_of == "Bundle" and resource.get("type") in PROCESSED_BUNDLES:
        return Request("POST", "", _WRITE)
    return Request("POST", kind_of, _WRITE)


_WRITE = {"Prefer": "return=representation"}


def read_location(location: str | None) -> tuple[str, str, str | None] | None:
    """(type, id, version) of a ``Location`` such as ``[base]/Encounter/42/_history/1``."""
    if not location:
        return None
    match = _LOCATION.search(location.split("?", 1)[0])
    if match is None:
        return None
    return match["type"], match["id"], match["vid"]


def document_of(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def issues(document: Any) -> str | None:
    """An OperationOutcome's issues in one line (severity, code, diagnostics or the
    details' text, where: its expression), or None for another document."""
    if not isinstance(document, Mapping) or document.get("resourceType") != "OperationOutcome":
        return None
    found = document.get("issue")
    parts = []
    for issue in found if isinstance(found, list) else []:
        if not isinstance(issue, Mapping):
            continue
        words = [str(issue.get(k)) for k in ("severity", "code") if issue.get(k)]
        said = issue.get("diagnostics") or _text_of(issue.get("details"))
        line = " ".join(words) + (f": {said}" if said else "")
        where = issue.get("expression") or issue.get("location")
        if isinstance(where, list) and where:
            line += f" (at {', '.join(str(w) for w in where[:3])})"
        parts.append(" ".join(line.split()))
    more = len(parts) - ISSUES_SHOWN
    text = "; ".join(parts[:ISSUES_SHOWN]) + (f"; and {more} more" if more > 0 else "")
    return snippet(text or "OperationOutcome without issues", DETAIL_LIMIT)


def _text_of(concept: Any) -> str:
    if not isinstance(concept, Mapping):
        return ""
    if concept.get("text"):
        return str(concept["text"])
    codings = concept.get("coding")
    for coding in codings if isinstance(codings, list) else []:
        if isinstance(coding, Mapping) and (coding.get("display") or coding.get("code")):
            return str(coding.get("display") or coding.get("code"))
    return ""


def _status_line(status: int, reason: str) -> str:
    return f"HTTP {status} {reason}".rstrip()


def judge_trouble(
    status: int, reason: str, headers: Mapping[str, str], body: str, now: datetime | None = None
) -> Outcome | None:
    """What a non-2xx answer means (None for a 2xx): 408, 429 and 5xx retried,
    honouring ``Retry-After``; 3xx and other 4xx rejected, an OperationOutcome's
    issues in the detail (and the whole answer kept as the response)."""
    if 200 <= status <= 299:
        return None
    line = _status_line(status, reason)
    said = issues(document_of(body)) or (snippet(body) if body.strip() else "")
    detail = f"{line}: {said}" if said else line
    if status in RETRY_STATUSES or 500 <= status <= 599:
        retry_after = parse_retry_after(headers.get("Retry-After"), now)
        if retry_after is not None:
            detail += f"; the server asked to retry after {retry_after:g}s"
        return Outcome.retry(detail, response=body[:KEPT] or None, retry_after=retry_after)
    if 300 <= status <= 499:
        if 300 <= status <= 399:
            detail = f"{line}: redirects are not followed; fix the channel's base_url"
        return Outcome.rejected(detail, response=body[:KEPT] or None)
    return Outcome.retry(f"unexpected HTTP status {status}", response=body[:KEPT] or None)


def judge_write(
    status: int, reason: str, headers: Mapping[str, str], body: str, kind: str, resource_type: str
) -> Outcome:
    """The answer to a create, update or conditional create: 2xx delivered, the
    resource the server answered (or, without one, its type, id and version from
    ``Location``) kept as the response, so a later message can name its id."""
    trouble = judge_trouble(status, reason, headers, body)
    if trouble is not None:
        return trouble
    line = _status_line(status, reason)
    document = document_of(body)
    where = read_location(headers.get("Location") or headers.get("Content-Location"))
    kept: str | None
    if (
        isinstance(document, Mapping)
        and isinstance(document.get("id"), str)
        and document.get("resourceType") not in (None, "OperationOutcome")
        and len(body) <= KEPT
    ):
        kept, named = body, f"{document['resourceType']}/{document['id']}"
    elif where is not None:
        summary: dict[str, Any] = {"resourceType": where[0], "id": where[1]}
        if where[2]:
            summary["meta"] = {"versionId": where[2]}
        kept, named = json.dumps(summary), f"{where[0]}/{where[1]}"
    else:
        kept, named = (body[:KEPT] or None), ""
    if resource_type == "Bundle" and isinstance(document, Mapping):
        return Outcome.delivered(kept, f"{line}: {_bundle_summary(document)}")
    if kind == CONDITIONAL_CREATE and status == 200:
        return Outcome.delivered(kept, f"{line}: {named or resource_type} exists; nothing created")
    return Outcome.delivered(kept, f"{line}: {named}" if named else f"{line}: no id in the answer")


def _bundle_summary(bundle: Mapping[str, Any]) -> str:
    """``transaction-response: 3 entries`` or ``batch-response: 1 of 3 entries failed: …``."""
    entries = bundle.get("entry")
    entries = entries if isinstance(entries, list) else []
    failed = []
    for i, entry in enumerate(entries):
        response = entry.get("response") if isinstance(entry, Mapping) else None
        status = str(response.get("status", "")) if isinstance(response, Mapping) else ""
        if status[:1] in ("4", "5"):
            said = issues(response.get("outcome")) if isinstance(response, Mapping) else None
            failed.append(f"entry {i}: {status}" + (f" {said}" if said else ""))
    kind = bundle.get("type") or "Bundle"
    if not failed:
        return f"{kind}: {len(entries)} entries"
    return snippet(f"{kind}: {len(failed)} of {len(entries)} entries failed: {'; '.join(failed)}")


def judge_search(
    status: int, reason: str, headers: Mapping[str, str], body: str, query: str
) -> Outcome:
    """A search's answer: exactly one match delivered, that resource kept as the
    response (its id is ``{{after.id}}`` to a later message); none or several
    rejected, saying how many."""
    trouble = judge_trouble(status, reason, headers, body)
    if trouble is not None:
        return trouble
    line = _status_line(status, reason)
    bundle = document_of(body)
    if not isinstance(bundle, Mapping) or bundle.get("resourceType") != "Bundle":
        return Outcome.rejected(f"{line}: the search's answer is not a Bundle", body[:KEPT] or None)
    entries = bundle.get("entry")
    matches = [
        e["resource"]
        for e in (entries if isinstance(entries, list) else [])
        if isinstance(e, Mapping) and isinstance(e.get("resource"), Mapping) and _a_match(e)
    ]
    total = bundle.get("total")
    said_total = total if isinstance(total, int) and not isinstance(total, bool) else 0
    count = max(len(matches), said_total)
    what, _, parameters = query.partition("?")
    if count == 1 and len(matches) == 1:
        found = matches[0]
        kept = json.dumps(found, ensure_ascii=False, separators=(",", ":"))
        return Outcome.delivered(kept, f"{line}: one match: {what}/{found.get('id')}")
    said = f"no {what} matches" if count == 0 else f"{count} {what} resources match"
    return Outcome.rejected(f"{said} {snippet(parameters, 200)}", body[:KEPT] or None)


def _a_match(entry: Mapping[str, Any]) -> bool:
    """An entry the search matched (not one it included, nor an OperationOutcome)."""
    search = entry.get("search")
    mode = search.get("mode", "match") if isinstance(search, Mapping) else "match"
    return mode == "match" and entry["resource"].get("resourceType") != "OperationOutcome"
