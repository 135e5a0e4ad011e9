"""The scheduler as processes (``outboxd run scheduler``) on SQLite and PostgreSQL:
two of them running a 1 s schedule fire each fire exactly once (for FIRES
seconds: a minute's worth of claims proves no more than a score of them); a run whose
scheduler is killed is interrupted and retried; a scheduler down for longer
than the catch-up window comes back with one catch-up run and the rest missed;
a job that fails past its retries is notified by mail and signed webhook, and
resolved when it clears; SIGTERM lets a run finish.

The loops' rules on each backend, with an injected clock and no process, are in
``test_schedule_loops.py``; a test here whose rule is proven there on both backends
runs as processes on SQLite only (``ONE_BACKEND``)."""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from daemon.sim.http import Faults, HttpSink
from daemon.store.models import AuditEntry, JobRun, Notification, Schedule
from tests.support.cli import Cli
from tests.support.mailbox import Mailbox
from tests.support.ports import free_port, free_port_pair
from tests.support.processes import DaemonProcess, gone
from tests.support.waiting import eventually, stays

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

# the process form of a rule test_schedule_loops.py proves on both backends
ONE_BACKEND = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
ALERT_INTERVAL = 0.5  # roles.scheduler.alert_interval below
JUDGED = 3 * ALERT_INTERVAL  # seconds in which the alerts are judged twice at least

CONFIG = """
database: {db_url}
timezone: Asia/Jakarta
schedules:
{schedules}
notify:
{notify}
alerts:
{alerts}
roles:
  scheduler: {{base_port: {port}, drain_timeout: {drain}, run_lease: {lease}, sync_interval: 0.5s,
               alert_interval: 0.5s}}
control: {{port: {control}}}
"""


class Suite:
    """Scheduler processes on one config."""

    def __init__(self, tmp: Path, db_url: str) -> None:
        self.tmp = tmp
        self.db_url = db_url
        self.port = free_port_pair()  # process 0's and process 1's health ports
        self.config = tmp / "o.yaml"
        self.procs: dict[int, DaemonProcess] = {}

    def write(
        self,
        schedules: str,
        notify: str = "  {}",
        alerts: str = "  []",
        drain: str = "5s",
        lease: str = "3s",
    ) -> None:
        self.config.write_text(
            CONFIG.format(
                db_url=self.db_url, schedules=schedules, notify=notify or "  {}",
                alerts=alerts, port=self.port, drain=drain, control=free_port(), lease=lease,
            ).replace("notify:\n  {}", "notify: {}").replace("alerts:\n  []", "alerts: []")
        )  # fmt: skip

    async def start(self, num: int) -> DaemonProcess:
        proc = DaemonProcess(self.tmp, self.config, "scheduler", num)
        self.procs[num] = proc
        await proc.start(self.port + num)
        return proc

    def output(self) -> str:
        return "\n".join(f"--- scheduler {n} ---\n{p.output()}" for n, p in self.procs.items())

    def kill_all(self) -> None:
        for proc in self.procs.values():
            proc.kill()


@pytest.fixture
async def suite(tmp_path: Path, db_url: str) -> AsyncIterator[Suite]:
    made = Suite(tmp_path, db_url)
    try:
        yield made
    finally:
        made.kill_all()


def ledger(name: str) -> list[JobRun]:
    return list(
        JobRun.select()
        .join(Schedule)
        .where(Schedule.name == name)
        .order_by(JobRun.fire_time, JobRun.attempt)
    )


PING = """  tick:
    every: 1s
    job: http
    options: {{url: "{url}", method: POST}}
"""


FIRES = 20  # seconds of a 1 s schedule under two schedulers, every fire a race between them


