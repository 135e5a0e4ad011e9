"""The control API over a real socket on 127.0.0.1, on SQLite and PostgreSQL: the
OpenAPI document against the routes, auth by role, problems that name the field,
ETags, enqueue, schedules and the audit."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pydantic
import pytest

from daemon.api.app import ENDPOINTS, build_app
from daemon.domain import limits
from daemon.domain.clock import utcnow
from daemon.operator.requests import ActionIn, FilterIn, MessageIn, PauseIn
from tests.integration.api_harness import HL7, Api, serve_api


@pytest.fixture
async def api(db_url: str) -> AsyncIterator[Api]:
    async with serve_api(db_url) as api:
        yield api


# --- the document ---------------------------------------------------------------------


async def test_the_openapi_document_names_every_route_and_only_those(api: Api):
    status, doc, _ = await api.call("GET", "/api/v1/openapi.json", role=None)
    assert status == 200 and doc["openapi"].startswith("3.1")
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    app = build_app(api.control, 1024)
    routed = {
        (r.method, r.resource.canonical)  # type: ignore[union-attr]
        for r in app.router.routes()
        if r.method != "HEAD" and r.resource.canonical.startswith(("/api/", "/webhooks/"))  # type: ignore[union-attr]
    }
    assert documented == routed
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            needs = next(e.role for e in ENDPOINTS if e.path == path and e.method == method.upper())
            if needs is None:
                assert op["security"] == []
            else:
                assert {"401", "403"} <= set(op["responses"]), (method, path)
            for name in (p["name"] for p in op.get("parameters", []) if p["in"] == "path"):
                assert "{" + name + "}" in path


async def test_a_request_body_in_the_document_is_its_models_schema_with_the_shared_bounds(
    api: Api,
):
    """The document shows the JSON Schema of the pydantic models that check the
    bodies, whose bounds are daemon.domain.limits'."""
    _, doc, _ = await api.call("GET", "/api/v1/openapi.json", role=None)
    schemas = doc["components"]["schemas"]
    template = "#/components/schemas/{model}"

    def body(method: str, path: str) -> dict:
        return doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]

    def own(model: type[pydantic.BaseModel]) -> dict:
        schema = json.loads(json.dumps(model.model_json_schema(ref_template=template)))
        schema.pop("$defs", None)
        return schema

    assert body("post", "/api/v1/messages/retry") == own(ActionIn)
    assert body("post", "/api/v1/schedules/{name}/pause") == own(PauseIn)
    enqueue = body("post", "/api/v1/messages")["anyOf"]
    assert enqueue == [{"$ref": template.format(model=m)} for m in ("MessageIn", "BatchIn")]
    assert schemas["MessageIn"] == own(MessageIn) and schemas["FilterIn"] == own(FilterIn)
    message = schemas["MessageIn"]["properties"]
    assert message["channel"]["maxLength"] == limits.NAME_MAX
    assert message["channel"]["pattern"] == f"^{limits.NAME_PATTERN}$"
    assert message["key"]["maxLength"] == limits.KEY_MAX
    assert schemas["BatchIn"]["properties"]["messages"]["maxItems"] == limits.MAX_BATCH
    [ids, _] = body("post", "/api/v1/messages/retry")["properties"]["ids"]["anyOf"]
    assert ids["maxItems"] == limits.MAX_IDS and ids["items"]["maximum"] == limits.MAX_ID


# --- auth ------------------------------------------------------------------------------


async def test_no_token_is_401_with_a_challenge_and_a_wrong_one_too(api: Api):
    status, body, response = await api.call("GET", "/api/v1/stats", role=None)
    assert status == 401
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="outboxd"')
    assert response.content_type == "application/problem+json"
    assert body["status"] == 401 and "Authorization" in body["detail"]
    status, body, response = await api.call(
        "GET", "/api/v1/stats", role=None, headers={"Authorization": "Bearer obx_nope"}
    )
    assert status == 401 and 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert "obx_nope" not in json.dumps(body)


