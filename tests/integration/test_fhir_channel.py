"""The FHIR channel against the FHIR simulator (``daemon.sim.fhir``) over real
sockets on 127.0.0.1: tokens from its OAuth2 endpoint, resources created,
updated, found, refused."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from daemon.channels.base import Envelope, Outcome, Verdict
from daemon.channels.fhir.channel import FhirChannel
from daemon.channels.fhir.settings import FhirSettings
from daemon.sim.fhir import NIK, PATIENTS, FhirSimulator

pytestmark = pytest.mark.timeout(60)

CLIENT, SECRET = "rs-demo-client", "rs-demo-secret-value"
ORG = "10000004"
PATIENT_ID, PATIENT_NIK = PATIENTS[0][0], PATIENTS[0][1]


def encounter(registration: str, patient: str = f"Patient/{PATIENT_ID}") -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "identifier": [
            {"system": f"http://sys-ids.kemkes.go.id/encounter/{ORG}", "value": registration}
        ],
        "status": "arrived",
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "AMB",
            "display": "ambulatory",
        },
        "subject": {"reference": patient},
        "period": {"start": "2026-11-23T01:00:00+00:00"},
        "serviceProvider": {"reference": f"Organization/{ORG}"},
    }


def condition(encounter_ref: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "K35.8"}]},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "encounter": {"reference": encounter_ref},
    }


def envelope(
    kind: str, payload: Any, n: int = 1, after: str | None = None, attempt: int = 1
) -> Envelope:
    body = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
    return Envelope(n, f"k{n}", kind, body, attempt, after)


@pytest.fixture
async def sim() -> AsyncIterator[FhirSimulator]:
    async with FhirSimulator({CLIENT: SECRET}, lifetime=300) as s:
        yield s


@pytest.fixture
async def make_channel(sim: FhirSimulator) -> AsyncIterator[Callable[..., FhirChannel]]:
    made: list[FhirChannel] = []

    def make(**settings: Any) -> FhirChannel:
        channel = FhirChannel(
            FhirSettings.model_validate(
                {
                    "kind": "fhir",
                    "base_url": sim.base_url(),
                    "auth": {
                        "type": "oauth2",
                        "token_url": sim.token_url(),
                        "client_id": CLIENT,
                        "client_secret": SECRET,
                        "client_auth": "body",
                    },
                    "timeout": 5,
                    **settings,
                }
            )
        )
        made.append(channel)
        return channel

    yield make
    for channel in made:
        await channel.close()


@pytest.fixture
def channel(make_channel: Callable[..., FhirChannel]) -> FhirChannel:
    return make_channel()


async def test_creates_with_one_token_for_many_sends(sim, channel):
    sender = channel.sender()
    outcomes = await asyncio.gather(
        *(sender.send(envelope("create", encounter(f"R{i}"), i)) for i in range(20))
    )
    assert {o.verdict for o in outcomes} == {Verdict.DELIVERED}
    assert sim.tokens.fetches == 1
    assert len(sim.of("Encounter")) == 20
    first = json.loads(outcomes[0].response or "")
    assert first["resourceType"] == "Encounter" and first["id"] in {
        e["id"] for e in sim.of("Encounter")
    }
    assert outcomes[0].detail == f"HTTP 201 Created: Encounter/{first['id']}"
    call = sim.calls[0]
    assert call.method == "POST" and call.path == "Encounter"
    assert call.headers["Content-Type"] == "application/fhir+json"
    assert call.headers["Prefer"] == "return=representation"


async def test_a_conditional_create_repeated_after_a_dropped_answer_creates_one(sim, channel):
    sender = channel.sender()
    sim.faults.drop_next = 1  # created, but the answer never comes
    lost = await sender.send(envelope("conditional-create", encounter("REG-1")))
    assert lost.verdict is Verdict.RETRY and lost.transport_error
    assert len(sim.of("Encounter")) == 1  # the work was done
    again = await sender.send(envelope("conditional-create", encounter("REG-1"), attempt=2))
    assert again.verdict is Verdict.DELIVERED
    assert "exists; nothing created" in again.detail
    [stored] = sim.of("Encounter")
    assert json.loads(again.response or "")["id"] == stored["id"]
    assert sim.calls[-1].headers["If-None-Exist"] == (
        f"identifier=http://sys-ids.kemkes.go.id/encounter/{ORG}|REG-1"
    )


async def test_a_plain_create_repeated_creates_twice(sim, channel):
    """Why conditional-create exists: the same after a dropped answer, plain."""
    sender = channel.sender()
    sim.faults.drop_next = 1
    await sender.send(envelope("create", encounter("REG-2")))
    await sender.send(envelope("create", encounter("REG-2"), attempt=2))
    assert len(sim.of("Encounter")) == 2


async def test_an_encounters_id_is_filled_into_its_condition(sim, channel):
    sender = channel.sender()
    created = await sender.send(envelope("create", encounter("REG-3")))
    assert created.verdict is Verdict.DELIVERED
    chained = condition("Encounter/{{after.id}}")
    outcome = await sender.send(envelope("create", chained, 2, after=created.response))
    assert outcome.verdict is Verdict.DELIVERED, outcome.detail
    [stored] = sim.of("Condition")
    [enc] = sim.of("Encounter")
    assert stored["encounter"]["reference"] == f"Encounter/{enc['id']}"


async def test_a_reference_the_prerequisite_cannot_fill_is_rejected(channel, sim):
    chained = condition("Encounter/{{after/nothing/here}}")
    outcome = await channel.sender().send(
        envelope("create", chained, after='{"resourceType": "Encounter", "id": "e1"}')
    )
    assert outcome.verdict is Verdict.REJECTED
    assert "no text or number at /nothing/here" in outcome.detail
    assert sim.calls == []


async def test_an_operation_outcome_is_rejected_with_its_diagnostics(sim, channel):
    outcome = await channel.sender().send(envelope("create", condition("Encounter/3f6d-not-there")))
    assert outcome.verdict is Verdict.REJECTED
    assert outcome.detail == (
        "HTTP 400 Bad Request: error value: Encounter/3f6d-not-there does not exist "
        "(at Condition.encounter.reference)"
    )
    kept = json.loads(outcome.response or "")
    assert kept["resourceType"] == "OperationOutcome"
    assert sim.of("Condition") == []


async def test_429_and_5xx_retry_honouring_retry_after(sim, channel):
    sim.faults.fail_next, sim.faults.retry_after = 1, "7"
    outcome = await channel.sender().send(envelope("create", encounter("R")))
    assert outcome.verdict is Verdict.RETRY and outcome.retry_after == 7
    assert "HTTP 429 Too Many Requests: error throttled: too many requests" in outcome.detail
    sim.faults.fail_next, sim.faults.fail_status, sim.faults.retry_after = 1, 503, None
    outcome = await channel.sender().send(envelope("create", encounter("R")))
    assert outcome.verdict is Verdict.RETRY and outcome.retry_after is None
    assert not outcome.transport_error
    assert (await channel.sender().send(envelope("create", encounter("R")))).verdict is (
        Verdict.DELIVERED
    )


async def test_a_401_mid_run_refreshes_the_token_once(sim, channel):
    sender = channel.sender()
    assert (await sender.send(envelope("create", encounter("A")))).verdict is Verdict.DELIVERED
    sim.expire_tokens()
    assert (await sender.send(envelope("create", encounter("B")))).verdict is Verdict.DELIVERED
    assert sim.tokens.fetches == 2
    assert [c.status for c in sim.calls] == [201, 401, 201]


async def test_a_search_with_one_match_keeps_it(sim, channel):
    query = f"Patient?identifier={NIK}|{PATIENT_NIK}"
    outcome = await channel.sender().send(envelope("search", query))
    assert outcome.verdict is Verdict.DELIVERED
    assert outcome.detail == f"HTTP 200 OK: one match: Patient/{PATIENT_ID}"
    assert json.loads(outcome.response or "")["id"] == PATIENT_ID
    assert sim.calls[-1].method == "GET" and sim.calls[-1].path == query


@pytest.mark.parametrize(
    ("query", "words"),
    [
        (f"Patient?identifier={NIK}|0000000000000000", "no Patient matches identifier="),
        ("Patient?_count=10", "5 Patient resources match _count=10"),
    ],
)
async def test_a_search_with_none_or_several_is_rejected(channel, query, words):
    outcome = await channel.sender().send(envelope("search", query))
    assert outcome.verdict is Verdict.REJECTED and words in outcome.detail


async def test_a_search_can_use_the_prerequisites_answer(sim, channel):
    created = await channel.sender().send(envelope("create", encounter("REG-9")))
    query = "Encounter?_id={{after.id}}"
    outcome = await channel.sender().send(envelope("search", query, 2, after=created.response))
    assert outcome.verdict is Verdict.DELIVERED
    assert json.loads(outcome.response or "")["id"] == json.loads(created.response or "")["id"]


async def test_an_update_puts_by_id_and_versions(sim, channel):
    patient = dict(sim.of("Patient")[0])
    patient.pop("meta")
    patient["telecom"] = [{"system": "phone", "value": "081200000000"}]
    outcome = await channel.sender().send(envelope("update", patient))
    assert outcome.verdict is Verdict.DELIVERED
    assert outcome.detail == f"HTTP 200 OK: Patient/{patient['id']}"
    assert json.loads(outcome.response or "")["meta"]["versionId"] == "2"
    assert sim.calls[-1].method == "PUT" and sim.calls[-1].path == f"Patient/{patient['id']}"


async def test_a_transaction_bundle_goes_to_the_base(sim, channel):
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:9e2c3c8e-0000-4000-8000-000000000001",
                "resource": encounter("REG-T"),
                "request": {"method": "POST", "url": "Encounter"},
            },
            {
                "fullUrl": "urn:uuid:9e2c3c8e-0000-4000-8000-000000000002",
                "resource": condition("urn:uuid:9e2c3c8e-0000-4000-8000-000000000001"),
                "request": {"method": "POST", "url": "Condition"},
            },
        ],
    }
    outcome = await channel.sender().send(envelope("create", bundle))
    assert outcome.verdict is Verdict.DELIVERED, outcome.detail
    assert outcome.detail == "HTTP 200 OK: transaction-response: 2 entries"
    assert sim.calls[-1].path == ""
    [enc], [cond] = sim.of("Encounter"), sim.of("Condition")
    assert cond["encounter"]["reference"] == f"Encounter/{enc['id']}"


async def test_a_server_that_lost_its_state(sim, channel):
    created = await channel.sender().send(envelope("create", encounter("REG-L")))
    sim.lose_state()
    outcome = await channel.sender().send(
        envelope("create", condition("Encounter/{{after.id}}"), 2, after=created.response)
    )
    assert outcome.verdict is Verdict.REJECTED and "does not exist" in outcome.detail
    # the reference data is still there
    found = await channel.sender().send(
        envelope("search", f"Patient?identifier={NIK}|{PATIENT_NIK}", 3)
    )
    assert found.verdict is Verdict.DELIVERED


async def test_no_token_holds_the_message(sim, channel):
    sim.tokens.faults.status = 503
    outcome: Outcome = await channel.sender().send(envelope("create", encounter("X")))
    assert outcome.verdict is Verdict.RETRY and outcome.unsent and outcome.transport_error
    assert sim.calls == []


async def test_an_unreachable_server_is_a_transport_failure(make_channel):
    channel = make_channel(base_url="http://127.0.0.1:9/fhir-r4/v1", auth=None)
    outcome = await channel.sender().send(envelope("create", encounter("X")))
    assert outcome.verdict is Verdict.RETRY and outcome.transport_error
    assert "cannot connect to 127.0.0.1:9" in outcome.detail