async def test_two_schedulers_fire_a_1s_schedule_exactly_once_for_20_seconds(suite, store):
    async with HttpSink() as sink:
        suite.write(PING.format(url=sink.url("/tick")))
        await suite.start(0)
        await suite.start(1)
        await eventually(
            lambda: len([r for r in ledger("tick") if r.attempt == 1]) >= FIRES,
            f"{FIRES} fires", timeout=2 * FIRES + 30, dump=suite.output,
        )  # fmt: skip
        started, taken = [], []
        for proc in suite.procs.values():
            started.append(
                await proc.metric("outboxd_schedule_fires_total", schedule="tick", result="started")
            )
            taken.append(
                await proc.metric("outboxd_schedule_fires_total", schedule="tick", result="taken")
            )
        assert await suite.procs[0].stop() == 0
        assert await suite.procs[1].stop() == 0
        runs = ledger("tick")
        firsts = [r for r in runs if r.attempt == 1]
        times = [r.fire_time for r in firsts]
        assert len(times) == len(set(times))  # exactly once: no fire twice
        assert len(firsts) >= FIRES, suite.output()  # one a second while both ran
        gaps = [b - a for a, b in pairwise(times)]
        assert set(gaps) == {timedelta(seconds=1)}, gaps  # none missed
        assert Counter(r.status for r in firsts) == {"succeeded": len(firsts)}
        assert Counter(r.trigger for r in firsts) == {"cron": len(firsts)}
        assert len(sink.requests) == len(firsts)  # each run called once
        assert {r.lease_owner for r in runs} == {None}  # all finished
        # every fire was started by one of the two and found taken by the other (the
        # counts were read a moment before the stop: a fire or two may come after)
        assert sum(started) <= len(firsts) <= sum(started) + 2, (started, len(firsts))
        assert sum(taken) >= len(firsts) - 4, (taken, len(firsts))


SLOW = """  slow:
    cron: "0 0 1 1 *"  # runs only when queued by hand in these tests
    job: http
    retry: {{max_attempts: 3, backoff: 1s}}
    options: {{url: "{url}", method: POST, timeout: 60s}}
"""


async def test_a_run_whose_scheduler_is_killed_is_interrupted_and_retried(suite, store):
    async with HttpSink(Faults(delay=30.0)) as sink:
        suite.write(SLOW.format(url=sink.url("/slow")))
        first = await suite.start(0)
        second = await suite.start(1)
        store.queue_runs(store.schedule("slow").id, [store.schedule("slow").updated_at], "manual")

        def running() -> JobRun | None:
            found = [r for r in ledger("slow") if r.status == "running"]
            return found[0] if found else None

        await eventually(running, "the run under way", dump=suite.output)
        run = running()
        assert run is not None and run.lease_owner is not None
        holder, other = (
            (first, second) if f":{first.proc.pid}:" in run.lease_owner else (second, first)
        )
        sink.faults.delay = 0.0  # the retry will be quick
        holder.proc.send_signal(signal.SIGKILL)
        await holder.proc.wait()

        def retried() -> bool:
            runs = [r for r in ledger("slow") if r.fire_time == run.fire_time]
            return [r.status for r in runs] == ["interrupted", "succeeded"]

        await eventually(retried, "interrupted, then retried", timeout=30, dump=suite.output)
        first_run, retry = [r for r in ledger("slow") if r.fire_time == run.fire_time]
        assert "stopped renewing its lease" in (first_run.error or "")
        assert (retry.attempt, retry.trigger, retry.retry_of) == (2, "retry", first_run.id)
        assert await other.stop() == 0


DOWN = 9  # seconds the scheduler is down: more than the catch-up window of 3 s
CATCH_UP = """  often:
    every: 1s
    catch_up: 3s
    job: http
    options: {{url: "{url}", method: POST}}
"""


