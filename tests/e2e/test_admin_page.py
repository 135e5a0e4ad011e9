"""The admin page in headless Chromium against the control app on a real store:
sign in, filter the table, open a timeline, retry the selected after the dry
run's count, and find the action in the audit. A screenshot of each step is kept
under ``var/test-artifacts/`` (``OUTBOXD_ARTIFACTS`` to put them elsewhere)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from daemon.config.database import DatabaseSettings
from daemon.domain.messages import Failed, NewMessage
from daemon.store.db import open_database
from daemon.store.migrations import migrate
from tests.integration.api_harness import TOKENS, Api, serve_api
from tests.services import unavailable

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(
    os.environ.get("OUTBOXD_ARTIFACTS", Path(__file__).resolve().parents[2] / "var/test-artifacts")
)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    url = f"sqlite:///{tmp_path}/outbox.db"
    database = open_database(DatabaseSettings(url=url))
    migrate(database)
    database.close()
    async with serve_api(url) as api:
        yield api


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        unavailable("playwright", "not installed", "pip install -e '.[test]' (make test does)")
    if not CHROMIUM.exists():
        unavailable("chromium", f"no {CHROMIUM}", "apt-get install chromium (.ci/run does)")
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"],
        )  # fmt: skip
        yield browser
        await browser.close()


async def _failed_messages(api: Api, n: int) -> list[int]:
    store = api.control.store
    await store.enqueue_many(
        [NewMessage("hook", f"visit-{i}", b'{"visit": %d}' % i) for i in range(n)], actor="test"
    )
    await store.enqueue_many([NewMessage("hook", "other", b"{}")], actor="test")
    claimed = [c for c in await store.claim(["hook"], "w", 100, 60) if c.key != "other"]
    await store.record("w", [Failed(c.id, "HTTP 500 from the partner") for c in claimed])
    return sorted(c.id for c in claimed)


async def test_filter_open_a_timeline_retry_the_selected_and_see_the_audit(api: Api, browser):
    from playwright.async_api import expect

    ids = await _failed_messages(api, 3)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await page.goto(api.base + "/")

    await page.get_by_label("Token").fill(TOKENS["operator"])
    await page.get_by_role("button", name="Sign in").click()
    badge = page.locator('.badge[data-channel="hook"]')
    await badge.wait_for()
    assert "failed" in await badge.inner_text() and "3" in await badge.inner_text()
    await page.screenshot(path=str(ARTIFACTS / "admin-overview.png"), full_page=True)

    await page.get_by_role("link", name="Messages").click()
    await page.locator("#filters select[name=status]").select_option("failed")
    await page.get_by_role("button", name="Filter").click()
    rows = page.locator("#message-table tbody tr")
    await expect(rows).to_have_count(3)
    shown = [int(await r.get_attribute("data-id") or 0) for r in await rows.all()]
    assert sorted(shown) == ids

    await page.get_by_role("button", name=str(ids[0]), exact=True).click()
    timeline = page.locator("#timeline")
    await timeline.get_by_text("HTTP 500 from the partner").wait_for()
    assert "attempt 1 failed for good: HTTP 500" in await timeline.inner_text()

    for message_id in ids[:2]:
        await page.get_by_label(f"select message {message_id}").check()
    await page.get_by_role("button", name="Retry selected").click()
    confirm = page.locator("#confirm-text")
    await confirm.wait_for()
    words = await confirm.inner_text()
    assert words.startswith("Retry the 2 selected message(s): 2 message(s) will be made due now")
    await page.screenshot(path=str(ARTIFACTS / "admin-retry-dry-run.png"), full_page=True)
    await page.get_by_role("button", name="Do it").click()
    await page.get_by_text("retry: 2 message(s) changed.").wait_for()
    await expect(rows).to_have_count(1)

    await page.get_by_role("link", name="Audit").click()
    entry = page.locator("#audit-table tbody tr").first
    await entry.wait_for()
    text = await entry.inner_text()
    assert "api:operator-token" in text and "retry" in text and text.rstrip().endswith("2")
    await page.screenshot(path=str(ARTIFACTS / "admin-audit.png"), full_page=True)
    listed = (await api.call("GET", "/api/v1/messages?status=pending"))[1]["items"]
    assert sorted(m["id"] for m in listed if m["key"] != "other") == ids[:2]
    # the one failed request is the first, before the token: it is what asks for it
    assert [e for e in errors if "401 (Unauthorized)" not in e] == [], errors


async def test_cancel_a_run_from_its_ledger_and_read_the_notifications(api: Api, browser):
    from playwright.async_api import expect

    store = api.control.store
    row = await store.schedule("nightly")
    assert row is not None
    [queued] = await store.queue_runs(row.id, [row.updated_at], "manual")
    await store.record_notification(
        "run_failed:nightly", "nightly", "resolved", "mail", True, "250 OK",
        title="outboxd resolved: run_failed:nightly: nightly",
        text="resolved: the latest run of nightly succeeded\n",
    )  # fmt: skip
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(api.base + "/#schedules")
    await page.get_by_label("Token").fill(TOKENS["operator"])
    await page.get_by_role("button", name="Sign in").click()

    await page.get_by_role("button", name="nightly", exact=True).click()
    await page.get_by_role("button", name=f"cancel run {queued}").click()
    text = page.locator("#cancel-run-text")
    await text.wait_for()
    assert "is queued: it is cancelled at once" in await text.inner_text()
    await page.get_by_label("Why (kept with the run and in the audit)").fill("wrong day")
    await page.screenshot(path=str(ARTIFACTS / "admin-cancel-run.png"), full_page=True)
    await page.get_by_role("button", name="Cancel the run").click()
    await page.get_by_text(f"run {queued} of nightly cancelled (it had not started).").wait_for()
    ledger_row = page.locator(f'#ledger tr[data-run-id="{queued}"]')
    await expect(ledger_row).to_contain_text("cancelled by api:operator-token: wrong day")
    assert await ledger_row.get_by_role("button").count() == 0  # nothing more to cancel
    [run] = [r for r in await store.runs("nightly") if r.id == queued]
    assert run.status == "cancelled"

    await page.get_by_role("link", name="Notifications").click()
    first = page.locator("#notification-table tbody tr").first
    await first.wait_for()
    assert "resolved" in await first.inner_text() and "250 OK" in await first.inner_text()
    await page.get_by_role("button", name="outboxd resolved: run_failed:nightly: nightly").click()
    await (
        page.locator("#notification-text")
        .get_by_text("resolved: the latest run of nightly succeeded")
        .wait_for()
    )
    await page.screenshot(path=str(ARTIFACTS / "admin-notifications.png"), full_page=True)
    assert errors == []


MRN_HL7 = (
    "MSH|^~\\&|SIMRS|RS|HIE|HIE|20261201120000||ADT^A04^ADT_A01|{control}|P|2.5\r"
    "EVN|A04|20261201120000\r"
    "PID|1||{mrn}^^^RS^MR||SANTOSO^BUDI||19800101|M\r"
    "PV1|1|O|POLI^^^RS\r"
)
WEBHOOK = """
webhooks:
  taxoffice:
    secret: "whsec_b2xkLXNlY3JldC1vbGQtc2VjcmV0LWtleQ=="
    channel: hook
    message_key: /ref
    statuses: {ACCEPTED: confirmed}
