"""The control API with no tokens (loopback only, as the demo and a laptop run it)
against a real Chromium: a page of another site that submits forms to it (a
bodiless POST, a text/plain form shaped as JSON) changes nothing, the browser
having sent them (the server saw each and refused it); a page that rebinds its
own name to 127.0.0.1 reads nothing; the admin page itself still acts, says who
is signed in and keeps the reason given in the audit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from daemon.config.database import DatabaseSettings
from daemon.domain.messages import Failed, NewMessage
from daemon.store.db import open_database
from daemon.store.migrations import migrate
from tests.e2e.test_admin_page import CHROMIUM
from tests.integration.api_harness import TOKENS, Api, serve_api
from tests.services import unavailable
from tests.support.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
# Names the browser resolves to 127.0.0.1: an attacker's site that rebinds its name
# (DNS rebinding), and another site. Chromium's own local network access checks
# are off, as a browser without them (Firefox, an older Chromium) would be: what
# is tested is what the server refuses.
ATTACKER = "attacker.example"
EVIL = "evil.example"


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
                  "--disable-sync", "--disable-features=LocalNetworkAccessChecks",
                  f"--host-resolver-rules=MAP {ATTACKER} 127.0.0.1, MAP {EVIL} 127.0.0.1"],
        )  # fmt: skip
        yield browser
        await browser.close()


@pytest.fixture
def db_file(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/outbox.db"
    database = open_database(DatabaseSettings(url=url))
    migrate(database)
    database.close()
    return url


async def _failed(api: Api) -> int:
    store = api.control.store
    [one] = await store.enqueue_many([NewMessage("hook", "visit-1", b"{}")], actor="test")
    [claimed] = await store.claim(["hook"], "w", 1, 60)
    await store.record("w", [Failed(claimed.id, "HTTP 500")])
    return one.id


def _forms(api: Api, message: int) -> str:
    """An attacker's page: three forms to the API, each submitted into a frame."""
    base = api.base
    return f"""<!doctype html><html><body>
<form id="run" method="POST" action="{base}/api/v1/schedules/nightly/run" target="f1"></form>
<form id="retry" method="POST" enctype="text/plain" action="{base}/api/v1/messages/retry"
  target="f2"><input name='{{"ids": [{message}], "x": "' value='"}}'></form>
<form id="stop" method="POST" action="{base}/api/v1/processes/outboxd:dispatcher-0/stop"
  target="f3"><input name="a" value="b"></form>
<iframe name="f1"></iframe><iframe name="f2"></iframe><iframe name="f3"></iframe>
<script>for (const id of ["run", "retry", "stop"]) document.getElementById(id).submit();</script>
</body></html>"""


WRITES = {
    "/api/v1/schedules/nightly/run",
    "/api/v1/messages/retry",
    "/api/v1/processes/outboxd:dispatcher-0/stop",
}


async def test_forms_of_another_site_change_nothing(browser, db_file: str):
    seen: list[tuple[str, str, int]] = []
    async with serve_api(db_file, tokens=False, seen=seen) as api:
        message = await _failed(api)
        html = _forms(api, message)

        async def attacker(_: web.Request) -> web.Response:
            return web.Response(text=html, content_type="text/html")

        other = web.Application()
        other.router.add_get("/", attacker)
        runner = web.AppRunner(other)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        page = await browser.new_page()
        try:
            # another site (cross-site), and another program of this machine (same site)
            for origin in (f"http://{EVIL}:{port}", f"http://127.0.0.1:{port}"):
                seen.clear()
                await page.goto(origin + "/")

                def arrived() -> bool:
                    return {path for method, path, _ in seen if method == "POST"} == WRITES

                await eventually(arrived, f"the three forms from {origin} to reach the API")
                assert {status for method, _, status in seen if method == "POST"} <= {403, 415}
        finally:
            await runner.cleanup()
        _, runs, _ = await api.call("GET", "/api/v1/schedules/nightly/runs", role=None)
        assert runs["items"] == []
        _, shown, _ = await api.call("GET", f"/api/v1/messages/{message}", role=None)
        assert shown["status"] == "failed"
        _, audit, _ = await api.call("GET", "/api/v1/audit", role=None)
        assert audit["items"] == []


async def test_a_page_that_rebinds_its_name_to_this_machine_reads_nothing(browser, db_file: str):
    seen: list[tuple[str, str, int]] = []
    async with serve_api(db_file, tokens=False, seen=seen) as api:
        await _failed(api)
        port = api.base.rsplit(":", 1)[1]
        page = await browser.new_page()
        reader = """<!doctype html><html><body><script>
fetch("/api/v1/messages").then(async (r) => {
  document.title = "answered " + r.status; document.body.textContent = await r.text();
});
</script></body></html>"""

        async def first_load(route) -> None:  # the attacker's server, before the rebinding
            await route.fulfill(status=200, content_type="text/html", body=reader)

        await page.route(f"http://{ATTACKER}:{port}/", first_load)
        await page.goto(f"http://{ATTACKER}:{port}/")
        await page.wait_for_function("document.title.startsWith('answered')")
        assert await page.title() == "answered 400"
        assert "visit-1" not in await page.inner_text("body")
        assert ("GET", "/api/v1/messages", 400) in seen


async def test_the_admin_page_still_acts_says_who_and_keeps_the_reason(browser, db_file: str):
    from playwright.async_api import expect

    async with serve_api(db_file, tokens=False) as api:
        message = await _failed(api)
        page = await browser.new_page()
        await page.goto(api.base + "/")
        await page.get_by_text("no tokens configured").wait_for()
        await page.get_by_role("link", name="Schedules").click()
        await page.get_by_role("button", name="Run now").click()
        await page.get_by_text("Run 1 of nightly queued").wait_for()
        await page.get_by_role("link", name="Messages").click()
        await page.get_by_label(f"select message {message}").check()
        await page.get_by_role("button", name="Retry selected").click()
        await page.get_by_label("Reason (kept in the audit)").fill("INC-42")
        await page.get_by_role("button", name="Do it").click()
        await page.get_by_text("retry: 1 message(s) changed.").wait_for()
        await page.get_by_role("link", name="Audit").click()
        entry = page.locator("#audit-table tbody tr").first
        await entry.get_by_text("retry (why: INC-42)").wait_for()
        assert "api:local" in await entry.inner_text()
    async with serve_api(db_file) as api:
        page = await browser.new_page()
        await page.goto(api.base + "/")
        await page.get_by_label("Token").fill(TOKENS["operator"])
        await page.get_by_role("button", name="Sign in").click()
        who = page.locator("#who")
        await expect(who).to_have_text("signed in as operator-token (operator)")