@ONE_BACKEND
async def test_a_scheduler_back_after_its_catch_up_window_runs_once_and_records_the_rest(
    suite, store
):
    async with HttpSink() as sink:
        suite.write(CATCH_UP.format(url=sink.url("/often")))
        proc = await suite.start(0)
        await eventually(lambda: len(ledger("often")) >= 2, "some fires", dump=suite.output)
        assert await proc.stop() == 0
        stopped_at = max(r.fire_time for r in ledger("often"))
        # down until DOWN fire times have passed since its last fire (what the 3 s
        # catch-up window is measured against): nothing runs meanwhile to wait on
        back_at = stopped_at + timedelta(seconds=DOWN)
        await eventually(lambda: datetime.now(UTC) >= back_at, f"{DOWN} s down", timeout=DOWN + 5)
        proc = await suite.start(0)
        await eventually(
            lambda: any(r.trigger == "catch_up" for r in ledger("often")), "the catch-up run",
            dump=suite.output,
        )  # fmt: skip
        assert await proc.stop() == 0
        down = [r for r in ledger("often") if r.fire_time > stopped_at and r.trigger != "cron"]
        down += [
            r
            for r in ledger("often")
            if r.fire_time > stopped_at and r.status in ("missed", "coalesced")
        ]
        by_status = Counter(r.status for r in {r.id: r for r in down}.values())
        catch_up = [r for r in ledger("often") if r.trigger == "catch_up"]
        assert len(catch_up) == 1 and catch_up[0].status == "succeeded"
        assert by_status["missed"] >= 4, by_status  # down 9 s and more, a window of 3 s
        assert 1 <= by_status["coalesced"] <= 3, by_status
        missed = [r for r in ledger("often") if r.status == "missed"]
        assert max(r.fire_time for r in missed) < catch_up[0].fire_time
        times = [r.fire_time for r in ledger("often") if r.attempt == 1]
        assert len(times) == len(set(times))


SECRET = "whsec_" + "c2VjcmV0LWtleS1vZi10aGUtdGVzdHM="  # base64 of "secret-key-of-the-tests"

FAILING = """  flaky:
    every: 2s
    overlap: skip
    retry: {{max_attempts: 2, backoff: 1s}}
    job: http
    options: {{url: "{url}", method: POST}}
"""
NOTIFY = """  mail: {{kind: smtp, host: 127.0.0.1, port: {smtp}, security: none,
          from: outboxd@clinic.example, to: [it@clinic.example]}}
  hook: {{kind: webhook, url: "{hook}", secret: "{secret}"}}
"""
ALERTS = """  - {when: run_failed, schedule: flaky, notify: [mail, hook], window: 1h}
"""


@ONE_BACKEND
async def test_a_job_failing_past_its_retries_is_notified_once_and_resolved(suite, store, cli):
    from aiosmtpd.controller import Controller
    from standardwebhooks.webhooks import Webhook

    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=mailbox.port)
    controller.start()
    hooks: list[dict[str, Any]] = []

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        payload = Webhook(SECRET).verify(body, dict(request.headers))  # the reference library
        hooks.append(payload)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    hook_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", hook_port).start()
    try:
        async with HttpSink(Faults(status=500)) as sink:
            suite.write(
                FAILING.format(url=sink.url("/flaky")),
                NOTIFY.format(
                    smtp=mailbox.port, hook=f"http://127.0.0.1:{hook_port}/hook", secret=SECRET
                ),
                ALERTS,
            )
            await suite.start(0)
            await suite.start(1)  # two schedulers: still one notification
            await eventually(lambda: hooks and mailbox.messages, "the alert", dump=suite.output)
            # more failing fires, judged again: no more notifications in the window
            failed = len([r for r in ledger("flaky") if r.status == "failed"])
            await eventually(
                lambda: len([r for r in ledger("flaky") if r.status == "failed"]) >= failed + 2,
                "two more failed runs", dump=suite.output,
            )  # fmt: skip
            one_each = lambda: len(mailbox.messages) == 1 and len(hooks) == 1  # noqa: E731
            await stays(one_each, "one notification each", JUDGED, dump=suite.output)
            mail = mailbox.messages[0]
            assert mail["Subject"] == "outboxd alert: run_failed:flaky: flaky"
            assert "answered HTTP 500" in mail.get_payload(decode=True).decode()
            assert hooks[0]["event"] == "firing" and hooks[0]["about"] == "flaky"
            failed = [r for r in ledger("flaky") if r.status == "failed"]
            assert {r.attempt for r in failed} >= {1, 2}  # it was retried before the alert
            sink.faults.status = 200
            both = lambda: len(hooks) == 2 and len(mailbox.messages) == 2  # noqa: E731
            await eventually(both, "the resolution", dump=suite.output)
            assert hooks[1]["event"] == "resolved"
            assert mailbox.messages[1]["Subject"].startswith("outboxd resolved: run_failed:flaky")
            said = mailbox.messages[1].get_payload(decode=True).decode()
            assert said.startswith("resolved: the latest run of flaky succeeded (the fire of ")
            assert "it was: the last run of flaky failed: " in said  # what it had been
            # more fires, succeeding now, judged again: nothing more to say
            succeeded = len([r for r in ledger("flaky") if r.status == "succeeded"])
            await eventually(
                lambda: len([r for r in ledger("flaky") if r.status == "succeeded"])
                >= succeeded + 1,
                "another run succeeding", dump=suite.output,
            )  # fmt: skip
            await stays(both, "two notifications each", JUDGED, dump=suite.output)
            sent = list(Notification.select().order_by(Notification.id))
            assert [(n.target, n.event, n.ok) for n in sent] == [
                ("mail", "firing", True), ("hook", "firing", True),
                ("mail", "resolved", True), ("hook", "resolved", True),
            ]  # fmt: skip
            assert sent[2].title == mailbox.messages[1]["Subject"]
            assert sent[2].text == said.replace("\r\n", "\n")  # as sent, less the mail's CRLF
            code, out = await outboxd(cli, suite.config, "notifications", "--event", "resolved")
            assert code == 0 and out.count("resolved run_failed:flaky about flaky") == 2, out
            for proc in suite.procs.values():
                assert await proc.stop() == 0
    finally:
        controller.stop()
        await runner.cleanup()


