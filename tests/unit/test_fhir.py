"""The FHIR channel's pure parts from tables: the enqueue check (with the bad
element's path), the request each kind makes, what an answer means, and the
references a message makes to its prerequisite's answer."""

from __future__ import annotations

import json

import pytest

from daemon.channels.base import Verdict
from daemon.channels.fhir import resources, rules
from daemon.channels.kind import InvalidPayload
from daemon.channels.references import (
    BadReference,
    UnresolvedReference,
    check_text,
    fill_json,
    fill_text,
    mentions,
)

ENCOUNTER = {
    "resourceType": "Encounter",
    "identifier": [{"system": "http://sys-ids.kemkes.go.id/encounter/1000", "value": "R 1"}],
    "status": "arrived",
    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
    "subject": {"reference": "Patient/{{after.id}}"},
}


def dumps(document: object) -> bytes:
    return json.dumps(document).encode()


# --- the enqueue check -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["create", "conditional-create"])
def test_a_good_resource_is_stored_as_given(kind):
    payload = dumps(ENCOUNTER)
    assert resources.check(payload, kind) == payload


@pytest.mark.parametrize(
    ("document", "kind", "words"),
    [
        ({**ENCOUNTER, "period": {"start": "23-11-2026"}}, "create", "Encounter.period.start:"),
        ({**ENCOUNTER, "status": None}, "create", "Encounter.status:"),
        ({**ENCOUNTER, "bogus": 1}, "create", "Encounter.bogus: Extra inputs are not permitted"),
        (
            {**ENCOUNTER, "class": {"code": 7}},
            "create",
            "Encounter.class.code:",
        ),
        (
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [{"resource": {**ENCOUNTER, "status": None}}],
            },
            "create",
            "Bundle.entry[0].resource.status:",
        ),
        ({"resourceType": "Identifier", "value": "x"}, "create", "not a FHIR R4 resource type"),
        ({"resourceType": "Encounterr"}, "create", "'Encounterr' is not a FHIR R4 resource"),
        ({"status": "arrived"}, "create", "resourceType: None"),
        ([ENCOUNTER], "create", "a JSON object with a resourceType"),
        (ENCOUNTER, "update", "Encounter.id: an update names the resource's id"),
        ({**ENCOUNTER, "identifier": []}, "conditional-create", "Encounter.identifier:"),
        (
            {**ENCOUNTER, "subject": {"reference": "Patient/{{ after.id }}"}},
            "create",
            "is not a reference",
        ),
        (ENCOUNTER, "delete", "unknown fhir message kind 'delete'"),
    ],
)
def test_a_bad_message_is_refused_with_where_and_why(document, kind, words):
    with pytest.raises(InvalidPayload) as caught:
        resources.check(dumps(document), kind)
    assert words in str(caught.value)


def test_many_problems_are_cut_at_five():
    bad = {**ENCOUNTER, **{f"bogus{i}": i for i in range(8)}}
    with pytest.raises(InvalidPayload, match=r"; and 3 more$"):
        resources.check(dumps(bad), "create")


@pytest.mark.parametrize(
    "query",
    [
        "Patient?identifier=https://fhir.kemkes.go.id/id/nik|9271060312000001",
        "Encounter?_id={{after.id}}",
        "  Patient?identifier=x|y  ",
    ],
)
def test_a_search_is_a_type_and_parameters(query):
    assert resources.check(query.encode(), "search") == query.strip().encode()


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("Patient", "[type]?[parameters]"),
        ("patient?identifier=x", "[type]?[parameters]"),
        ("Identifier?value=x", "[type]?[parameters]"),
        ("Patient?identifier=a b", "no spaces"),
        ("Patient?identifier=x#y", "'#'"),
        ("Patient?identifier", "do not read"),
        ("Patient?_id={{after.name}}", "is not a reference"),
    ],
)
def test_a_bad_search_is_refused(query, words):
    with pytest.raises(InvalidPayload) as caught:
        resources.check(query.encode(), "search")
    assert words in str(caught.value)


# --- the request ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "resource", "method", "path", "headers"),
    [
        ("create", ENCOUNTER, "POST", "Encounter", {"Prefer": "return=representation"}),
        (
            "update",
            {**ENCOUNTER, "id": "e-1"},
            "PUT",
            "Encounter/e-1",
            {"Prefer": "return=representation"},
        ),
        (
            "conditional-create",
            ENCOUNTER,
            "POST",
            "Encounter",
            {
                "Prefer": "return=representation",
                "If-None-Exist": "identifier=http://sys-ids.kemkes.go.id/encounter/1000|R%201",
            },
        ),
        (
            "create",
            {"resourceType": "Bundle", "type": "transaction"},
            "POST",
            "",
            {"Prefer": "return=representation"},
        ),
        (
            "create",
            {"resourceType": "Bundle", "type": "document"},
            "POST",
            "Bundle",
            {"Prefer": "return=representation"},
        ),
        ("search", "Patient?identifier=a|b", "GET", "Patient?identifier=a|b", {}),
    ],
)
def test_each_kind_makes_its_request(kind, resource, method, path, headers):
    request = rules.plan(kind, resource)
    assert (request.method, request.path, request.headers) == (method, path, headers)