WRITES = [
    ("POST", "/api/v1/messages", {"channel": "hook", "key": "k-{role}", "payload": {"a": 1}},
     "operator"),
    ("POST", "/api/v1/schedules/nightly/pause", {"note": "maintenance"}, "operator"),
    ("POST", "/api/v1/schedules/nightly/resume", None, "operator"),
    ("POST", "/api/v1/schedules/nightly/run", None, "operator"),
    ("POST", "/api/v1/schedules", {"name": "mine-{role}", "definition": {
        "every": "1h", "job": "http", "options": {"url": "http://127.0.0.1:9/x"}}}, "admin"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body", "needs"), WRITES)
@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
async def test_each_write_needs_its_role(api: Api, role, method, path, body, needs):
    order = ["viewer", "operator", "admin"]
    payload = json.loads(json.dumps(body).replace("{role}", role)) if body is not None else None
    status, answer, _ = await api.call(method, path, role=role, json=payload)
    if order.index(role) < order.index(needs):
        assert status == 403, answer
        assert f"needs the {needs} role" in answer["detail"] and role in answer["detail"]
        _, audit, _ = await api.call("GET", "/api/v1/audit")
        assert audit["items"] == []  # nothing done, nothing recorded
    else:
        assert status in (200, 201, 202), answer


async def test_every_read_is_open_to_a_viewer(api: Api):
    await api.control.store.sync_visits("khanza", {"KB-9": {"add": {"status": "queued"}}}, [])
    for path in ("/api/v1/stats", "/api/v1/audit", "/api/v1/schedules",
                 "/api/v1/schedules/nightly", "/api/v1/schedules/nightly/runs",
                 "/api/v1/visits/KB-9", "/api/v1/notifications"):  # fmt: skip
        status, body, _ = await api.call("GET", path, role="viewer")
        assert status == 200, (path, body)


# --- problems --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "field", "says"),
    [
        ("/api/v1/stats?windw=60", "windw", "unknown query parameter 'windw'"),
        ("/api/v1/stats?window=abc", "window", "is not a whole number"),
        ("/api/v1/stats?window=1", "window", "outside 60"),
        ("/api/v1/audit?limit=501", "limit", "outside 1..500"),
        ("/api/v1/schedules/nightly/runs?status=bogus", "status", "not one of"),
    ],
)
async def test_a_bad_parameter_is_a_400_naming_it(api: Api, path, field, says):
    status, body, response = await api.call("GET", path, role="viewer")
    assert status == 400 and response.content_type == "application/problem+json"
    assert body["field"] == field and says in body["detail"]


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("GET", "/api/v1/visits/K%00B", "kodebooking"),
        ("GET", "/api/v1/visits/" + "K" * 65, "kodebooking"),
        ("GET", "/api/v1/schedules/a%00b", "name"),
        ("GET", "/api/v1/schedules/a%00b/runs", "name"),
        ("POST", "/api/v1/schedules/a%00b/pause", "name"),
        ("POST", "/api/v1/processes/outboxd:a%00b/restart", "name"),
        ("POST", "/webhooks/a%00b", "name"),
    ],
)
async def test_a_path_parameter_that_cannot_be_one_is_a_400_not_a_500(
    api: Api, method, path, field
):
    """PostgreSQL refuses a NUL in text: one in the path is refused before the store."""
    status, body, response = await api.call(method, path, json={})
    assert status == 400, body
    assert response.content_type == "application/problem+json" and body["field"] == field


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"channel": "hook", "key": "a", "payload": "{}", "prio": 1}, "prio", "unknown field"),
        ({"channel": "hook", "payload": "{}"}, "key", "required"),
        ({"channel": "nosuch", "key": "a", "payload": "x"}, "channel", "unknown channel 'nosuch'"),
        ({"channel": "hie", "key": "a", "payload": "not hl7"}, "payload", "MSH"),
        ({"channel": "hook", "key": "a", "payload": ""}, "payload", "empty"),
        ({"channel": "hook", "key": 7, "payload": "x"}, "key", "string"),
        ({"messages": [{"channel": "hook", "key": "a", "payload": {}}, {"channel": "hook"}]},
         "messages[1].key", "required"),
        ({"messages": []}, "messages", "at least 1"),
        ([1, 2], None, "expected a JSON object"),
    ],
)  # fmt: skip
async def test_a_bad_message_is_a_400_naming_the_field_and_stores_nothing(
    api: Api, body, field, says
):
    status, answer, _ = await api.call("POST", "/api/v1/messages", role="operator", json=body)
    assert status == 400, answer
    assert answer.get("field") == field and says in answer["detail"], answer
    _, stats, _ = await api.call("GET", "/api/v1/stats")
    assert all(sum(c["counts"].values()) == 0 for c in stats["channels"])