async def test_sigterm_lets_a_run_under_way_finish(suite, store):
    async with HttpSink(Faults(delay=2.0)) as sink:
        suite.write(SLOW.format(url=sink.url("/slow")), drain="10s")
        proc = await suite.start(0)
        row = store.schedule("slow")
        store.queue_runs(row.id, [row.updated_at], "manual")
        await eventually(lambda: any(r.status == "running" for r in ledger("slow")), "the run")
        assert await proc.stop() == 0
        [run] = ledger("slow")
        assert run.status == "succeeded" and len(sink.requests) == 1
        assert "waiting for runs under way" in proc.output()


@ONE_BACKEND
async def test_sigterm_past_the_deadline_marks_the_run_interrupted_and_queues_its_retry(
    suite, store
):
    async with HttpSink(Faults(delay=30.0)) as sink:
        suite.write(SLOW.format(url=sink.url("/slow")), drain="1s")
        proc = await suite.start(0)
        row = store.schedule("slow")
        store.queue_runs(row.id, [row.updated_at], "manual")
        await eventually(lambda: any(r.status == "running" for r in ledger("slow")), "the run")
        assert await proc.stop() == 0
        first, retry = ledger("slow")
        assert first.status == "interrupted" and "stopping" in (first.error or "")
        assert (retry.status, retry.trigger, retry.attempt) == ("queued", "retry", 2)
        assert len(sink.requests) == 1


NO_CATCH_UP = """  beat:
    every: 1s
    catch_up: 0s
    job: http
    options: {{url: "{url}", method: POST}}
"""


