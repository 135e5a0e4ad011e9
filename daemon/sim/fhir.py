"""A FHIR R4 server with an OAuth2 token endpoint, laid out as SATUSEHAT is
(``/oauth2/v1/accesstoken``, ``/fhir-r4/v1/…``), for the tests and the demo.

In a test::

    async with FhirSimulator({"client": "s3cret"}, lifetime=60) as sim:
        ...  # base_url = sim.base_url(); token_url = sim.token_url()
        sim.faults.fail_next, sim.faults.drop_next = 2, 1
        sim.expire_tokens(); sim.lose_state(); sim.resources["Encounter"]

As a process (the demo's ``sim-fhir``)::

    python -m daemon.sim.fhir --host 127.0.0.1 --port 8083 --client-id ID \\
        [--lifetime 3600]      # the client's secret from $OUTBOXD_SIM_FHIR_CLIENT_SECRET

``GET /_sim/resources`` lists what it holds, by type, as JSON. Exits 0 on SIGTERM
or SIGINT. Every FHIR call needs a bearer token the token endpoint gave out and
that has not expired (else 401 with an OperationOutcome).

What it does, per request:

| request                                   | answer                                      |
|-------------------------------------------|---------------------------------------------|
| ``POST [type]``                           | the resource checked (FHIR R4 by            |
|                                           | ``fhir.resources``; every ``Type/id``       |
|                                           | reference must name a resource it holds):   |
|                                           | 201 with it, a new id and version 1,        |
|                                           | ``Location``; else 400 OperationOutcome     |
| ``POST [type]`` + ``If-None-Exist:        | the one it holds with that identifier: 200, |
| identifier=system|value``                 | nothing created; several: 412               |
| ``PUT [type]/[id]``                       | 200 with the next version, or 201 (created) |
| ``GET [type]/[id]``                       | 200, or 404 OperationOutcome                |
| ``GET [type]?identifier=system|value``    | a ``searchset`` Bundle (also ``_id``;       |
|                                           | another parameter: 400)                     |
| ``POST`` to the base, a ``transaction``   | its entries in order, ``urn:uuid:``         |
| Bundle                                    | references resolved; all or nothing         |

Faults (``FhirFaults``, change them between calls): ``fail_next`` calls answered
``fail_status`` (429) with ``Retry-After`` before any work; ``drop_next`` calls
done, then the connection closed without an answer (the client cannot know it
worked); ``expire_tokens()`` ends every token early; ``lose_state()`` forgets
every resource but the seeded ones. It starts with a hospital's reference data
(``SEEDS``): an Organization, a Location, a Practitioner and five Patients with
NIK identifiers.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import logging
import os
import signal
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from daemon.channels.fhir.resources import is_resource, problems
from daemon.domain.logs import setup_logging
from daemon.runtime import eventloop
from daemon.sim import fail
from daemon.sim.fail import FailSwitch
from daemon.sim.oauth import TokenIssuer
from daemon.sim.server import SimulatorServer

log = logging.getLogger(__name__)

TOKEN_PATH = "/oauth2/v1/accesstoken"
FHIR_PATH = "/fhir-r4/v1"
RESOURCES_PATH = "/_sim/resources"
FHIR_JSON = "application/fhir+json"
NIK = "https://fhir.kemkes.go.id/id/nik"
IHS = "https://fhir.kemkes.go.id/id/ihs-number"
ORGANIZATION_ID = "10000004"
PATIENTS = (  # (id, NIK, name, gender, birth date)
    ("P02478375538", "9271060312000001", "Budi Santoso", "male", "1980-01-01"),
    ("P03647103112", "9204014804000002", "Siti Wijaya", "female", "1985-04-08"),
    ("P00805884304", "9104224509000003", "Agus Hidayat", "male", "1990-09-05"),
    ("P00912894463", "9104223107000004", "Dewi Lestari", "female", "1975-07-31"),
    ("P01654557057", "9104025209000005", "Rizky Pratama", "male", "2001-09-12"),
)


def _seeds() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {
            "resourceType": "Organization",
            "id": ORGANIZATION_ID,
            "active": True,
            "name": "RS Demo outboxd",
        },
        {
            "resourceType": "Location",
            "id": "b017aa54-f1df-4ec2-9d84-8823815d7228",
            "status": "active",
            "name": "Poli Umum",
            "managingOrganization": {"reference": f"Organization/{ORGANIZATION_ID}"},
        },
        {
            "resourceType": "Practitioner",
            "id": "N10000001",
            "identifier": [{"system": NIK, "value": "7209061211900001"}],
            "name": [{"use": "official", "text": "dr. Alexander"}],
        },
    ]
    for pid, nik, name, gender, born in PATIENTS:
        out.append(
            {
                "resourceType": "Patient",
                "id": pid,
                "identifier": [
                    {"use": "official", "system": NIK, "value": nik},
                    {"use": "official", "system": IHS, "value": pid},
                ],
                "active": True,
                "name": [{"use": "official", "text": name}],
                "gender": gender,
                "birthDate": born,
            }
        )
    return out


SEEDS = _seeds()


@dataclass
class FhirFaults:
    """Trouble to inject into FHIR calls (not the token endpoint: ``sim.tokens.faults``)."""

    fail_next: int = 0  # calls answered fail_status before any work
    fail_status: int = 429
    retry_after: str | None = "1"  # with them
    drop_next: int = 0  # calls done, then the connection closed without an answer


@dataclass(frozen=True)
class Call:
    method: str
    path: str  # relative to the FHIR base, with the query
    status: int  # 0: dropped after the work
    headers: Mapping[str, str] = field(default_factory=dict)


class Refusal(Exception):
    """An answer other than success: a status and an OperationOutcome's issues."""

    def __init__(self, status: int, code: str, issues: Sequence[tuple[str, str | None]]) -> None:
        super().__init__(issues[0][0] if issues else code)
        self.status = status
        self.code = code
        self.issues = list(issues)  # (diagnostics, expression)


