"""Demo traffic: enqueue a message on every channel of the config, every few
seconds, so a newcomer sees messages flow (``python -m daemon.sim.traffic``)."""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import random
import signal
import threading
from datetime import UTC, datetime

from daemon.channels.http.settings import HttpSettings
from daemon.channels.mllp.settings import MllpSettings
from daemon.config.loader import load_config
from daemon.domain.errors import StoreUnavailable
from daemon.domain.messages import NewMessage
from daemon.domain.units import parse_duration
from daemon.store.db import open_database
from daemon.store.sync import Store

log = logging.getLogger("outboxd.sim.traffic")
NAMES = ("Santoso^Budi", "Wijaya^Siti", "Hidayat^Agus", "Lestari^Dewi", "Pratama^Rizky")


def hl7_visit(number: int, now: datetime) -> bytes:
    stamp = now.strftime("%Y%m%d%H%M%S")
    control = f"DEMO{now:%Y%m%d%H%M%S}{number:06d}"
    segments = [
        f"MSH|^~\\&|OUTBOXD-DEMO|CLINIC|HIE|HIE|{stamp}||ADT^A04^ADT_A01|{control}|P|2.5.1",
        f"EVN|A04|{stamp}",
        f"PID|1||MRN{1000 + number % 500}^^^CLINIC^MR||{random.choice(NAMES)}||19800101|U",
        "PV1|1|O|POLI-UMUM^^^CLINIC",
    ]
    return ("\r".join(segments) + "\r").encode()


def json_event(number: int, now: datetime) -> bytes:
    return json.dumps(
        {"event": "visit.registered", "visit": number, "at": now.isoformat()}
    ).encode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m daemon.sim.traffic")
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("--every", default="2s", help="pause between rounds (default 2s)")
    parser.add_argument(
        "--count", type=int, default=0, help="stop after this many rounds (0: never)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s traffic %(message)s")
    settings = load_config(args.config)
    store = Store(open_database(settings.database))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    pause = parse_duration(args.every)
    rounds = range(1, args.count + 1) if args.count else itertools.count(1)
    for number in rounds:
        now = datetime.now(UTC)
        batch = []
        for name, channel in settings.channels.items():
            if isinstance(channel, MllpSettings):
                batch.append(
                    NewMessage(
                        name, f"demo-{now:%Y%m%d%H%M%S}-{number}", hl7_visit(number, now), "hl7"
                    )
                )
            elif isinstance(channel, HttpSettings):
                batch.append(
                    NewMessage(
                        name, f"demo-{now:%Y%m%d%H%M%S}-{number}", json_event(number, now), "json"
                    )
                )
        try:
            store.enqueue_many(batch, actor="demo-traffic")
            log.info("enqueued %d message(s), round %d", len(batch), number)
        except StoreUnavailable as exc:
            log.warning("could not enqueue: %s", exc)
        if stop.wait(pause):
            break
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