async def test_not_json_too_large_and_wrong_type_are_problems(api: Api):
    status, body, _ = await api.call(
        "POST", "/api/v1/messages", data=b"{oops", headers={"Content-Type": "application/json"}
    )
    assert status == 400 and "not JSON" in body["detail"]
    status, body, _ = await api.call("POST", "/api/v1/messages", data=b"x=1")
    assert status == 415
    big = {"channel": "hook", "key": "big", "payload": "x" * 70_000}
    status, body, _ = await api.call("POST", "/api/v1/messages", json=big)
    assert status == 413 and "larger than" in body["detail"]
    status, body, _ = await api.call("GET", "/api/v1/nothing-here")
    assert status == 404 and body["title"] == "Not Found"
    status, body, response = await api.call("DELETE", "/api/v1/stats")
    assert status == 405 and "GET" in response.headers["Allow"]


# --- enqueue and stats -----------------------------------------------------------------


async def test_enqueue_one_then_a_batch_idempotent_on_the_key(api: Api):
    status, body, _ = await api.call(
        "POST", "/api/v1/messages", role="operator",
        json={"channel": "hie", "key": "MSG0001", "payload": HL7},
    )  # fmt: skip
    assert status == 201
    [first] = body["items"]
    assert first["created"] is True and first["status"] == "pending"
    batch = {"messages": [
        {"channel": "hie", "key": "MSG0001", "payload": HL7},
        {"channel": "hook", "key": "h1", "payload": {"visit": 1}},
        {"channel": "hook", "key": "h2", "payload": "[1, 2]", "after": "h1"},
    ]}  # fmt: skip
    status, body, _ = await api.call("POST", "/api/v1/messages", role="operator", json=batch)
    assert status == 201
    assert [i["created"] for i in body["items"]] == [False, True, True]
    assert body["items"][0]["id"] == first["id"]
    status, body, _ = await api.call("POST", "/api/v1/messages", role="operator", json=batch)
    assert status == 200 and not any(i["created"] for i in body["items"])
    _, stats, _ = await api.call("GET", "/api/v1/stats")
    counts = {c["channel"]: c["counts"]["pending"] for c in stats["channels"]}
    assert counts == {"hie": 1, "hook": 2}


async def test_stats_answer_304_while_nothing_changed(api: Api):
    status, _, response = await api.call("GET", "/api/v1/stats")
    tag = response.headers["ETag"]
    status, body, _ = await api.call("GET", "/api/v1/stats", headers={"If-None-Match": tag})
    assert status == 304 and body is None
    await api.call("POST", "/api/v1/messages", json={"channel": "hook", "key": "n", "payload": {}})
    status, _, response = await api.call("GET", "/api/v1/stats", headers={"If-None-Match": tag})
    assert status == 200 and response.headers["ETag"] != tag


async def test_stats_answer_304_while_a_message_waits_and_only_its_age_moves(api: Api):
    await api.call("POST", "/api/v1/messages", json={"channel": "hook", "key": "w", "payload": {}})
    _, first, response = await api.call("GET", "/api/v1/stats")
    tag = response.headers["ETag"]
    assert tag.startswith('W/"')  # a weak tag: the age moves by itself
    (hook,) = [c for c in first["channels"] if c["channel"] == "hook"]
    since = datetime.fromisoformat(hook["oldest_pending_since"])
    assert abs((utcnow() - since).total_seconds() - hook["oldest_pending_age_seconds"]) < 5
    await asyncio.sleep(0.05)
    _, second, _ = await api.call("GET", "/api/v1/stats")
    (later,) = [c for c in second["channels"] if c["channel"] == "hook"]
    assert later["oldest_pending_age_seconds"] > hook["oldest_pending_age_seconds"]
    status, body, _ = await api.call("GET", "/api/v1/stats", headers={"If-None-Match": tag})
    assert status == 304 and body is None
    # the weak tag is compared weakly: sent back without its W/ it still matches
    status, _, _ = await api.call("GET", "/api/v1/stats", headers={"If-None-Match": tag[2:]})
    assert status == 304
    await api.call("POST", "/api/v1/messages", json={"channel": "hook", "key": "x", "payload": {}})
    status, _, response = await api.call("GET", "/api/v1/stats", headers={"If-None-Match": tag})
    assert status == 200 and response.headers["ETag"] != tag


