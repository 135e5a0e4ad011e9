"""Claimer processes racing on one real store, on SQLite and on PostgreSQL.

Each claimer is an OS process running ``tests/integration/claimer.py``. It logs
every message it claims (``id owner claim_time lease_expiry``) before it records the
outcome, so the logs say who held what and when. The database says how it ended.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import peewee as pw
import pytest

from daemon.domain.clock import utcnow
from daemon.domain.messages import Delivered, NewMessage, RecordResult
from daemon.domain.statuses import PENDING, SENDING, SENT
from daemon.store.models import Message, StatusEvent
from daemon.store.sync import Store

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
CHANNELS = ("alpha", "beta")
LIMIT = 20  # the claimers' batch size (their default)
START_TIMEOUT = 20.0  # seconds for claimer processes to import and reach the store
WORK_TIMEOUT = 25.0  # seconds for the claimers to deliver everything
EXIT_TIMEOUT = 10.0  # seconds for claimers to stop once told to
CLAIMER_DEADLINE = 60.0  # a claimer gives up on its own (exit 2) after this long
EXPIRY = "lease-expiry"  # the actor of expire_leases' status events


@dataclass(frozen=True)
class Claim:
    """One line of a claimer's log."""

    id: int
    owner: str
    at: datetime
    lease_expires_at: datetime


@dataclass(frozen=True)
class Event:
    """One row of ``outboxd_status_event``."""

    from_status: str | None
    to_status: str
    actor: str
    details: Any
    at: datetime

    @property
    def step(self) -> tuple[str | None, str, str]:
        return (self.from_status, self.to_status, self.actor)


@dataclass(frozen=True)
class Held:
    """What a ``--hold`` claimer published: the batch it holds and until when."""

    owner: str
    ids: list[int]
    lease_expires_at: datetime

    @classmethod
    def load(cls, path: Path) -> Held:
        data = json.loads(path.read_text())
        return cls(data["owner"], data["ids"], datetime.fromisoformat(data["lease_expires_at"]))


@dataclass
class Claimer:
    owner: str
    log: Path
    output: Path
    proc: subprocess.Popen[bytes]
    killed: bool = False

    @property
    def ready(self) -> bool:
        """The claimer creates its log once its store answered."""
        return self.log.exists()

    @property
    def held_file(self) -> Path:
        return self.log.with_name(self.log.name + ".held")

    def claims(self) -> list[Claim]:
        return read_claims(self.log) if self.log.exists() else []

    def describe(self) -> str:
        out = self.output.read_text(errors="replace").strip() if self.output.exists() else ""
        tail = "\n    ".join(out.splitlines()[-15:]) or "(no output)"
        return f"  {self.owner} (pid {self.proc.pid}, exit {self.proc.returncode}):\n    {tail}"