@pytest.mark.parametrize(
    ("location", "read"),
    [
        ("https://x/fhir-r4/v1/Encounter/abc-1/_history/2", ("Encounter", "abc-1", "2")),
        ("Encounter/abc-1", ("Encounter", "abc-1", None)),
        ("https://x/fhir/Patient/P1/", ("Patient", "P1", None)),
        ("https://x/fhir/", None),
        (None, None),
    ],
)
def test_a_location_names_type_id_and_version(location, read):
    assert rules.read_location(location) == read


# --- the answer ---------------------------------------------------------------------------

OUTCOME = {
    "resourceType": "OperationOutcome",
    "issue": [
        {
            "severity": "error",
            "code": "value",
            "diagnostics": "Encounter/x does not exist",
            "expression": ["Condition.encounter.reference"],
        },
        {"severity": "warning", "code": "code-invalid", "details": {"text": "unknown code"}},
    ],
}


@pytest.mark.parametrize(
    ("status", "headers", "body", "verdict", "detail", "retry_after"),
    [
        (
            400,
            {},
            OUTCOME,
            Verdict.REJECTED,
            "HTTP 400 Bad: error value: Encounter/x does not exist (at "
            "Condition.encounter.reference); warning code-invalid: unknown code",
            None,
        ),
        (422, {}, "plain words", Verdict.REJECTED, "HTTP 422 Bad: plain words", None),
        (404, {}, "", Verdict.REJECTED, "HTTP 404 Bad", None),
        (
            301,
            {"Location": "https://elsewhere/"},
            "",
            Verdict.REJECTED,
            "HTTP 301 Bad: redirects are not followed; fix the channel's base_url",
            None,
        ),
        (
            429,
            {"Retry-After": "30"},
            OUTCOME,
            Verdict.RETRY,
            "HTTP 429 Bad: error value: Encounter/x does not exist (at "
            "Condition.encounter.reference); warning code-invalid: unknown code; the server "
            "asked to retry after 30s",
            30.0,
        ),
        (503, {}, "<html>down</html>", Verdict.RETRY, "HTTP 503 Bad: <html>down</html>", None),
        (
            201,
            {"Location": "https://x/Encounter/e9/_history/1"},
            "",
            Verdict.DELIVERED,
            "HTTP 201 Bad: Encounter/e9",
            None,
        ),
        (
            201,
            {},
            {"resourceType": "Encounter", "id": "e7"},
            Verdict.DELIVERED,
            "HTTP 201 Bad: Encounter/e7",
            None,
        ),
        (200, {}, "", Verdict.DELIVERED, "HTTP 200 Bad: no id in the answer", None),
    ],
)
def test_what_an_answer_to_a_write_means(status, headers, body, verdict, detail, retry_after):
    text = body if isinstance(body, str) else json.dumps(body)
    outcome = rules.judge_write(status, "Bad", headers, text, "create", "Encounter")
    assert (outcome.verdict, outcome.detail, outcome.retry_after) == (verdict, detail, retry_after)


def test_the_answer_kept_names_the_id_from_the_body_or_the_location():
    by_body = rules.judge_write(
        201, "Created", {}, '{"resourceType":"Encounter","id":"e7"}', "create", "Encounter"
    )
    assert by_body.response == '{"resourceType":"Encounter","id":"e7"}'
    by_location = rules.judge_write(
        201, "Created", {"Location": "https://x/Encounter/e9/_history/3"}, "", "create", "Encounter"
    )
    assert json.loads(by_location.response or "") == {
        "resourceType": "Encounter",
        "id": "e9",
        "meta": {"versionId": "3"},
    }


def test_a_batch_with_failed_entries_says_which():
    answer = {
        "resourceType": "Bundle",
        "type": "batch-response",
        "entry": [
            {"response": {"status": "201 Created"}},
            {"response": {"status": "400 Bad Request", "outcome": OUTCOME}},
        ],
    }
    outcome = rules.judge_write(200, "OK", {}, json.dumps(answer), "create", "Bundle")
    assert outcome.verdict is Verdict.DELIVERED
    assert outcome.detail.startswith(
        "HTTP 200 OK: batch-response: 1 of 2 entries failed: entry 1: 400"
    )


def searchset(*ids: str, total: int | None = None, included: int = 0) -> str:
    entries = [
        {"resource": {"resourceType": "Patient", "id": i}, "search": {"mode": "match"}} for i in ids
    ]
    entries += [
        {"resource": {"resourceType": "Organization", "id": f"o{n}"}, "search": {"mode": "include"}}
        for n in range(included)
    ]
    bundle: dict[str, object] = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
    if total is not None:
        bundle["total"] = total
    return json.dumps(bundle)