async def test_a_visit_shows_its_task_progress_as_the_cli_does(api: Api):
    store = api.control.store
    progress = {
        "add": {"status": "sent", "sent_at": "2026-11-23T01:00:00+00:00"},
        "4": {"status": "held", "reason": "task 4 at 08:01 is earlier than task 3 at 08:05"},
    }
    await store.sync_visits("khanza", {"KB-1": progress}, [])
    await store.sync_visits("other", {"KB-1": {"add": {"status": "queued"}}}, [])
    status, body, response = await api.call("GET", "/api/v1/visits/KB-1", role="viewer")
    assert status == 200 and [v["source"] for v in body["items"]] == ["khanza", "other"]
    assert body["items"][0]["task_progress"] == progress
    assert body["items"][0]["kodebooking"] == "KB-1"
    tag = response.headers["ETag"]
    status, _, _ = await api.call("GET", "/api/v1/visits/KB-1", headers={"If-None-Match": tag})
    assert status == 304
    status, body, _ = await api.call("GET", "/api/v1/visits/KB-1?source=other")
    assert status == 200 and [v["source"] for v in body["items"]] == ["other"]
    status, body, response = await api.call("GET", "/api/v1/visits/KB-404")
    assert status == 404 and response.content_type == "application/problem+json"
    assert "no visit with kodebooking 'KB-404'" in body["detail"]
    status, body, _ = await api.call("GET", "/api/v1/visits/KB-1?source=nosuch")
    assert status == 404 and "from source 'nosuch'" in body["detail"]
    status, body, _ = await api.call("GET", "/api/v1/visits/KB-1?sourec=other")
    assert status == 400 and body["field"] == "sourec"
    status, body, _ = await api.call("GET", "/api/v1/visits/" + "K" * 65)
    assert status == 400 and body["field"] == "kodebooking"
    status, _, _ = await api.call("GET", "/api/v1/visits/KB-1", role=None)
    assert status == 401


# --- schedules -------------------------------------------------------------------------