"""


@pytest.fixture
async def suite_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Api]:
    """The control app with a webhook, beside a real supervisord running a stand-in."""
    from tests.integration.test_status import SLEEPER, running

    url = f"sqlite:///{tmp_path}/outbox.db"
    database = open_database(DatabaseSettings(url=url))
    migrate(database)
    database.close()
    with running(SLEEPER) as suite:
        monkeypatch.setenv("OUTBOXD_SUPERVISOR", str(suite.conf))
        async with serve_api(url, WEBHOOK) as api:
            yield api


async def _operator_day_data(api: Api) -> int:
    """Two patients' HL7 messages (one rejected by the peer with an ACK), a visit held
    and a callback naming no message: the id of the patient 77-12345's failed one."""
    import json
    import time

    from daemon.hl7 import identifiers
    from daemon.webhooks.signing import secret_key, signed_headers

    store = api.control.store
    made = []
    for i, mrn in enumerate(("77-12345", "88-99999", "77-12345")):
        payload = MRN_HL7.format(control=f"CTL-{i}", mrn=mrn).encode()
        message = NewMessage("hie", f"adt-{i}", payload, kind="hl7",
                             fields=tuple(identifiers(payload.decode())))  # fmt: skip
        made.append((await store.enqueue_many([message], actor="test"))[0].id)
    claimed = await store.claim(["hie"], "w", 1, 60)  # the oldest: made[0]
    ack = "MSH|^~\\&|HIE|HIE|SIMRS|RS|20261201120001||ACK|A1|P|2.5\rMSA|AR|CTL-0|unknown ward\r"
    await store.record(
        "w", [Failed(claimed[0].id, "127.0.0.1:2575 answered AR: unknown ward", ack)]
    )
    progress = {"add": {"status": "sent"}, "3": {"status": "sent"},
                "4": {"status": "held", "reason": "task 4 is not later than task 3"}}  # fmt: skip
    db = open_database(api.control.settings.database)
    db.execute_sql(
        "INSERT INTO outboxd_visit (kodebooking, source, task_progress, created_at, updated_at) "
        "VALUES ('KB-2026-0042', 'rs_demo', ?, '2026-12-01 01:00:00.000000', "
        "'2026-12-01 01:05:00.000000')",
        (json.dumps(progress, sort_keys=True),),
    )
    db.close()
    body = json.dumps({"ref": "no-such-key", "status": "ACCEPTED"}).encode()
    key = secret_key("whsec_b2xkLXNlY3JldC1vbGQtc2VjcmV0LWtleQ==")
    headers = signed_headers([key], "msg_e2e_1", int(time.time()), body)
    async with api.session.post(
        api.base + "/webhooks/taxoffice", data=body,
        headers={**headers, "Content-Type": "application/json"},
    ) as response:  # fmt: skip
        assert response.status == 404
    return made[0]