@ONE_BACKEND
async def test_catch_up_0_runs_every_fire_on_time_and_catches_none_up(suite, store):
    """``catch_up: 0``: two schedulers run every fire that falls due while they are up
    (a claim is a few ms late, and a scheduler starting beside a running one leaves
    it its fires); after both stop for a few fires, those are ``missed`` and none of
    them runs, on a restart or later."""

    def now() -> datetime:
        return datetime.now(UTC)

    def firsts() -> list[JobRun]:
        return [r for r in ledger("beat") if r.attempt == 1]

    def ran(since: datetime, count: int) -> bool:
        return sum(r.status == "succeeded" and r.fire_time > since for r in firsts()) >= count

    async with HttpSink() as sink:
        suite.write(NO_CATCH_UP.format(url=sink.url("/beat")))
        await suite.start(0)
        await suite.start(1)
        up = now()
        await eventually(lambda: ran(up, 8), "fires with both up", dump=suite.output)
        stopping = now()
        assert await suite.procs[0].stop() == 0
        assert await suite.procs[1].stop() == 0
        down = now()
        while now() < down + timedelta(seconds=3.5):  # a few fires fall due with none up
            await asyncio.sleep(0.1)
        back = now()
        await suite.start(0)
        await suite.start(1)
        ready = now()

        def recorded() -> bool:  # the fires while down are in the ledger, and runs go on
            times = {r.fire_time for r in firsts()}
            second = down.replace(microsecond=0) + timedelta(seconds=1)
            return ran(ready, 5) and all(
                second + timedelta(seconds=i) in times
                for i in range(int((back - second).total_seconds()))
            )

        await eventually(recorded, "the fires while down recorded", dump=suite.output)
        end = now()
        assert await suite.procs[0].stop() == 0
        assert await suite.procs[1].stop() == 0

    runs = firsts()
    times = [r.fire_time for r in runs]
    assert len(times) == len(set(times))  # each fire once
    assert not [r for r in ledger("beat") if r.trigger == "catch_up" or r.status == "coalesced"]
    on_time = [r for r in runs if up + timedelta(seconds=1) < r.fire_time < stopping]
    on_time += [r for r in runs if ready + timedelta(seconds=1) < r.fire_time < end]
    assert len(on_time) >= 10 and {r.status for r in on_time} == {"succeeded"}, suite.output()
    while_down = [r for r in runs if down < r.fire_time < back]
    assert len(while_down) >= 3
    assert {(r.status, r.trigger) for r in while_down} == {("missed", "cron")}
    # one row a second, the stop included: none skipped in the ledger
    assert set(b - a for a, b in pairwise(sorted(times))) == {timedelta(seconds=1)}


# --- cancel, max_concurrent, start_at / end_at / max_runs, the command job ------------------------

# a program that starts a grandchild, writes both process ids to a file, then waits
# (in the YAML file a shell's $ is $$: ${VAR} is the file's)
FAMILY = 'sleep 300 & echo "$! $$$$" > "{pids}"; echo started; wait'
CANCELLABLE = """  long:
    cron: "0 0 1 1 *"  # runs only when queued by hand in these tests
    timeout: 5m
    retry: {{max_attempts: 3, backoff: 1s}}
    job: command
    options: {{command: [sh, -c, '{script}'], kill_grace: 1s}}
"""


def pids_of(path: Path) -> list[int]:
    text = path.read_text() if path.exists() else ""
    return [int(p) for p in text.split()] if text.endswith("\n") else []


async def outboxd(cli: Cli, config: Path, *args: str) -> tuple[int, str]:
    """The ``outboxd`` command as an operator (alice) runs it, in this process (on a
    thread: it runs its own event loop); its stdout and stderr together."""
    result = await asyncio.to_thread(cli, *args, "-c", str(config), env={"USER": "alice"})
    return result.code, result.out + result.err


async def test_a_running_run_cancelled_from_the_cli_is_stopped_by_its_scheduler(
    suite, store, cli, tmp_path
):
    """Two schedulers; an operator cancels the run one of them holds: its job's
    process group (a grandchild too) is stopped, the run recorded ``cancelled``
    with who and why, no retry queued, the cancel in the audit."""
    pids = tmp_path / "pids"
    suite.write(CANCELLABLE.format(script=FAMILY.format(pids=pids)))
    await suite.start(0)
    await suite.start(1)
    row = store.schedule("long")
    [queued] = store.queue_runs(row.id, [row.updated_at], "manual")
    await eventually(lambda: pids_of(pids), "the program and its grandchild", dump=suite.output)
    [run] = [r for r in ledger("long") if r.id == queued]
    assert run.status == "running"
    code, out = await outboxd(cli, suite.config, "schedules", "cancel", "long", str(queued),
                              "--note", "wrong period")  # fmt: skip
    assert code == 0, out
    assert "cancel asked for" in out
    await eventually(
        lambda: [r.status for r in ledger("long")] == ["cancelled"], "the run cancelled",
        dump=suite.output,
    )  # fmt: skip
    for pid in pids_of(pids):
        await eventually(lambda pid=pid: gone(pid), f"process {pid} gone", timeout=10)
    [run] = ledger("long")
    assert run.error == "cancelled by cli:alice: wrong period"
    assert run.cancel_requested_by == "cli:alice" and run.lease_owner is None
    await stays(lambda: len(ledger("long")) == 1, "no retry", 1.5, dump=suite.output)
    [entry] = AuditEntry.select().where(AuditEntry.action == "run.cancel")
    assert entry.actor == "cli:alice" and entry.target == f"run {queued} of long"
    # a run that has ended cannot be cancelled: exit 65, the reason said
    code, out = await outboxd(cli, suite.config, "schedules", "cancel", "long", str(queued))
    assert code == 65 and "is cancelled: only a queued or running run" in out
    for proc in suite.procs.values():
        assert await proc.stop() == 0