class FhirSimulator(SimulatorServer):
    inspect_path = RESOURCES_PATH
    default_path = FHIR_PATH

    def __init__(
        self,
        clients: Mapping[str, str],
        *,
        lifetime: float = 3600.0,
        seeds: Sequence[Mapping[str, Any]] = SEEDS,
        **issuer: Any,
    ) -> None:
        super().__init__()
        self.tokens = TokenIssuer(clients, lifetime=lifetime, **issuer)
        self.faults = FhirFaults()
        self.seeds = [copy.deepcopy(dict(s)) for s in seeds]
        self.resources: dict[str, dict[str, dict[str, Any]]] = {}
        self.calls: list[Call] = []
        self.lose_state()

    # --- what a test calls ------------------------------------------------------------

    def base_url(self) -> str:
        return self.url(FHIR_PATH)

    def token_url(self) -> str:
        return self.url(TOKEN_PATH) + "?grant_type=client_credentials"

    def expire_tokens(self) -> None:
        """Every token given out stops working now, earlier than it said."""
        self.tokens.expire_all()

    def lose_state(self) -> None:
        """Forget every resource but the seeded reference data."""
        self.resources = {}
        for seed in self.seeds:
            self.resources.setdefault(seed["resourceType"], {})[seed["id"]] = _stamped(
                copy.deepcopy(seed), 1
            )

    def of(self, kind: str) -> list[dict[str, Any]]:
        """The resources of one type it holds."""
        return list(self.resources.get(kind, {}).values())

    # --- handlers ---------------------------------------------------------------------

    async def _receive(self, request: web.Request) -> web.StreamResponse:
        if request.path == TOKEN_PATH:
            return await self.tokens.handle(request)
        if not (request.path == FHIR_PATH or request.path.startswith(FHIR_PATH + "/")):
            return _outcome(404, "not-found", [(f"no such endpoint {request.path}", None)])
        raw = request.rel_url.raw_query_string
        path = request.path[len(FHIR_PATH) :].lstrip("/") + (f"?{raw}" if raw else "")
        body = await request.read()
        faults = self.faults
        if not self._authorised(request):
            self.calls.append(Call(request.method, path, 401, dict(request.headers)))
            return _outcome(401, "login", [("a valid bearer token is required", None)])
        if faults.fail_next > 0:
            faults.fail_next -= 1
            self.calls.append(Call(request.method, path, faults.fail_status, dict(request.headers)))
            headers = {"Retry-After": faults.retry_after} if faults.retry_after else {}
            return _outcome(faults.fail_status, "throttled", [("too many requests", None)], headers)
        if self.fail_switch.fails():
            self.calls.append(Call(request.method, path, 503, dict(request.headers)))
            return _outcome(503, "transient", [(self.fail_switch.reason, None)])
        try:
            status, answer, headers = self._work(request.method, path, request.headers, body)
        except Refusal as exc:
            self.calls.append(Call(request.method, path, exc.status, dict(request.headers)))
            return _outcome(exc.status, exc.code, exc.issues)
        if faults.drop_next > 0 and request.transport is not None:
            faults.drop_next -= 1
            self.calls.append(Call(request.method, path, 0, dict(request.headers)))
            request.transport.close()  # done, and the client never hears of it
            return web.Response()
        self.calls.append(Call(request.method, path, status, dict(request.headers)))
        return web.Response(
            status=status,
            body=json.dumps(answer).encode(),
            headers=headers,
            content_type=FHIR_JSON,
        )

    async def _list(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({k: list(v.values()) for k, v in self.resources.items()})

    def _authorised(self, request: web.Request) -> bool:
        authorization = request.headers.get("Authorization", "")
        return authorization[:7].lower() == "bearer " and self.tokens.valid(authorization[7:])

    # --- the server's work --------------------------------------------------------------

    def _work(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        where, _, query = path.partition("?")
        parts = [p for p in where.split("/") if p]
        if method == "POST" and not parts:
            return self._transaction(_json(body))
        if not parts or not is_resource(parts[0]):
            raise Refusal(404, "not-supported", [(f"unknown resource type {where!r}", None)])
        kind = parts[0]
        if method == "GET" and len(parts) == 1:
            return 200, self._search(kind, query), {}
        if method == "GET" and len(parts) == 2:
            found = self.resources.get(kind, {}).get(parts[1])
            if found is None:
                raise Refusal(404, "not-found", [(f"{kind}/{parts[1]} is not known", None)])
            return 200, found, {}
        if method == "POST" and len(parts) == 1:
            resource = _json(body)
            self._check(kind, resource)
            condition = headers.get("If-None-Exist")
            if condition:
                matches = self._matches(kind, condition)
                if len(matches) == 1:
                    return 200, matches[0], {"Location": self._location(matches[0])}
                if len(matches) > 1:
                    raise Refusal(
                        412, "duplicate", [(f"{len(matches)} {kind} match {condition}", None)]
                    )
            created = self._store(kind, resource, new_id=True)
            return 201, created, {"Location": self._location(created)}
        if method == "PUT" and len(parts) == 2:
            resource = _json(body)
            if resource.get("id") != parts[1]:
                raise Refusal(
                    400, "invalid", [(f"the body's id is not {parts[1]!r}", f"{kind}.id")]
                )
            self._check(kind, resource)
            existed = parts[1] in self.resources.get(kind, {})
            stored = self._store(kind, resource, new_id=False)
            return (200 if existed else 201), stored, {"Location": self._location(stored)}
        raise Refusal(405, "not-supported", [(f"{method} {where} is not supported", None)])

    def _check(self, kind: str, resource: Any, known: Mapping[str, str] | None = None) -> None:
        if not isinstance(resource, dict) or resource.get("resourceType") != kind:
            raise Refusal(
                400, "invalid", [(f"the body is not a {kind} resource", f"{kind}.resourceType")]
            )
        found = problems(kind, resource)
        if found:
            raise Refusal(400, "structure", [(message, path) for path, message in found])
        missing = [
            (f"{ref} does not exist", path)
            for path, ref in _references(resource, kind)
            if not self._exists(ref, known or {})
        ]
        if missing:
            raise Refusal(400, "value", missing)

    def _exists(self, reference: str, known: Mapping[str, str]) -> bool:
        if reference.startswith("urn:uuid:"):
            return reference in known
        kind, _, rid = reference.partition("/")
        if not is_resource(kind) or "/" in rid:
            return True  # a reference it does not resolve (a URL, a contained one)
        return rid in self.resources.get(kind, {})

    def _store(self, kind: str, resource: dict[str, Any], new_id: bool) -> dict[str, Any]:
        held = self.resources.setdefault(kind, {})
        rid = str(uuid.uuid4()) if new_id else resource["id"]
        old = held.get(rid)
        version = int(old["meta"]["versionId"]) + 1 if old else 1
        stored = _stamped({**resource, "id": rid}, version)
        held[rid] = stored
        log.info("stored", extra={"resource": f"{kind}/{rid}", "version": version})
        return stored

    def _location(self, resource: Mapping[str, Any]) -> str:
        return (
            f"{self.base_url()}/{resource['resourceType']}/{resource['id']}"
            f"/_history/{resource['meta']['versionId']}"
        )

    def _matches(self, kind: str, query: str) -> list[dict[str, Any]]:
        params = parse_qsl(query, keep_blank_values=True)
        found = list(self.resources.get(kind, {}).values())
        for name, value in params:
            if name == "identifier":
                system, sep, code = value.rpartition("|") if "|" in value else ("", "", value)
                found = [r for r in found if _has_identifier(r, system if sep else None, code)]
            elif name == "_id":
                found = [r for r in found if r.get("id") == value]
            elif name in ("_count", "_format"):
                continue
            else:
                raise Refusal(400, "not-supported", [(f"unknown search parameter {name!r}", None)])
        return found

    def _search(self, kind: str, query: str) -> dict[str, Any]:
        found = self._matches(kind, query)
        return {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(found),
            "link": [{"relation": "self", "url": f"{self.base_url()}/{kind}?{query}"}],
            "entry": [
                {
                    "fullUrl": f"{self.base_url()}/{kind}/{r['id']}",
                    "resource": r,
                    "search": {"mode": "match"},
                }
                for r in found
            ],
        }

    def _transaction(self, bundle: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
        """A transaction Bundle: every entry or none (the state restored on a refusal)."""
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise Refusal(400, "invalid", [("POST to the base takes a Bundle", "Bundle")])
        if bundle.get("type") != "transaction":
            raise Refusal(400, "not-supported", [("only transaction Bundles", "Bundle.type")])
        self._check("Bundle", bundle, known={str(e.get("fullUrl")): "" for e in _entries(bundle)})
        saved = copy.deepcopy(self.resources)
        known: dict[str, str] = {}
        answers = []
        try:
            for i, entry in enumerate(_entries(bundle)):
                request = entry.get("request") or {}
                resource = _resolved(entry.get("resource") or {}, known)
                kind = str(resource.get("resourceType"))
                where = f"Bundle.entry[{i}]"
                try:
                    self._check(kind, resource, known)
                except Refusal as exc:
                    raise Refusal(
                        exc.status, exc.code, [(f"{where}: {m}", p) for m, p in exc.issues]
                    ) from None
                condition = request.get("ifNoneExist")
                matches = self._matches(kind, condition) if condition else []
                if len(matches) == 1:
                    stored, status = matches[0], "200 OK"
                elif request.get("method") == "PUT":
                    rid = str(request.get("url", "")).rpartition("/")[2]
                    stored = self._store(kind, {**resource, "id": rid}, new_id=False)
                    status = "200 OK"
                else:
                    stored, status = self._store(kind, resource, new_id=True), "201 Created"
                if entry.get("fullUrl"):
                    known[str(entry["fullUrl"])] = f"{kind}/{stored['id']}"
                answers.append({"response": {"status": status, "location": self._location(stored)}})
        except Refusal:
            self.resources = saved
            raise
        return 200, {"resourceType": "Bundle", "type": "transaction-response", "entry": answers}, {}


def _entries(bundle: Mapping[str, Any]) -> list[dict[str, Any]]:
    found = bundle.get("entry")
    return [e for e in found if isinstance(e, dict)] if isinstance(found, list) else []


def _resolved(resource: Any, known: Mapping[str, str]) -> Any:
    if isinstance(resource, dict):
        return {
            k: (known.get(v, v) if k == "reference" and isinstance(v, str) else _resolved(v, known))
            for k, v in resource.items()
        }
    if isinstance(resource, list):
        return [_resolved(v, known) for v in resource]
    return resource


def _references(node: Any, path: str) -> list[tuple[str, str]]:
    """(element path, reference) of every ``reference`` string in a resource."""
    out: list[tuple[str, str]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                out.append((f"{path}.reference", value))
            elif key not in ("resource", "contained"):  # a Bundle's entries: checked apart
                out += _references(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _references(value, f"{path}[{i}]")
    return out


def _has_identifier(resource: Mapping[str, Any], system: str | None, value: str) -> bool:
    found = resource.get("identifier")
    for identifier in found if isinstance(found, list) else [found]:
        if (
            isinstance(identifier, Mapping)
            and identifier.get("value") == value
            and (system is None or identifier.get("system") == system)
        ):
            return True
    return False


def _stamped(resource: dict[str, Any], version: int) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {**resource, "meta": {"versionId": str(version), "lastUpdated": now}}


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise Refusal(400, "structure", [("the body is not JSON", None)]) from None


def _outcome(
    status: int,
    code: str,
    issues: Sequence[tuple[str, str | None]],
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    document = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": code,
                "diagnostics": text,
                **({"expression": [where]} if where else {}),
            }
            for text, where in issues
        ],
    }
    return web.Response(
        status=status,
        body=json.dumps(document).encode(),
        headers=dict(headers or {}),
        content_type=FHIR_JSON,
    )


# --- as a process -------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m daemon.sim.fhir", description="FHIR R4 + OAuth2 simulator"
    )
    eventloop.add_argument(parser)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8083)
    parser.add_argument(
        "--client-id",
        default=os.environ.get("OUTBOXD_SIM_FHIR_CLIENT_ID"),
        help="the one client it knows (default: $OUTBOXD_SIM_FHIR_CLIENT_ID); its secret "
        "is $OUTBOXD_SIM_FHIR_CLIENT_SECRET",
    )
    parser.add_argument("--lifetime", type=float, default=3600.0, help="seconds a token lives")
    fail.add_argument(parser)
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> int:
    secret = os.environ.get("OUTBOXD_SIM_FHIR_CLIENT_SECRET")
    if not args.client_id or not secret:
        log.error("no client: give --client-id and $OUTBOXD_SIM_FHIR_CLIENT_SECRET")
        return 78
    sim = FhirSimulator({args.client_id: secret}, lifetime=args.lifetime)
    sim.fail_switch = FailSwitch(args.fail_switch, "sim-fhir")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await sim.start(args.host, args.port)
    log.info("listening", extra={"host": args.host, "port": sim.port})
    try:
        await stop.wait()
    finally:
        await sim.stop()
    log.info("stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    setup_logging("INFO", "text", "sim-fhir")
    return eventloop.run(_serve(args), args.event_loop)


if __name__ == "__main__":
    sys.exit(main())