async def test_schedules_create_edit_pause_run_backfill_and_delete(api: Api):
    definition = {"every": "1h", "job": "http", "options": {"url": "http://127.0.0.1:9/x"}}
    status, body, response = await api.call(
        "POST", "/api/v1/schedules", json={"name": "sweep", "definition": definition}
    )
    assert status == 201 and response.headers["Location"] == "/api/v1/schedules/sweep"
    assert body["origin"] != "file" and len(body["next"]) == 5
    status, body, _ = await api.call(
        "POST", "/api/v1/schedules", json={"name": "sweep", "definition": definition}
    )
    assert status == 409 and "exists" in body["detail"]
    status, body, _ = await api.call("PATCH", "/api/v1/schedules/sweep", json={"every": "2h"})
    assert status == 200 and body["definition"]["every"] == 7200
    status, body, _ = await api.call("PATCH", "/api/v1/schedules/sweep", json={"overlap": "x"})
    assert status == 400 and "overlap" in body["detail"]
    status, body, _ = await api.call("POST", "/api/v1/schedules/sweep/pause", json={})
    assert status == 400 and body["field"] == "note"
    status, body, _ = await api.call(
        "POST", "/api/v1/schedules/sweep/pause", role="operator", json={"note": "partner down"}
    )
    assert status == 200 and body["paused"] and body["pause_note"] == "partner down"
    assert body["paused_by"] == "api:operator-token"
    status, body, _ = await api.call("POST", "/api/v1/schedules/sweep/run", role="operator")
    assert status == 202 and "paused" in body["starts"]
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    window = {"from": (now - timedelta(hours=6)).isoformat(), "until": now.isoformat()}
    status, body, _ = await api.call(
        "POST", "/api/v1/schedules/sweep/backfill", json={**window, "dry_run": True}
    )
    fires = 4 if now.hour % 2 == 0 else 3  # every 2h from the epoch: even hours, both ends in
    assert status == 200 and body == {"fires": fires, "queued": 0, "dry_run": True}
    status, body, _ = await api.call("POST", "/api/v1/schedules/sweep/backfill", json=window)
    assert status == 202 and body["queued"] == body["fires"] == fires
    status, body, _ = await api.call("POST", "/api/v1/schedules/sweep/backfill", json=window)
    assert status == 202 and body["queued"] == 0 and body["already"] == body["fires"]
    future = {"from": now.isoformat(), "until": (now + timedelta(days=1)).isoformat()}
    status, body, _ = await api.call("POST", "/api/v1/schedules/sweep/backfill", json=future)
    assert status == 400 and body["field"] == "until" and "future" in body["detail"]
    status, body, _ = await api.call("GET", "/api/v1/schedules/sweep/runs?status=queued")
    assert status == 200 and body["items"] and {r["status"] for r in body["items"]} == {"queued"}
    status, body, _ = await api.call("POST", "/api/v1/schedules/sweep/resume", role="operator")
    assert status == 200 and not body["paused"]
    status, _, _ = await api.call("DELETE", "/api/v1/schedules/sweep")
    assert status == 204
    status, body, _ = await api.call("GET", "/api/v1/schedules/sweep")
    assert status == 404 and "no schedule named 'sweep'" in body["detail"]
    _, audit, _ = await api.call("GET", "/api/v1/audit")
    done = [(e["action"], e["actor"]) for e in reversed(audit["items"])]
    assert done == [
        ("schedule.add", "api:admin-token"),
        ("schedule.edit", "api:admin-token"),
        ("schedule.pause", "api:operator-token"),
        ("schedule.manual", "api:operator-token"),
        ("schedule.backfill", "api:admin-token"),
        ("schedule.backfill", "api:admin-token"),  # the second queued none: recorded too
        ("schedule.resume", "api:operator-token"),
        ("schedule.remove", "api:admin-token"),
    ]


async def test_a_run_is_cancelled_at_once_when_queued_and_by_its_scheduler_when_running(api: Api):
    store = api.control.store
    row = await store.schedule("nightly")
    [queued] = await store.queue_runs(row.id, [row.updated_at], "manual")
    path = f"/api/v1/schedules/nightly/runs/{queued}/cancel"
    status, body, _ = await api.call("POST", path, role="viewer")
    assert status == 403
    status, body, _ = await api.call("POST", path, role="operator", json={"note": "not now"})
    assert status == 200, body
    assert body["run"]["status"] == "cancelled" and body["run"]["error"] == (
        "cancelled by api:operator-token: not now")  # fmt: skip
    assert body["said"] == f"run {queued} of nightly cancelled (it had not started)"
    running = await store.claim_fire(row.id, row.updated_at.replace(year=2030), "cron", "s1", 60,
                                     "skip")  # fmt: skip
    status, body, _ = await api.call(  # no body: no note
        "POST", f"/api/v1/schedules/nightly/runs/{running.id}/cancel", role="operator"
    )
    assert status == 202 and body["run"]["status"] == "running"
    assert body["run"]["cancel_requested"]["by"] == "api:operator-token"
    assert [r.id for r in await store.cancel_requests("s1", [running.id])] == [running.id]
    status, body, _ = await api.call("POST", path, role="operator")
    assert status == 409 and "only a queued or running run can be cancelled" in body["detail"]
    assert body["field"] == "run"
    for wrong, code in (("/api/v1/schedules/nightly/runs/999999/cancel", 404),
                        ("/api/v1/schedules/ghost/runs/1/cancel", 404),
                        ("/api/v1/schedules/nightly/runs/x/cancel", 400)):  # fmt: skip
        status, body, _ = await api.call("POST", wrong, role="operator")
        assert status == code, (wrong, body)
    status, body, _ = await api.call("POST", path, role="operator", json={"reason": "x"})
    assert status == 400 and body["field"] == "reason"
    _, audit, _ = await api.call("GET", "/api/v1/audit")
    assert [a["action"] for a in audit["items"]].count("run.cancel") == 2


