"""Scale-out: two hosts sharing one PostgreSQL, each its own supervisord, directory,
ports and node name (``ops/cluster``), on this machine. Messages spread over both,
a channel's rate limit holds for the two together, each schedule fire runs once,
and when one host is SIGKILLed whole (supervisord and every child) the other takes
over its leases and nothing is lost.

The PostgreSQL is one of the test's own (``initdb`` in a temporary directory), so
that nothing here touches the machine's shared server.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest

from daemon.config.database import DatabaseSettings
from daemon.domain.messages import NewMessage
from daemon.sim.http import HttpSink
from daemon.sim.mllp import MllpSimulator, Rule
from daemon.store.db import open_database
from daemon.store.sync import Store
from ops.cluster.host import Host
from ops.cluster.servers import PostgresServer, ServerUnavailable
from tests.services import unavailable
from tests.support.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

VENV = Path(sys.executable).parent.parent
RATE = 20  # hie's rate limit, per second, for the two hosts together
BURST = 2  # the bucket's capacity: a tenth of a second's worth (daemon.resilience.ratelimit)
SLACK = 1.0  # seconds between a token's grant and its message reaching the peer, at most
HL7_COUNT = 300
HOOK_COUNT = 60
LEASE = 5  # seconds: hie's lease, short so that a dead host's messages come back soon

YAML = """\
node: ${{OUTBOXD_NODE}}
database: {db}
channels:
  hie:
    kind: mllp
    host: 127.0.0.1
    port: {mllp}
    rate: {rate}/s
    lease: {lease}s
    concurrency: 2
    response_timeout: 10s
  webhook:
    kind: http
    url: http://127.0.0.1:{http}/hook
    lease: {lease}s
schedules:
  tick:
    every: 2s
    job: http
    options:
      url: "http://127.0.0.1:{http}/fire?at={{{{fire}}}}&attempt={{{{attempt}}}}"
      method: POST
roles:
  dispatcher: {{base_port: "${{OUTBOXD_DISPATCHER_PORT}}", drain_timeout: 10s}}
  poller: {{base_port: "${{OUTBOXD_POLLER_PORT}}"}}
  scheduler: {{base_port: "${{OUTBOXD_SCHEDULER_PORT}}", run_lease: 6s, sync_interval: 1s}}
  control: {{base_port: "${{OUTBOXD_CONTROL_HEALTH_PORT}}"}}
control:
  port: ${{OUTBOXD_CONTROL_PORT}}
