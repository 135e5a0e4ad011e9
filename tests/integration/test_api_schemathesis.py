"""``schemathesis run`` against the control API's own OpenAPI document and the
server over a real socket on 127.0.0.1, on SQLite and PostgreSQL: with the admin
token, every operation, positive and negative data, no 5xx and nothing the
document does not declare (status, content type, headers, the problem schema,
405 and ``Allow`` for undeclared methods); then, with no token, every protected
operation answers 401. Deterministic (schemathesis' deterministic generation, no
example database) and bounded (examples per operation)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, status_code_conformance

from daemon.api.app import ENDPOINTS
from daemon.domain.messages import Delivered, Failed, NewMessage
from tests.integration.api_harness import HL7, TOKENS, Api, serve_api
from tests.integration.test_api_messages import WEBHOOKS
from tests.integration.test_status import SLEEPER, running

pytestmark = pytest.mark.slow  # generated requests by the hundred

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
# Examples per operation and phase: the API layer is the same on both backends,
# PostgreSQL answers slower, so fewer there (the whole file stays under a minute).
EXAMPLES = {"sqlite": 10, "postgres": 4}
OPERATIONS = len(ENDPOINTS) - 1  # every route of the table but the document's own is tested
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "unsupported_method",
    "allow_header_conformance",
    "ignored_auth",
    "use_after_free",
    "ensure_resource_availability",
)


def _config(examples: int) -> str:
    """The run's settings; path parameters are drawn half the time from what the
    store holds: the file's schedule, one of the operator's own, the webhook, the
    first messages."""
    return f"""
workers = 1
continue-on-failure = true

[generation]
mode = "all"
max-examples = {examples}
deterministic = true
database = "none"

[auth.openapi.bearer]
bearer = "{TOKENS["admin"]}"

[dictionaries.names]
values = ["nightly", "sweep", "taxoffice", "sleeper"]

[dictionaries.ids]
values = [1, 2, 3, 4]

[dictionaries.bookings]
values = ["KB-1", "KB-404"]

[parameters]
"path.name" = {{ dictionary = "names", probability = 0.5 }}
"path.id" = {{ dictionary = "ids", probability = 0.5 }}
"path.kodebooking" = {{ dictionary = "bookings", probability = 0.5 }}

[checks.negative_data_rejection]
expected-statuses = [400, 401, 403, 404, 405, 409, 413, 415]
"""


@pytest.fixture
async def api(db_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Api]:
    with running(SLEEPER) as suite:  # a real supervisord for /api/v1/processes
        monkeypatch.setenv("OUTBOXD_SUPERVISOR", str(suite.conf))
        async with serve_api(db_url, WEBHOOKS) as api:
            yield await _filled(api)


async def _filled(api: Api) -> Api:
    store = api.control.store
    await store.enqueue_many(
        [NewMessage("hie", "MSG0001", HL7.encode())]
        + [NewMessage("hook", f"h{i}", b'{"n": %d}' % i) for i in range(5)],
        actor="test",
    )
    await store.sync_visits("khanza", {"KB-1": {"add": {"status": "queued"}}}, [])
    claimed = await store.claim(["hook"], "w", 2, 60)
    await store.record("w", [Delivered(claimed[0].id, "{}"), Failed(claimed[1].id, "no")])
    status, body, _ = await api.call(
        "POST", "/api/v1/schedules",
        json={"name": "sweep", "definition": {
            "every": "1h", "job": "http", "options": {"url": "http://127.0.0.1:9/x"}}},
    )  # fmt: skip
    assert status == 201, body
    for _ in range(100):  # supervisord up, its sleeper started
        status, body, _ = await api.call("GET", "/api/v1/processes")
        if status == 200 and body["ready"]:
            break
        await asyncio.sleep(0.1)
    return api


@pytest.mark.timeout(900)
async def test_schemathesis_run_finds_no_server_error_and_nothing_undeclared(
    api: Api, db_url: str, tmp_path: Path
):
    config = tmp_path / "schemathesis.toml"
    config.write_text(_config(EXAMPLES["sqlite" if db_url.startswith("sqlite") else "postgres"]))
    run = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS), "--config-file", str(config), "--no-color", "run",
        f"{api.base}/api/v1/openapi.json", "--checks", ",".join(CHECKS),
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(run.communicate(), 600)  # minutes on a loaded machine
    report = out.decode(errors="replace")
    assert run.returncode == 0, report[-30_000:]
    assert f"{OPERATIONS} selected / {OPERATIONS} total" in report, report


def _probe_without_a_token(document: str, base: str) -> list[str]:
    """Each operation with generated data and no Authorization header: a protected
    one answers 401, none a 5xx, each as its document says."""
    schema = schemathesis.openapi.from_url(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == OPERATIONS
    wrong: list[str] = []
    for operation in operations:
        _probe(operation, base, wrong)
    return wrong


def _probe(operation: schemathesis.APIOperation, base: str, wrong: list[str]) -> None:
    protected = operation.definition.raw.get("security") != []

    @hypothesis.settings(
        max_examples=5, derandomize=True, database=None, deadline=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )  # fmt: skip
    @hypothesis.given(case=operation.as_strategy())
    def probe(case: schemathesis.Case) -> None:
        response = case.call(base_url=base, timeout=10)
        if protected and response.status_code != 401:
            wrong.append(f"{case.method} {case.formatted_path}: {response.status_code}")
        case.validate_response(
            response, checks=[not_a_server_error, status_code_conformance, content_type_conformance]
        )

    probe()


# the token is checked before a request reaches the store: one backend says it
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_without_a_token_every_protected_operation_is_a_401(api: Api):
    wrong = await asyncio.to_thread(
        _probe_without_a_token, f"{api.base}/api/v1/openapi.json", api.base
    )
    assert wrong == []