async def test_notifications_are_listed_a_page_at_a_time_with_filters(api: Api):
    store = api.control.store
    for i in range(3):
        await store.record_notification("run_failed:nightly", "nightly", "firing",
                                        "mail" if i else "hook", i != 1, f"answer {i}",
                                        title=f"alert {i}", text=f"text {i}")  # fmt: skip
    await store.record_notification("run_failed:nightly", "nightly", "resolved", "mail", True,
                                    "250", title="resolved", text="resolved: …")  # fmt: skip
    status, body, response = await api.call("GET", "/api/v1/notifications?limit=2", role="viewer")
    assert status == 200 and [n["title"] for n in body["items"]] == ["resolved", "alert 2"]
    assert set(body["items"][0]) == {"id", "at", "rule", "subject", "event", "target", "ok",
                                      "answer", "title", "text"}  # fmt: skip
    status, more, _ = await api.call("GET", f"/api/v1/notifications?limit=2&before={body['next']}")
    assert [n["title"] for n in more["items"]] == ["alert 1", "alert 0"]
    _, failed, _ = await api.call("GET", "/api/v1/notifications?ok=false")
    assert [n["answer"] for n in failed["items"]] == ["answer 1"]
    _, firing, _ = await api.call("GET", "/api/v1/notifications?event=firing&target=hook")
    assert [n["title"] for n in firing["items"]] == ["alert 0"]
    tag = response.headers["ETag"]
    status, _, _ = await api.call(
        "GET", "/api/v1/notifications?limit=2", headers={"If-None-Match": tag}
    )
    assert status == 304
    status, body, _ = await api.call("GET", "/api/v1/notifications?event=gone")
    assert status == 400 and body["field"] == "event"


async def test_the_files_schedule_cannot_be_taken_over_or_removed(api: Api):
    definition = {"every": "1h", "job": "purge", "options": {"messages_older_than": "1d"}}
    status, body, _ = await api.call(
        "POST", "/api/v1/schedules", json={"name": "nightly", "definition": definition}
    )
    assert status == 400 and body["field"] == "name" and "the file's" in body["detail"]
    status, body, _ = await api.call("DELETE", "/api/v1/schedules/nightly")
    assert status == 409 and "YAML file" in body["detail"]
    status, body, _ = await api.call(
        "POST", "/api/v1/schedules", json={"name": "9bad", "definition": definition}
    )
    assert status == 400 and body["field"] == "name"
    status, body, _ = await api.call(
        "POST", "/api/v1/schedules",
        json={"name": "x", "definition": {"every": "1h", "job": "status_check", "options": {
            "channel": "nosuch", "url": "http://127.0.0.1:9/{key}",
            "statuses": {"OK": "confirmed"}}}},
    )  # fmt: skip
    assert status == 400 and "nosuch" in body["detail"]


# --- found by schemathesis (tests/integration/test_api_schemathesis.py) ------------------


@pytest.mark.parametrize(
    ("path", "data", "content_type"),
    [
        ("/api/v1/messages", b"\x10i\xf9\xa5\x85", "application/json"),
        ("/api/v1/messages/cancel", b'{"ids": [1]}\xff', "application/json"),
        ("/api/v1/schedules", b"\xec\x1c", "application/json"),
        ("/api/v1/schedules/nightly/backfill", b"\xa5\x1c\n1", "application/json"),
        ("/api/v1/messages", b'{"channel": "hook"}', "application/json; charset=nope"),
    ],
)
async def test_a_body_not_in_its_charset_is_a_400_not_a_500(api: Api, path, data, content_type):
    status, body, response = await api.call(
        "POST", path, data=data, headers={"Content-Type": content_type}
    )
    assert status == 400, body
    assert response.content_type == "application/problem+json"
    assert "not JSON text" in body["detail"]