async def test_an_operators_day_search_hl7_visits_receipts_and_a_process(suite_api: Api, browser):
    from playwright.async_api import expect

    api = suite_api
    failed_id = await _operator_day_data(api)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = await browser.new_page(viewport={"width": 1280, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await page.goto(api.base + "/")
    await page.get_by_label("Token").fill(TOKENS["admin"])
    await page.get_by_role("button", name="Sign in").click()

    # the overview: is anything wrong, each count a link, a chart with axes and legend
    await page.locator('.badge[data-channel="hie"]').wait_for()
    await expect(page.locator("#verdict")).not_to_be_empty()
    verdict = await page.locator("#verdict").inner_text()
    assert verdict.startswith("Needs a look") and "hie: 1 failed" in verdict
    assert "Asia/Jakarta" in await page.locator("#zone").inner_text()
    chart = await page.locator("#chart svg").inner_html()
    assert "messages / minute" in chart and "legend" in chart
    await page.screenshot(path=str(ARTIFACTS / "day-overview.png"), full_page=True)
    await page.get_by_label("1 failed on hie").click()
    await expect(page.locator("#message-table tbody tr")).to_have_count(1)
    assert await page.locator("#filters select[name=status]").input_value() == "failed"

    # search by MRN finds the patient's messages; the HL7 payload one segment a line
    await page.locator("#filters").evaluate("form => form.reset()")
    await page.locator("#filters input[name=search]").fill("77-12345")
    await page.locator("#filters select[name=field]").select_option("mrn")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.locator("#message-table tbody tr")).to_have_count(2)
    await page.get_by_role("button", name=str(failed_id), exact=True).click()
    timeline = page.locator("#timeline")
    await timeline.get_by_text("attempt 1 failed for good").wait_for()
    segments = timeline.locator("ol.hl7").first.locator("li")
    assert await segments.count() == 4
    assert (await segments.nth(2).inner_text()).startswith("PID|1||77-12345")
    assert await timeline.locator('span[title="PID-3"]').first.inner_text() == "77-12345^^^RS^MR"
    answer = timeline.locator("ol.hl7").nth(1)
    assert "MSA|AR|CTL-0|unknown ward" in await answer.inner_text()
    assert "WIB" in (await timeline.locator("ol.events time").first.inner_text()) or "GMT+7" in (
        await timeline.locator("ol.events time").first.inner_text()
    )
    await page.screenshot(path=str(ARTIFACTS / "day-search-hl7.png"), full_page=True)

    # a retry from the timeline: the dialog says what it will do; the timeline moves on
    await timeline.get_by_role("button", name="Retry").click()
    await expect(page.locator("#confirm-text")).not_to_be_empty()
    words = await page.locator("#confirm-text").inner_text()
    assert words.startswith(f"Retry message {failed_id}: 1 message(s) will be made due now")
    await page.get_by_role("button", name="Do it").click()
    await timeline.get_by_text("retried by api:admin-token").wait_for()

    # visits: a lookup by booking code and the list of those held
    await page.get_by_role("link", name="Visits").click()
    await page.locator('#visit-table tr[data-kodebooking="KB-2026-0042"]').wait_for()
    assert (
        "task 4 held: task 4 is not later than task 3"
        in await page.locator("#visit-table").inner_text()
    )
    await page.get_by_label("Booking code").fill("KB-2026-0042")
    await page.get_by_role("button", name="Look up").click()
    await page.locator("#visit").get_by_text("task 4 is not later than task 3").wait_for()
    await page.screenshot(path=str(ARTIFACTS / "day-visits.png"), full_page=True)

    # receipts: the callback that named no message, kept for the operator
    await page.get_by_role("link", name="Receipts").click()
    row = page.locator("#receipt-table tbody tr").first
    await row.get_by_role("cell", name="unknown_message").wait_for()
    assert "kept for the operator" in await row.inner_text()
    await page.screenshot(path=str(ARTIFACTS / "day-receipts.png"), full_page=True)

    # a process stopped and started from its buttons
    await page.get_by_role("link", name="Processes").click()
    sleeper = page.locator('#process-table tr[data-program="sleeper"]')
    await sleeper.get_by_text("RUNNING").wait_for(timeout=30_000)
    await page.get_by_role("button", name="stop sleeper", exact=True).click()
    await page.locator("#process-confirm").get_by_role("button", name="Do it").click()
    await sleeper.get_by_text("STOPPED").wait_for(timeout=30_000)
    await page.screenshot(path=str(ARTIFACTS / "day-process-stopped.png"), full_page=True)
    await page.get_by_role("button", name="start sleeper", exact=True).click()
    await page.locator("#process-confirm").get_by_role("button", name="Do it").click()
    await sleeper.get_by_text("RUNNING").wait_for(timeout=30_000)
    _, audit, _ = await api.call("GET", "/api/v1/audit")
    assert [e["action"] for e in audit["items"][:2]] == ["process.start", "process.stop"]
    assert [e for e in errors if "401 (Unauthorized)" not in e and "404" not in e] == [], errors
