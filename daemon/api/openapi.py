"""The OpenAPI 3.1 document of the API, built from the endpoint table: a request
body's schema is the JSON Schema of the pydantic model that checks it, its
models under ``components.schemas``."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pydantic

from daemon import __version__
from daemon.api.endpoints import Endpoint

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "field": {"type": "string", "description": "the field or parameter at fault"},
    },
}
PROBLEM_REF = "#/components/schemas/Problem"
SCHEMAS = "#/components/schemas/{model}"
# aiohttp's HTTP parser answers this itself, as text, before the API sees the request
PARSER_REFUSES = "a request line or header longer than 8190 bytes is refused as text/plain"
_ERRORS = {
    400: "a parameter or a field of the body is wrong, or the Host is not one of the "
    "control API's names: `field` names it",
    401: "no token, or not one of control.tokens",
    403: "the token's role is too low, or a write from another site (Origin, Sec-Fetch-Site)",
    408: "the body did not arrive within control.body_timeout",
    413: "the body is too large",
    415: "the body is not application/json (a write says so with a body or none, or sends "
    "X-Requested-With)",
}


def body_schema(body: Any, schemas: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of a request body: of its model (or union of models), the
    models it refers to added to ``schemas``; a dict is a schema already."""
    if isinstance(body, dict):
        return body
    schema = pydantic.TypeAdapter(body).json_schema(ref_template=SCHEMAS)
    schemas.update(schema.pop("$defs", {}))
    return schema


def document(endpoints: Sequence[Endpoint]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {"Problem": PROBLEM_SCHEMA}
    for e in endpoints:
        operation: dict[str, Any] = {
            "operationId": _operation_id(e),
            "summary": e.summary,
            "tags": [e.tag],
            "responses": _responses(e),
        }
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": schema}
            for name, schema in e.path_params.items()
        ] + [
            {
                "name": p.name,
                "in": "query",
                "required": False,
                "description": p.description,
                "schema": p.schema(),
                **({"style": "form", "explode": True} if p.repeated else {}),
            }
            for p in e.query
        ]
        if parameters:
            operation["parameters"] = parameters
        if e.body is not None:
            operation["requestBody"] = {
                "required": not e.body_optional,
                "content": {"application/json": {"schema": body_schema(e.body, schemas)}},
            }
        if e.role is None:
            operation["security"] = []
        else:
            operation["description"] = f"Needs the `{e.role}` role."
        paths.setdefault(e.path, {})[e.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "outboxd control API", "version": __version__},
        "servers": [{"url": "/"}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }


def _operation_id(e: Endpoint) -> str:
    words = re.sub(r"[{}]", "", e.path.removeprefix("/api/v1")).strip("/").replace("/", "_")
    return f"{e.method.lower()}_{words or 'root'}".replace("-", "_")


def _responses(e: Endpoint) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status, text in e.responses.items():
        if status >= 400:
            out[str(status)] = _problem(text)
        elif status in (204, 304):
            out[str(status)] = {"description": text}
        else:
            out[str(status)] = {
                "description": text,
                "content": {"application/json": {"schema": {"type": ["object", "array"]}}},
            }
    errors = dict(_ERRORS)  # 400 for any: a Host the API does not answer to
    writes = e.method != "GET"
    if e.role is None:
        errors.pop(401)
        errors.pop(403)
    if e.body is None:
        errors.pop(408)
        errors.pop(413)
    if e.body is None and not (writes and e.role is not None):
        errors.pop(415)
    for status, text in errors.items():
        out.setdefault(str(status), _problem(text))
    if "400" in out:
        out["400"]["description"] += f"; {PARSER_REFUSES}"
        out["400"]["content"]["text/plain"] = {"schema": {"type": "string"}}
    return out


def _problem(text: str) -> dict[str, Any]:
    return {
        "description": text,
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        },
    }