async def test_a_wrong_method_on_a_fixed_sibling_of_an_id_route_is_a_405(api: Api):
    for action in ("retry", "cancel", "resend"):
        status, body, response = await api.call("GET", f"/api/v1/messages/{action}")
        assert status == 405, body  # was a 400 from GET /api/v1/messages/{id}
        assert response.headers["Allow"] == "POST"
        status, _, response = await api.call("OPTIONS", f"/api/v1/messages/{action}")
        assert status == 405 and response.headers["Allow"] == "POST"
    status, body, _ = await api.call("GET", "/api/v1/messages/abc")
    assert status == 400 and body["field"] == "id"


@pytest.mark.parametrize(
    ("query", "field", "says"),
    [
        ("cursor=", "cursor", "empty"),
        ("kind=" + "k" * 65, "kind", "too long"),
        ("key=" + "k" * 256 + "&channel=hook", "key", "too long"),
        ("status=" + ",".join(["pending"] * 8), "status", "at most 7"),
    ],
)
async def test_a_listing_parameter_out_of_its_documented_bounds_is_a_400(
    api: Api, query, field, says
):
    status, body, _ = await api.call("GET", f"/api/v1/messages?{query}")
    assert status == 400 and body["field"] == field and says in body["detail"], body


async def test_the_document_says_what_the_server_answers(api: Api):
    _, doc, _ = await api.call("GET", "/api/v1/openapi.json", role=None)
    paths = doc["paths"]
    assert "content" not in paths["/api/v1/schedules/{name}"]["delete"]["responses"]["204"]
    pause = paths["/api/v1/schedules/{name}/pause"]["post"]["requestBody"]
    assert pause["content"]["application/json"]["schema"]["required"] == ["note"]
    retry = paths["/api/v1/messages/retry"]["post"]["requestBody"]
    action = retry["content"]["application/json"]["schema"]["properties"]
    assert all({"type": "null"} in action[name]["anyOf"] for name in ("filter", "ids"))
    status, body, _ = await api.call(
        "POST", "/api/v1/messages/retry", json={"ids": [1], "filter": None}
    )
    assert status == 200, body  # null is leaving it out, as the document says
    listing = {p["name"]: p["schema"] for p in paths["/api/v1/messages"]["get"]["parameters"]}
    assert listing["cursor"]["maxLength"] == 200 and listing["status"]["maxItems"] == 7
    # the longest request the document allows fits aiohttp's 8190-byte request line
    longest = sum(  # a 4-byte character is 12 in the URL, unless a pattern keeps it ASCII
        len(name) + 2 + schema["maxLength"] * (1 if "pattern" in schema else 12)
        for name, schema in listing.items()
        if schema.get("type") == "string"
    )
    assert longest + len("&status=confirmed") * 7 + len("GET /api/v1/messages?&limit=500") < 8190
    # a longer line is refused by the HTTP parser itself, as text: declared too
    bad = paths["/api/v1/messages"]["get"]["responses"]["400"]["content"]
    assert set(bad) == {"application/problem+json", "text/plain"}
    async with api.session.get(f"{api.base}/api/v1/messages?kind={'k' * 9000}") as response:
        assert response.status == 400 and response.content_type == "text/plain"


async def test_a_schedule_that_never_fires_is_a_400_naming_its_cron(api: Api):
    says = "not a valid schedule: cron: invalid cron expression '0 0 30 2 *': it never fires"
    definition = {"cron": "0 0 30 2 *", "job": "http", "options": {"url": "http://127.0.0.1:9/x"}}
    status, body, _ = await api.call(
        "POST", "/api/v1/schedules", json={"name": "feb30", "definition": definition}
    )
    assert status == 400 and body["detail"].startswith(says), body
    definition["cron"] = "0 0 L 2 *"  # the last day of February
    status, body, _ = await api.call(
        "POST", "/api/v1/schedules", json={"name": "feb30", "definition": definition}
    )
    assert status == 201 and body["next"][0]["local"][5:10] in ("02-28", "02-29")
    status, body, _ = await api.call(
        "PATCH", "/api/v1/schedules/feb30", json={"cron": "0 0 30 2 *"}
    )
    assert status == 400 and body["detail"].startswith(says), body
