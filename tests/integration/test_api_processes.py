"""``/api/v1/processes`` against a real supervisord running real outboxd pollers
and a stand-in: every program's state and health, start/stop/restart for admins
with each in the audit, the answering process refused, supervisord gone → 503."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.integration.api_harness import Api, serve_api
from tests.integration.test_status import POLLERS, SLEEPER, running

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]  # supervisord and its programs


@pytest.fixture
async def suite_and_api(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[object, Api]]:
    with running(POLLERS, SLEEPER) as suite:
        monkeypatch.setenv("OUTBOXD_SUPERVISOR", str(suite.conf))
        roles = f"roles:\n  poller: {{base_port: {suite.poller_port}}}\n"
        async with serve_api(db_url, roles) as api:
            yield suite, api


async def _ready(api: Api) -> dict:
    import asyncio

    for _ in range(80):
        status, body, _ = await api.call("GET", "/api/v1/processes", role="viewer")
        assert status in (200, 503), body  # 503: supervisord not up yet
        if status == 200 and body["ready"]:
            return body
        await asyncio.sleep(0.5)
    raise AssertionError(body)


async def test_processes_their_health_and_an_admins_stop_and_start(suite_and_api):
    _, api = suite_and_api
    body = await _ready(api)
    programs = {p["name"]: p for p in body["items"]}
    assert set(programs) == {"outboxd:poller-0", "outboxd:poller-1", "sleeper"}
    poller = programs["outboxd:poller-0"]
    assert poller["state"] == "RUNNING" and poller["health"]["ready"] is True
    assert poller["role"] == "poller" and poller["process"] == 0
    assert programs["sleeper"]["health"] is None

    status, answer, _ = await api.call("POST", "/api/v1/processes/sleeper/stop", role="operator")
    assert status == 403
    status, answer, _ = await api.call("POST", "/api/v1/processes/sleeper/stop")
    assert status == 200 and answer["state"] == "STOPPED", answer
    status, body, _ = await api.call("GET", "/api/v1/processes")
    assert not body["ready"] and body["not_ready"] == ["sleeper"]
    status, answer, _ = await api.call("POST", "/api/v1/processes/sleeper/stop")
    assert status == 409 and "not running" in answer["detail"].lower(), answer
    status, answer, _ = await api.call("POST", "/api/v1/processes/sleeper/start")
    assert status == 200 and answer["state"] == "RUNNING"
    status, answer, _ = await api.call("POST", "/api/v1/processes/outboxd:poller-1/restart")
    assert status == 200 and answer["state"] == "RUNNING"
    status, answer, _ = await api.call("POST", "/api/v1/processes/nobody/start")
    assert status == 404 and "no program named 'nobody'" in answer["detail"]
    status, answer, _ = await api.call("POST", "/api/v1/processes/outboxd:control-0/stop")
    assert status == 409 and "supervisorctl" in answer["detail"]

    _, audit, _ = await api.call("GET", "/api/v1/audit")
    done = [(e["action"], e["target"], e["actor"]) for e in reversed(audit["items"])]
    assert done == [
        ("process.stop", "sleeper", "api:admin-token"),
        ("process.start", "sleeper", "api:admin-token"),
        ("process.restart", "outboxd:poller-1", "api:admin-token"),
    ]


async def test_no_supervisord_is_a_503(db_url: str, tmp_path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OUTBOXD_SUPERVISOR", f"unix://{tmp_path}/none.sock")
    async with serve_api(db_url) as api:
        status, body, response = await api.call("GET", "/api/v1/processes")
    assert status == 503 and response.content_type == "application/problem+json"
    assert "none.sock" in body["detail"]
