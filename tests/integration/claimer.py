"""A claimer process for the concurrency tests: ``python -m tests.integration.claimer``.

It plays a dispatcher against a real store: claim, note what it holds, record the
outcome, and expire stale leases now and then. Every message it claims becomes
one line of its log, written and flushed before the outcome is recorded::

    <id> <owner> <claim_time> <lease_expiry>

``claim_time`` is read right after ``claim`` returned (the claim had committed by
then); ``lease_expiry`` is the lease the store granted. Both are ISO 8601 UTC.

The log file is created once the store answered, so its existence means "ready".
In ``--hold`` mode the process claims one batch, writes ``<log>.held`` (JSON: owner,
ids, lease expiry) and then sleeps, holding the leases until it is killed.

Exit codes: 0 stopped normally; 2 ``--deadline`` passed (the harness never stopped
or killed it); 3 some outcome was refused because the lease was lost.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from daemon.config.database import DatabaseSettings
from daemon.domain.messages import ClaimedMessage, Delivered
from daemon.store.db import open_database
from daemon.store.sync import Store

EXIT_OK = 0
EXIT_DEADLINE = 2
EXIT_LOST = 3
POLL = 0.01  # seconds between polls when there is nothing to do


class DeadlinePassed(Exception):
    pass


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="store URL")
    parser.add_argument("--owner", required=True, help="lease owner name (no spaces)")
    parser.add_argument("--log", required=True, type=Path, help="claim log to write")
    parser.add_argument("--stop", required=True, type=Path, help="sentinel: no more work")
    parser.add_argument("--go", type=Path, help="wait for this file before claiming")
    parser.add_argument("--channels", default="alpha,beta")
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--lease", type=float, default=30.0)
    parser.add_argument("--expire-every", type=float, default=0.2)
    parser.add_argument("--quiet", type=float, default=0.3, help="idle seconds before stopping")
    parser.add_argument("--deadline", type=float, default=60.0, help="hard limit in seconds")
    parser.add_argument("--hold", action="store_true", help="claim one batch, then sleep")
    return parser.parse_args(argv)


def write_claims(log: TextIO, owner: str, claimed: list[ClaimedMessage]) -> None:
    at = datetime.now(UTC).isoformat()
    for m in claimed:
        log.write(f"{m.id} {owner} {at} {m.lease_expires_at.isoformat()}\n")
    log.flush()


def write_held(path: Path, owner: str, claimed: list[ClaimedMessage]) -> None:
    """Publish the held batch atomically, so a reader never sees half of it."""
    data = {
        "owner": owner,
        "ids": [m.id for m in claimed],
        "lease_expires_at": max(m.lease_expires_at for m in claimed).isoformat(),
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def hold(args: argparse.Namespace, store: Store, log: TextIO, deadline: float) -> int:
    channels = args.channels.split(",")
    claimed: list[ClaimedMessage] = []
    while not claimed:
        if time.monotonic() > deadline:
            raise DeadlinePassed("nothing to hold")
        claimed = store.claim(channels, args.owner, limit=args.limit, lease=args.lease)
        if not claimed:
            time.sleep(POLL)
    write_claims(log, args.owner, claimed)
    write_held(args.log.with_name(args.log.name + ".held"), args.owner, claimed)
    while time.monotonic() < deadline:  # hold the leases until killed
        time.sleep(0.05)
    raise DeadlinePassed("still holding: nobody killed this process")


def deliver(args: argparse.Namespace, store: Store, log: TextIO, deadline: float) -> int:
    channels = args.channels.split(",")
    lost: list[int] = []
    last_work = time.monotonic()
    next_expiry = 0.0
    while True:
        now = time.monotonic()
        if now > deadline:
            raise DeadlinePassed("the stop sentinel never came")
        if now >= next_expiry:
            expired = store.expire_leases()
            if expired:
                print(f"{args.owner}: expired leases of {expired}", flush=True)
            next_expiry = now + args.expire_every
        stopping = args.stop.exists()  # before claiming: the claim sees all enqueued work
        claimed = store.claim(channels, args.owner, limit=args.limit, lease=args.lease)
        if claimed:
            write_claims(log, args.owner, claimed)
            result = store.record(args.owner, [Delivered(m.id) for m in claimed])
            lost += result.lost
            last_work = time.monotonic()
        elif stopping and time.monotonic() - last_work >= args.quiet:
            break
        else:
            time.sleep(POLL)
    if lost:
        print(f"{args.owner}: lease lost before recording {sorted(lost)}", file=sys.stderr)
        return EXIT_LOST
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    deadline = time.monotonic() + args.deadline
    store = Store(open_database(DatabaseSettings(url=args.url)))
    try:
        store.expire_leases()  # as a dispatcher does on start; the store answered: ready
        with args.log.open("a", encoding="utf-8") as log:
            while args.go and not args.go.exists():
                if time.monotonic() > deadline:
                    raise DeadlinePassed(f"{args.go} never appeared")
                time.sleep(POLL)
            return (hold if args.hold else deliver)(args, store, log, deadline)
    except DeadlinePassed as exc:
        print(f"{args.owner}: deadline of {args.deadline}s passed: {exc}", file=sys.stderr)
        return EXIT_DEADLINE
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())
