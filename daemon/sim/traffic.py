"""Demo traffic: enqueue a message on every channel of the config, every few
seconds, so a newcomer sees messages flow (``python -m daemon.sim.traffic``).

A ``fhir`` channel gets a visit as a SIMRS sends one to SATUSEHAT: the patient
looked up by NIK (``search``), the Encounter after it naming the patient's id
(``Patient/{{after.id}}``, a ``conditional-create`` by its registration number),
and the Condition after the Encounter naming the Encounter's id; the patients,
practitioner and location are the FHIR simulator's seeded ones."""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import random
import signal
import threading
from datetime import UTC, datetime

from daemon.channels.fhir.settings import FhirSettings
from daemon.channels.http.settings import HttpSettings
from daemon.channels.mllp.settings import MllpSettings
from daemon.config.loader import load_config
from daemon.domain.errors import StoreUnavailable
from daemon.domain.messages import NewMessage
from daemon.domain.units import parse_duration
from daemon.hl7.fields import identifiers
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


ICD10 = (("J06.9", "Acute upper respiratory infection"), ("K29.7", "Gastritis"),
         ("I10", "Essential hypertension"), ("E11.9", "Type 2 diabetes mellitus"))  # fmt: skip


def fhir_visit(channel: str, number: int, now: datetime) -> list[NewMessage]:
    """A patient lookup, the visit's Encounter after it, its Condition after that."""
    from daemon.sim.fhir import NIK, ORGANIZATION_ID, PATIENTS, SEEDS

    _, nik, name, _, _ = PATIENTS[number % len(PATIENTS)]
    location = next(s for s in SEEDS if s["resourceType"] == "Location")
    practitioner = next(s for s in SEEDS if s["resourceType"] == "Practitioner")
    registration = f"{now:%Y/%m/%d}/{number:06d}"
    key = f"demo-{now:%Y%m%d%H%M%S}-{number}"
    encounter = {
        "resourceType": "Encounter",
        "identifier": [
            {
                "system": f"http://sys-ids.kemkes.go.id/encounter/{ORGANIZATION_ID}",
                "value": registration,
            }
        ],
        "status": "arrived",
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "AMB",
            "display": "ambulatory",
        },
        "subject": {"reference": "Patient/{{after.id}}", "display": name},
        "participant": [{"individual": {"reference": f"Practitioner/{practitioner['id']}"}}],
        "period": {"start": now.isoformat(timespec="seconds")},
        "location": [{"location": {"reference": f"Location/{location['id']}"}}],
        "serviceProvider": {"reference": f"Organization/{ORGANIZATION_ID}"},
    }
    code, display = random.choice(ICD10)
    condition = {
        "resourceType": "Condition",
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "code": {
            "coding": [
                {"system": "http://hl7.org/fhir/sid/icd-10", "code": code, "display": display}
            ]
        },
        "subject": {"reference": "{{after/subject/reference}}"},
        "encounter": {"reference": "Encounter/{{after.id}}"},
    }
    lookup = f"Patient?identifier={NIK}|{nik}".encode()
    return [
        NewMessage(channel, f"{key}-patient", lookup, "search"),
        NewMessage(
            channel, f"{key}-encounter", json.dumps(encounter).encode(), "conditional-create",
            after_key=f"{key}-patient",
        ),
        NewMessage(
            channel, f"{key}-condition", json.dumps(condition).encode(), "create",
            after_key=f"{key}-encounter",
        ),
    ]  # fmt: skip


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
                payload = hl7_visit(number, now)
                batch.append(
                    NewMessage(
                        name, f"demo-{now:%Y%m%d%H%M%S}-{number}", payload, "hl7",
                        fields=tuple(identifiers(payload.decode())),  # found by MRN, as enqueued
                    )
                )  # fmt: skip
            elif isinstance(channel, FhirSettings):
                batch += fhir_visit(name, number, now)
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