"""


def hl7(n: int) -> bytes:
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    return (
        f"MSH|^~\\&|OUTBOXD|CLINIC|HIE|HIE|{stamp}||ADT^A04^ADT_A01|SC{n:06d}|P|2.5.1\r"
        f"EVN|A04|{stamp}\rPID|1||SC-{n}^^^CLINIC^MR||Santoso^Budi||19800101|M\r"
    ).encode()


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer()
    except ServerUnavailable as exc:
        unavailable("a PostgreSQL of the test's own", exc, "install postgresql (its binaries)")
    try:
        yield server.create()
    finally:
        server.destroy()


@pytest.fixture
async def sinks() -> AsyncIterator[tuple[MllpSimulator, HttpSink]]:
    mllp = MllpSimulator([Rule(delay=0.02)])
    await mllp.start("127.0.0.1", 0)
    http = HttpSink()
    await http.start("127.0.0.1", 0)
    try:
        yield mllp, http
    finally:
        await mllp.stop()
        await http.stop()


@pytest.fixture
async def hosts(
    postgres: PostgresServer, sinks: tuple[MllpSimulator, HttpSink]
) -> AsyncIterator[tuple[Host, Host]]:
    mllp, http = sinks
    text = YAML.format(db=postgres.url, mllp=mllp.port, http=http.port, rate=RATE, lease=LEASE)
    base = Path(tempfile.mkdtemp(prefix="outboxd-scale-"))  # short: supervisord's socket
    procs = {"dispatcher": 2, "poller": 0, "scheduler": 1, "control": 1}
    a = Host(base / "a", VENV, "node-a", text, procs)
    b = Host(base / "b", VENV, "node-b", text, procs)
    try:
        await a.migrate()
        await asyncio.gather(a.start(), b.start())
        yield a, b
    finally:
        await asyncio.gather(a.shutdown(), b.shutdown())
        shutil.rmtree(base, ignore_errors=True)


def query(url: str, sql: str, *params: object) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def most_in_a_window(times: list[float], window: float) -> int:
    """The most arrivals in any ``window`` seconds."""
    times = sorted(times)
    most, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] > window:
            first += 1
        most = max(most, last - first + 1)
    return most


async def test_two_hosts_share_the_work_the_rate_and_the_fires_and_survive_one_dying(
    postgres: PostgresServer, sinks: tuple[MllpSimulator, HttpSink], hosts: tuple[Host, Host]
):
    mllp, http = sinks
    a, b = hosts
    url = postgres.url
    store = Store(open_database(DatabaseSettings(url=url)))
    try:
        store.enqueue_many(
            [NewMessage("hie", f"hl7-{n}", hl7(n), "hl7") for n in range(HL7_COUNT)]
            + [NewMessage("webhook", f"hook-{n}", b'{"n": %d}' % n, "json")
               for n in range(HOOK_COUNT)],
            actor="scale-out-test",
        )  # fmt: skip
    finally:
        store.close()

    def dump() -> str:
        return a.logs(["supervisord", "dispatcher-0"]) + b.logs(["supervisord", "dispatcher-0"])

    def senders() -> Counter[str]:
        rows = query(
            url,
            "SELECT split_part(actor, ':', 1), count(*) FROM outboxd_status_event"
            " WHERE from_status = 'sending' AND to_status = 'sent' GROUP BY 1",
        )
        return Counter(dict(rows))

    # both hosts deliver: the messages spread over them
    await eventually(
        lambda: (lambda s: s["node-a"] >= 20 and s["node-b"] >= 20)(senders()),
        "both nodes delivering", 120, dump,
    )  # fmt: skip

    await eventually(
        lambda: query(url, "SELECT count(*) FROM outboxd_job_run")[0][0] >= 2,
        "the schedule firing", 60, dump,
    )  # fmt: skip
    # what each host holds of the server's connections (docs/deploy.md's sizing)
    connections = query(
        url, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'outboxd'"
    )[0][0]

    # host A dies whole, mid-backlog: supervisord and every process under it
    await eventually(
        lambda: query(url, "SELECT count(*) FROM outboxd_message WHERE status = 'sending'"
                      " AND lease_owner LIKE 'node-a:%%'")[0][0] > 0,
        "node-a holding leases", 60, dump,
    )  # fmt: skip
    killed = a.kill()
    assert a.proc is not None
    await a.proc.wait()
    orphaned = {
        i
        for (i,) in query(
            url,
            "SELECT id FROM outboxd_message WHERE status = 'sending'"
            " AND lease_owner LIKE 'node-a:%%'",
        )
    }
    assert orphaned, "node-a held nothing when it died"
    fires_at_kill = query(url, "SELECT max(fire_time) FROM outboxd_job_run")[0][0]

    # host B takes over: every message sent, the dead host's leases expired first
    def unsent() -> list[tuple]:
        return query(
            url, "SELECT channel, status, count(*) FROM outboxd_message"
            " WHERE status <> 'sent' GROUP BY 1, 2",
        )  # fmt: skip

    await eventually(lambda: unsent() == [], "every message sent by node-b", 180,
                     lambda: f"{unsent()}\n{b.logs(['dispatcher-0', 'dispatcher-1'])}")  # fmt: skip
    expired = {
        i
        for (i,) in query(
            url, "SELECT DISTINCT message_id FROM outboxd_status_event WHERE actor = 'lease-expiry'"
        )
    }
    assert orphaned <= expired, orphaned - expired
    finishers = dict(
        query(
            url,
            "SELECT message_id, split_part(actor, ':', 1) FROM outboxd_status_event"
            " WHERE to_status = 'sent' AND message_id = ANY(%s)",
            list(orphaned),
        )
    )
    assert set(finishers.values()) == {"node-b"}, finishers

    # nothing lost: the peer saw every message, repeats only of what node-a held
    seen = Counter(r.control_id for r in mllp.received)
    assert set(seen) == {f"SC{n:06d}" for n in range(HL7_COUNT)}
    keys = dict(query(url, "SELECT id, key FROM outboxd_message WHERE channel = 'hie'"))
    held = {f"SC{int(keys[i].removeprefix('hl7-')):06d}" for i in orphaned if i in keys}
    assert {cid for cid, n in seen.items() if n > 1} <= held
    hooks = Counter(r.path for r in http.requests if r.path == "/hook")
    assert hooks["/hook"] >= HOOK_COUNT

    # the rate held for both hosts together: in any window of W seconds, at most
    # BURST + RATE·(W + SLACK) arrivals (a token bucket grants at most BURST + RATE·W;
    # SLACK covers a granted send reaching the peer late on a loaded machine)
    times = [r.at for r in mllp.received]
    for window in (1.0, 5.0):
        bound = BURST + RATE * (window + SLACK)
        assert most_in_a_window(times, window) <= bound, (window, most_in_a_window(times, window))
    span = max(times) - min(times)
    assert len(times) <= BURST + RATE * (span + SLACK), (len(times), span)
    print(  # the figures docs/operations.md quotes (pytest -s)
        f"\nsent by node: {dict(senders())}; orphaned leases {len(orphaned)};"
        f" repeats {sum(n - 1 for n in seen.values())}; most hie arrivals in 1 s"
        f" {most_in_a_window(times, 1.0)}, in 5 s {most_in_a_window(times, 5.0)};"
        f" {len(times) / span:.1f}/s over {span:.1f}s (rate {RATE}/s, burst {BURST});"
        f" {connections} connections to PostgreSQL for the two hosts"
    )

    # each fire ran once, and the fires went on after node-a died (node-b's scheduler)
    await eventually(
        lambda: query(url, "SELECT count(*) FROM outboxd_job_run WHERE fire_time > %s",
                      fires_at_kill)[0][0] >= 3,
        "fires after the kill", 60, lambda: b.logs(["scheduler-0"]),
    )  # fmt: skip
    runs = query(url, "SELECT fire_time, attempt, status FROM outboxd_job_run")
    per_fire = Counter(fire for fire, _, _ in runs)
    interrupted = {fire for fire, _, status in runs if status == "interrupted"}
    assert all(n == 1 or fire in interrupted for fire, n in per_fire.items()), per_fire
    fired = Counter(
        parse_qs(urlsplit(r.path).query)["at"][0] for r in http.requests
        if r.path.startswith("/fire")
    )  # fmt: skip
    assert fired, "no fire reached the sink"
    assert interrupted or max(fired.values()) == 1, fired
    assert killed, "no process was killed"