class Claimers:
    """Starts claimer processes, watches them, and leaves none running after the test."""

    def __init__(self, url: str, workdir: Path) -> None:
        self.url = url
        self.workdir = workdir
        self.stop_file = workdir / "stop"
        self.go_file = workdir / "go"
        self.members: list[Claimer] = []

    def __enter__(self) -> Claimers:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for member in self.members:
            if member.proc.poll() is None:
                member.proc.kill()
            member.proc.wait(timeout=EXIT_TIMEOUT)

    def start(self, owner: str, *options: str) -> Claimer:
        log = self.workdir / f"{owner}.log"
        output = self.workdir / f"{owner}.out"
        command = [
            sys.executable,
            "-m",
            "tests.integration.claimer",
            *("--url", self.url, "--owner", owner, "--log", str(log)),
            *("--stop", str(self.stop_file), "--deadline", str(CLAIMER_DEADLINE)),
            *("--channels", ",".join(CHANNELS), "--limit", str(LIMIT)),
            *options,
        ]
        with output.open("wb") as sink:
            proc = subprocess.Popen(command, cwd=REPO_ROOT, stdout=sink, stderr=subprocess.STDOUT)
        member = Claimer(owner, log, output, proc)
        self.members.append(member)
        return member

    def report(self) -> str:
        return "\n".join(m.describe() for m in self.members)

    def check_running(self) -> None:
        """Fail at once if a claimer exited before it was told to stop."""
        dead = [m for m in self.members if not m.killed and m.proc.poll() is not None]
        if dead and not self.stop_file.exists():
            pytest.fail(f"a claimer exited early\n{self.report()}")

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float) -> None:
        """Poll ``condition`` until it holds, for at most ``timeout`` seconds."""
        end = time.monotonic() + timeout
        while not condition():
            self.check_running()
            if time.monotonic() > end:
                pytest.fail(f"timed out after {timeout}s waiting for {what}\n{self.report()}")
            time.sleep(0.02)

    def kill(self, member: Claimer) -> None:
        member.killed = True
        member.proc.send_signal(signal.SIGKILL)
        member.proc.wait(timeout=EXIT_TIMEOUT)
        assert member.proc.returncode == -signal.SIGKILL, self.report()

    def finish(self, timeout: float) -> None:
        """Tell the claimers that no more work comes, and wait until all exited 0."""
        self.stop_file.touch()
        end = time.monotonic() + timeout
        for member in self.members:
            if member.killed:
                continue
            try:
                member.proc.wait(timeout=max(0.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                pytest.fail(f"claimers did not stop within {timeout}s\n{self.report()}")
        failed = [m for m in self.members if not m.killed and m.proc.returncode != 0]
        assert not failed, f"claimers failed\n{self.report()}"


# --- helpers --------------------------------------------------------------------------


def read_claims(path: Path) -> list[Claim]:
    claims = []
    for line in path.read_text().splitlines():
        id_, owner, at, until = line.split(" ")
        claims.append(
            Claim(int(id_), owner, datetime.fromisoformat(at), datetime.fromisoformat(until))
        )
    return claims


def by_message(claims: Iterable[Claim]) -> dict[int, list[Claim]]:
    found: dict[int, list[Claim]] = defaultdict(list)
    for claim in claims:
        found[claim.id].append(claim)
    return dict(found)


def claimed_twice(claims: Iterable[Claim]) -> dict[int, list[str]]:
    return {i: [c.owner for c in cs] for i, cs in by_message(claims).items() if len(cs) > 1}


def oversized_batches(claims: Iterable[Claim]) -> dict[tuple[str, datetime], int]:
    """Claim calls (one per owner and claim time) that returned more than ``LIMIT``."""
    sizes: dict[tuple[str, datetime], int] = defaultdict(int)
    for claim in claims:
        sizes[(claim.owner, claim.at)] += 1
    return {call: n for call, n in sizes.items() if n > LIMIT}


def enqueue(
    store: Store,
    first: int,
    count: int,
    batch: int,
    before_batch: Callable[[], None] = lambda: None,
) -> list[int]:
    """Enqueue messages ``first .. first + count - 1`` over both channels, in batches,
    calling ``before_batch`` before each one."""
    ids: list[int] = []
    for start in range(first, first + count, batch):
        before_batch()
        numbers = range(start, min(start + batch, first + count))
        results = store.enqueue_many(
            [
                NewMessage(channel=CHANNELS[n % 2], key=f"m{n:05d}", payload=f"#{n}".encode())
                for n in numbers
            ]
        )
        assert [r.created for r in results] == [True] * len(numbers)
        ids += [r.id for r in results]
    return ids


def statuses(store: Store) -> dict[int, tuple[str, int]]:
    """id → (status, attempts) of every message."""
    query = Message.select(Message.id, Message.status, Message.attempts).tuples()
    return {id_: (status, attempts) for id_, status, attempts in query}


def count_in(store: Store, status: str) -> int:
    return Message.select().where(Message.status == status).count()


def histories(store: Store) -> dict[int, list[Event]]:
    """id → the message's status events, oldest first."""
    query = StatusEvent.select(
        StatusEvent.message,
        StatusEvent.from_status,
        StatusEvent.to_status,
        StatusEvent.actor,
        StatusEvent.details,
        StatusEvent.at,
    ).order_by(StatusEvent.id)
    found: dict[int, list[Event]] = defaultdict(list)
    for message_id, *fields in query.tuples():
        found[message_id].append(Event(*fields))
    return dict(found)


def sent_events(store: Store) -> dict[int, int]:
    """id → how many status events moved the message to 'sent'."""
    query = (
        StatusEvent.select(StatusEvent.message, pw.fn.COUNT(StatusEvent.id))
        .where(StatusEvent.to_status == SENT)
        .group_by(StatusEvent.message)
    )
    return dict(query.tuples())


def delivered_by(owner: str) -> list[tuple[str | None, str, str]]:
    return [(None, PENDING, "enqueue"), (PENDING, SENDING, owner), (SENDING, SENT, owner)]


# --- tests ----------------------------------------------------------------------------


def test_claimers_deliver_every_message_exactly_once(db_url: str, store: Store, tmp_path: Path):
    total, batch = 2000, 100
    with Claimers(db_url, tmp_path) as claimers:

        def backpressure() -> None:
            # A producer that keeps at most one batch waiting: without this, on SQLite
            # the enqueuer can win the write lock every time and finish before any claim.
            claimers.wait_for(
                lambda: count_in(store, PENDING) <= batch, "claimers to catch up", WORK_TIMEOUT
            )

        workers = [claimers.start(f"claimer-{n}") for n in range(4)]
        claimers.wait_for(lambda: all(w.ready for w in workers), "claimers to start", START_TIMEOUT)
        ids = enqueue(store, 0, total, batch, before_batch=backpressure)
        enqueued_at = utcnow()
        claimers.finish(WORK_TIMEOUT)

    claims = [c for w in workers for c in w.claims()]
    claimed = by_message(claims)
    assert len(set(ids)) == total
    # With a 30 s lease nothing expires: no message may be claimed twice, by anyone.
    assert claimed_twice(claims) == {}
    assert len(claims) == total
    assert set(claimed) == set(ids)
    assert oversized_batches(claims) == {}
    # The run really was concurrent: claims overlapped the enqueuing, on several claimers.
    assert min(c.at for c in claims) < enqueued_at
    assert len({c.owner for c in claims}) > 1

    assert statuses(store) == {i: (SENT, 1) for i in ids}
    assert sent_events(store) == {i: 1 for i in ids}
    events = histories(store)
    assert set(events) == set(ids)
    wrong = {
        i: [e.step for e in events[i]]
        for i in ids
        if [e.step for e in events[i]] != delivered_by(claimed[i][0].owner)
    }
    assert wrong == {}


def test_killed_holder_leases_expire_and_others_deliver(db_url: str, store: Store, tmp_path: Path):
    with Claimers(db_url, tmp_path) as claimers:
        holder = claimers.start("holder", "--hold", "--lease", "2")
        # The others wait for the go file, so the holder gets the first batch.
        others = [
            claimers.start(f"claimer-{n}", "--go", str(claimers.go_file), "--expire-every", "0.1")
            for n in range(3)
        ]
        claimers.wait_for(
            lambda: all(m.ready for m in claimers.members), "claimers to start", START_TIMEOUT
        )
        ids = enqueue(store, 0, 200, 50)
        claimers.wait_for(holder.held_file.exists, "the holder to claim", WORK_TIMEOUT)
        held = Held.load(holder.held_file)
        claimers.go_file.touch()
        ids += enqueue(store, 200, 200, 50)  # more work arrives while the others run
        claimers.kill(holder)
        assert utcnow() < held.lease_expires_at, "the test was too slow: the lease ran out early"
        claimers.wait_for(lambda: count_in(store, SENT) == len(ids), "all sent", WORK_TIMEOUT)
        claimers.finish(EXIT_TIMEOUT)

    expiry = held.lease_expires_at
    assert held.owner == "holder"
    assert len(held.ids) == LIMIT
    assert set(held.ids) <= set(ids)
    assert [(c.id, c.lease_expires_at) for c in holder.claims()] == [(i, expiry) for i in held.ids]

    claims = [c for m in others for c in m.claims()]
    claimed = by_message(claims)
    assert claimed_twice(claims) == {}
    assert len(claims) == len(ids)
    assert set(claimed) == set(ids)
    assert oversized_batches(claims) == {}
    # The others were claiming while the holder's lease was valid, yet took none of
    # its messages before the lease ran out.
    assert min(c.at for c in claims) < expiry
    assert {i: claimed[i][0].at for i in held.ids if claimed[i][0].at <= expiry} == {}

    # Each message was sent once; the killed attempt was not counted.
    assert statuses(store) == {i: (SENT, 1) for i in ids}
    assert sent_events(store) == {i: 1 for i in ids}
    events = histories(store)
    assert set(events) == set(ids)
    for i in held.ids:
        owner = claimed[i][0].owner
        assert [e.step for e in events[i]] == [
            (None, PENDING, "enqueue"),
            (PENDING, SENDING, "holder"),
            (SENDING, PENDING, EXPIRY),
            (PENDING, SENDING, owner),
            (SENDING, SENT, owner),
        ], f"message {i}"
        expired = events[i][2]
        assert expired.details == {"owner": "holder", "expired_at": expiry.isoformat()}
        assert expired.at > expiry
    unheld = set(ids) - set(held.ids)
    wrong = {
        i: [e.step for e in events[i]]
        for i in unheld
        if [e.step for e in events[i]] != delivered_by(claimed[i][0].owner)
    }
    assert wrong == {}

    # The holder coming back late changes nothing: its leases are gone.
    assert store.renew_leases("holder", held.ids, lease=30) == []
    assert store.record("holder", [Delivered(i) for i in held.ids]) == RecordResult(
        recorded={}, lost=sorted(held.ids)
    )
    assert store.expire_leases() == []
    assert statuses(store) == {i: (SENT, 1) for i in ids}
    assert histories(store) == events