BOUNDED = """  busy:
    every: 1s
    overlap: allow
    max_concurrent: 2
    job: command
    options: {command: [sleep, "3.5"]}
"""


def most_at_once(runs: list[JobRun]) -> int:
    """The most runs between their start and end at one moment."""
    edges = sorted(
        [(r.started_at, 1) for r in runs] + [(r.finished_at, -1) for r in runs],
        key=lambda e: (e[0], e[1]),  # an end before a start at the same instant
    )
    now = most = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


@ONE_BACKEND
async def test_max_concurrent_bounds_the_runs_at_once_across_two_schedulers(suite, store):
    # a run counts while its lease holds: a lease far longer than a run, so a loaded
    # machine's late renewal cannot make a running run look dead
    suite.write(BOUNDED, lease="60s")
    await suite.start(0)
    await suite.start(1)

    def done() -> list[JobRun]:
        return [r for r in ledger("busy") if r.status == "succeeded"]

    await eventually(lambda: len(done()) >= 6, "six runs done", timeout=60, dump=suite.output)
    for proc in suite.procs.values():
        assert await proc.stop() == 0
    runs = ledger("busy")
    finished = [r for r in runs if r.status == "succeeded"]
    assert most_at_once(finished) == 2, [(r.started_at, r.finished_at) for r in finished]
    skipped = [r for r in runs if r.status == "skipped"]
    assert len(skipped) >= 4, Counter(r.status for r in runs)
    assert all("2 runs still running (max_concurrent 2)" in (r.note or "") for r in skipped)
    times = [r.fire_time for r in runs if r.attempt == 1]
    assert len(times) == len(set(times))  # each fire once: run or skipped
    assert {r.lease_owner for r in finished} == {None}


BOUNDED_RUNS = """  limited:
    every: 1s
    max_runs: 3
    job: http
    options: {{url: "{url}/limited", method: POST}}
"""


WINDOW_LEAD = 6  # seconds from adding a schedule to its start_at


async def test_start_at_end_at_and_max_runs_bound_the_fires_of_two_schedulers(suite, store, cli):
    """No fire before ``start_at`` or after ``end_at`` (a schedule an operator adds
    while two schedulers run); ``max_runs`` runs in all, then none, however many
    schedulers; the fire time reaches the URL."""
    async with HttpSink() as sink:
        suite.write(BOUNDED_RUNS.format(url=sink.url("")))
        await suite.start(0)
        await suite.start(1)
        # far enough ahead that both schedulers have read the schedule (every 0.5 s)
        # before it opens, on a loaded machine too: every fire of it must run
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=WINDOW_LEAD)
        end = start + timedelta(seconds=4)
        options = {"url": sink.url("/{{schedule}}/{{fire:%H%M%S}}?a={{attempt}}"), "method": "POST"}
        code, out = await outboxd(
            cli, suite.config, "schedules", "add", "window", "--job", "http", "--every", "1s",
            "--options", json.dumps(options), "--with", f"start_at={start.isoformat()}",
            "--with", f"end_at={end.isoformat()}",
        )  # fmt: skip
        assert code == 0, out
        await eventually(lambda: datetime.now(UTC) > end + timedelta(seconds=2), "the window",
                         timeout=30)  # fmt: skip
        await stays(
            lambda: len([r for r in ledger("limited")]) == 3
            and all(r.fire_time <= end for r in ledger("window")),
            "no more fires", 2.5, dump=suite.output,
        )  # fmt: skip
        code, out = await outboxd(cli, suite.config, "schedules", "list")
        for proc in suite.procs.values():
            assert await proc.stop() == 0
    window = ledger("window")
    assert [r.fire_time for r in window] == [start + timedelta(seconds=i) for i in range(5)]
    assert {r.status for r in window} == {"succeeded"}
    limited = ledger("limited")
    assert [(r.status, r.trigger, r.attempt) for r in limited] == [("succeeded", "cron", 1)] * 3
    assert Schedule.get(Schedule.name == "limited").runs_made == 3
    paths = sorted(r.path for r in sink.requests if r.path.startswith("/window/"))
    assert paths == [f"/window/{r.fire_time:%H%M%S}?a=1" for r in window]
    assert (
        code == 0 and "limited: http, every 1s (Asia/Jakarta), ended: it has made its 3 runs" in out
    )


