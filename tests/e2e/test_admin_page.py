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
    await page.wait_for_function("document.querySelectorAll('#message-table tbody tr').length == 3")
    shown = [int(await r.get_attribute("data-id") or 0) for r in await rows.all()]
    assert sorted(shown) == ids

    await page.get_by_role("button", name=str(ids[0]), exact=True).click()
    timeline = page.locator("#timeline")
    await timeline.get_by_text("HTTP 500 from the partner").wait_for()
    assert "sending → failed" in await timeline.inner_text()

    for message_id in ids[:2]:
        await page.get_by_label(f"select message {message_id}").check()
    await page.get_by_role("button", name="Retry selected").click()
    confirm = page.locator("#confirm-text")
    await confirm.wait_for()
    assert "2 message(s) would change" in await confirm.inner_text()
    await page.screenshot(path=str(ARTIFACTS / "admin-retry-dry-run.png"), full_page=True)
    await page.get_by_role("button", name="Do it").click()
    await page.get_by_text("retry: 2 message(s) changed.").wait_for()
    await page.wait_for_function("document.querySelectorAll('#message-table tbody tr').length == 1")

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