@pytest.mark.parametrize(
    ("body", "verdict", "detail"),
    [
        (searchset("P1"), Verdict.DELIVERED, "HTTP 200 OK: one match: Patient/P1"),
        (searchset("P1", included=2), Verdict.DELIVERED, "HTTP 200 OK: one match: Patient/P1"),
        (searchset(), Verdict.REJECTED, "no Patient matches identifier=s|v"),
        (searchset("P1", "P2"), Verdict.REJECTED, "2 Patient resources match identifier=s|v"),
        (searchset("P1", total=3), Verdict.REJECTED, "3 Patient resources match identifier=s|v"),
        (
            '{"resourceType": "Patient"}',
            Verdict.REJECTED,
            "HTTP 200 OK: the search's answer is not a Bundle",
        ),
    ],
)
def test_what_a_search_answer_means(body, verdict, detail):
    outcome = rules.judge_search(200, "OK", {}, body, "Patient?identifier=s|v")
    assert (outcome.verdict, outcome.detail) == (verdict, detail)
    if verdict is Verdict.DELIVERED:
        assert json.loads(outcome.response or "") == {"resourceType": "Patient", "id": "P1"}


# --- references ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "pointers"),
    [
        ("Patient/{{after.id}}", ["/id"]),
        ("{{after/subject/reference}}", ["/subject/reference"]),
        (
            "{{after/entry/0/response/location}} and {{after.id}}",
            ["/entry/0/response/location", "/id"],
        ),
        ("{{afterwards}} {{ other }}", []),
    ],
)
def test_references_and_their_pointers(text, pointers):
    assert check_text(text) == pointers


@pytest.mark.parametrize(
    "text", ["{{after}}", "{{after.name}}", "{{ after.id }}", "{{after/a~2}}", "{{after.id"]
)
def test_a_reference_written_wrongly(text):
    with pytest.raises(BadReference):
        check_text(text)


def test_references_are_filled_as_json_strings():
    payload = dumps(
        {
            "subject": {"reference": "Patient/{{after.id}}"},
            "note": [{"text": "{{after/name}}"}],
            "n": 1,
        }
    )
    answer = json.dumps({"id": "P1", "name": 'Budi "B" \\ Santoso'})
    filled = json.loads(fill_json(payload, answer))
    assert filled == {
        "subject": {"reference": "Patient/P1"},
        "note": [{"text": 'Budi "B" \\ Santoso'}],
        "n": 1,
    }


def test_a_payload_without_references_is_left_byte_for_byte():
    payload = b'{"a" :  "{{x}}",  "b": 1}'
    assert not mentions(payload)
    assert fill_json(payload, '{"id": "1"}') is payload


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (None, "kept no response"),
        ("not json", "not JSON"),
        ('{"id": {"nested": 1}}', "no text or number at /id"),
        ('{"id": true}', "no text or number at /id"),
        ('{"other": 1}', "no text or number at /id"),
    ],
)
def test_a_reference_that_cannot_be_filled(answer, words):
    with pytest.raises(UnresolvedReference, match=words):
        fill_json(b'{"r": "Encounter/{{after.id}}"}', answer)


def test_a_whole_number_is_filled_as_text_and_a_query_is_percent_encoded():
    assert json.loads(fill_json(b'{"r": "{{after.id}}"}', '{"id": 42}')) == {"r": "42"}
    assert fill_text("Encounter?subject={{after.id}}", '{"id": "a b&c"}') == (
        "Encounter?subject=a%20b%26c"
    )


# --- enqueue: a reference needs a prerequisite ----------------------------------------------

SETTINGS = """
database: sqlite:///x.db
channels:
  satusehat: {kind: fhir, base_url: "https://fhir.example/fhir-r4/v1"}
  hook: {kind: http, url: "https://hooks.example/in"}
  hie: {kind: mllp, host: 127.0.0.1, port: 2575}
"""


@pytest.mark.parametrize(
    ("channel", "kind", "payload"),
    [
        ("satusehat", "create", dumps(ENCOUNTER)),
        ("satusehat", "search", b"Encounter?_id={{after.id}}"),
        ("hook", None, b'{"encounter": "{{after/id}}"}'),
    ],
)
def test_a_reference_without_a_prerequisite_is_refused_at_enqueue(channel, kind, payload):
    from daemon.config.loader import parse_config
    from daemon.domain.errors import Refused
    from daemon.operator.enqueue import Handed, new_message

    settings = parse_config(SETTINGS)
    with pytest.raises(Refused) as caught:
        new_message(settings, Handed(channel, "k", payload, kind))
    assert caught.value.field == "payload" and "no prerequisite: give after" in str(caught.value)
    stored = new_message(settings, Handed(channel, "k", payload, kind, after_key="first"))
    assert stored.payload == payload and stored.after_key == "first"


def test_text_that_only_looks_like_a_reference_needs_no_prerequisite():
    from daemon.config.loader import parse_config
    from daemon.operator.enqueue import Handed, new_message

    settings = parse_config(SETTINGS)
    hl7 = b"MSH|^~\\&|A|B|C|D|20261123||ADT^A04|M1|P|2.5.1\rNTE|1||{{after.id}}\r"
    assert new_message(settings, Handed("hie", "k", hl7)).after_key is None  # not a kind that fills
    plain = b'{"note": "{{afterwards}}"}'
    assert new_message(settings, Handed("hook", "k", plain)).payload == plain