COMMANDS = """  good:
    cron: "0 0 1 1 *"
    job: command
    options:
      command: [sh, -c, 'for i in 1 2 3 4 5; do echo "line $i"; done; echo "$OUTBOXD_SCHEDULE $1"',
                job, "{{{{attempt}}}}"]
      output_lines: 3
  bad:
    cron: "0 0 1 1 *"
    retry: {{max_attempts: 1}}
    job: command
    options: {{command: [sh, -c, 'echo "reading"; echo "no such table" >&2; exit 3']}}
  slow:
    cron: "0 0 1 1 *"
    timeout: 2s
    retry: {{max_attempts: 2, backoff: 1h}}
    job: command
    options: {{command: [sh, -c, '{family}'], kill_grace: 1s}}
"""


async def test_command_jobs_succeed_fail_and_time_out_killing_their_group(suite, store, tmp_path):
    pids = tmp_path / "pids"
    suite.write(COMMANDS.format(family=FAMILY.format(pids=pids)))
    await suite.start(0)
    await suite.start(1)
    for name in ("good", "bad", "slow"):
        row = store.schedule(name)
        store.queue_runs(row.id, [row.updated_at], "manual")

    def ended(name: str) -> JobRun | None:
        found = [r for r in ledger(name) if r.attempt == 1 and r.finished_at is not None]
        return found[0] if found else None

    for name in ("good", "bad", "slow"):
        await eventually(lambda name=name: ended(name), f"{name} ended", dump=suite.output)
    good, bad, slow = ended("good"), ended("bad"), ended("slow")
    assert good.status == "succeeded" and good.output["exit"] == 0
    assert good.output["tail"] == ["line 4", "line 5", "good 1"] and good.output["lines"] == 6
    assert bad.status == "failed" and bad.error.endswith("exited with 3: no such table")
    assert bad.output["tail"] == ["reading", "no such table"]
    assert slow.status == "failed" and slow.error == "took longer than its timeout (2s)"
    assert slow.output["tail"] == ["started"]  # what it said before it was stopped
    for pid in pids_of(pids):
        assert gone(pid), f"process {pid} still runs"
    retry = [r for r in ledger("slow") if r.attempt == 2]
    assert retry and retry[0].status == "queued"  # a timeout is retried as the schedule says
    for proc in suite.procs.values():
        assert await proc.stop() == 0


async def test_sigterm_past_the_deadline_stops_a_command_and_its_group(suite, store, tmp_path):
    pids = tmp_path / "pids"
    suite.write(CANCELLABLE.format(script=FAMILY.format(pids=pids)), drain="1s")
    proc = await suite.start(0)
    row = store.schedule("long")
    store.queue_runs(row.id, [row.updated_at], "manual")
    await eventually(lambda: pids_of(pids), "the program and its grandchild", dump=suite.output)
    assert await proc.stop() == 0
    for pid in pids_of(pids):
        assert gone(pid), f"process {pid} still runs"
    first, retry = ledger("long")
    assert first.status == "interrupted" and first.output["tail"] == ["started"]
    assert (retry.status, retry.attempt) == ("queued", 2)
