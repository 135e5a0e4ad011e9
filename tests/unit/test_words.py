"""What the outbox says in words: a status event as a sentence, an HL7 text as
segments with each field's position, an alert's notification; every time in the
configured zone with its label."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from daemon.domain.alerts import Transition
from daemon.domain.clock import shown
from daemon.domain.views import EventView
from daemon.hl7 import identifiers, segments
from daemon.notify.words import alert_message, page_url
from daemon.operator.words import event_text, hl7_lines

JAKARTA = ZoneInfo("Asia/Jakarta")
AT = datetime(2026, 11, 23, 3, 42, 13, tzinfo=UTC)


def event(frm, to, details, actor="dispatcher:host:1") -> EventView:
    return EventView(1, AT, frm, to, actor, details)


@pytest.mark.parametrize(
    ("frm", "to", "details", "said"),
    [
        (None, "pending", None, "stored by api:ops: pending"),
        ("pending", "sending", {"attempt": 2}, "attempt 2 began: sending (by dispatcher:host:1)"),
        ("sending", "sent", None, "the attempt delivered: the peer accepted it"),
        ("sending", "pending",
         {"error": "127.0.0.1:2575 answered AE: busy", "attempt": 2,
          "retry_at": "2026-11-23T03:42:13+00:00", "decision": "backoff"},
         "attempt 2 failed: 127.0.0.1:2575 answered AE: busy; next at 10:42:13 WIB"),
        ("sending", "failed", {"error": "x answered AR: no", "attempt": 1},
         "attempt 1 failed for good: x answered AR: no"),
        ("sending", "failed", {"error": "timeout", "attempt": 12, "decision": "attempts run out"},
         "attempt 12 failed for good: timeout (attempts run out)"),
        ("failed", "pending", {"action": "retry", "audit": 7},
         "retried by api:ops: now pending (audit 7)"),
        ("sent", "sent", {"partner_status": "PROCESSING", "check": 3},
         "the partner said PROCESSING (check 3): still sent"),
        ("sent", "confirmed", {"partner_status": "ACCEPTED", "check": 4},
         "the partner said ACCEPTED (check 4): confirmed"),
        ("sent", "sent", {"partner_status": "WAIT", "check": 48, "flagged": True},
         "still open after 48 checks: flagged for an operator"),
        ("sending", "pending", {"released": True}, "released unsent at a shutdown: due again now"),
    ],
)  # fmt: skip
def test_an_event_in_words(frm, to, details, said):
    actor = "api:ops" if frm in (None, "failed") else "dispatcher:host:1"
    assert event_text(event(frm, to, details, actor), JAKARTA) == said


def test_times_carry_their_zone():
    assert shown(AT, JAKARTA) == "2026-11-23 10:42:13 WIB"
    assert shown(AT, JAKARTA, date=False) == "10:42:13 WIB"
    assert shown(AT, ZoneInfo("UTC")) == "2026-11-23 03:42:13 UTC"
    assert shown(None, JAKARTA) == "-"


ACK = "MSH|^~\\&|HIE|HIE|RS|RS|20261201||ACK|A1|P|2.5\r\nMSA|AR|CTL-0|unknown ward\r\n"


def test_hl7_segments_with_positions():
    found = segments(ACK)
    assert found is not None and [s.name for s in found] == ["MSH", "MSA"]
    msh = {f.position: f.value for f in found[0].fields}
    assert msh["MSH-1"] == "|" and msh["MSH-2"] == "^~\\&" and msh["MSH-10"] == "A1"
    assert [(f.position, f.value) for f in found[1].fields] == [
        ("MSA-1", "AR"), ("MSA-2", "CTL-0"), ("MSA-3", "unknown ward")
    ]  # fmt: skip
    assert segments('{"resourceType": "Patient"}') is None
    lines = hl7_lines(ACK, by_field=True)
    assert (
        lines is not None and lines[0].startswith("MSH|") and "    MSA-3    unknown ward" in lines
    )


def test_the_fields_a_message_is_found_by():
    text = (
        "MSH|^~\\&|A|B|C|D|20261201||ADT^A04^ADT_A01|CTL-9|P|2.5\r"
        "PID|1||123^^^RS^MR~BPJS-9^^^BPJS||DOE\r"
        "PV1|1|O" + "|" * 17 + "V-1^^^RS\r"
    )
    assert identifiers(text) == [
        ("control_id", "CTL-9"), ("message_type", "ADT"), ("message_type", "ADT^A04"),
        ("mrn", "123"), ("mrn", "BPJS-9"), ("visit_number", "V-1"),
    ]  # fmt: skip
    assert identifiers("not hl7") == []


def test_an_alert_says_what_where_and_since_when():
    change = Transition("run_failed", "nightly", "firing", "run 42 failed: HTTP 500", AT)
    page = page_url("127.0.0.1", 8080, "run_failed", "nightly")
    subject, text = alert_message("run_failed", "run_failed", change, JAKARTA, page)
    assert subject == "outboxd alert: run_failed: nightly"
    assert text.startswith("run 42 failed: HTTP 500\n")
    assert "rule run_failed: the latest run of a schedule failed" in text
    assert "since 2026-11-23 10:42:13 WIB" in text
    assert "noticed on " in text and "look: http://127.0.0.1:8080/#schedules" in text
    assert "(run_failed)" not in text
    assert page_url("0.0.0.0", 8080, "messages_failed", "hie").endswith(
        ":8080/#messages?channel=hie&status=failed"
    )


def test_a_resolution_says_what_cleared_it_then_what_it_was():
    change = Transition("run_failed", "nightly", "resolved", "run 42 failed: HTTP 500", AT)
    page = page_url("127.0.0.1", 8080, "run_failed", "nightly")
    cleared = "the latest run of nightly succeeded (the fire of 2026-11-23T04:00:00+00:00)"
    subject, text = alert_message("run_failed", "run_failed", change, JAKARTA, page, cleared)
    assert subject == "outboxd resolved: run_failed: nightly"
    assert text.startswith(f"resolved: {cleared}\n\nit was: run 42 failed: HTTP 500\n")
    _, plain = alert_message("run_failed", "run_failed", change, JAKARTA, page)
    assert plain.startswith("run 42 failed: HTTP 500\n")  # nothing said: as before
