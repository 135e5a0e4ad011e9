"""Finding messages by what they say, on SQLite and on PostgreSQL: the payload's
text (any case, across HL7 separators, any bytes) and the fields an HL7 message
is found by, in the listing (newest stored first, page by page) and in the
operator actions by filter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from daemon.domain.messages import InvalidMessage, NewMessage
from daemon.domain.selection import MessageFilter, OperatorRefused
from daemon.hl7 import identifiers
from daemon.store.sync import Store

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=30)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def hl7(control: str, mrn: str, name: str = "DOE^JOHN", visit: str = "V1") -> bytes:
    pv1 = "|".join(["PV1", "1", "O"] + [""] * 16 + [f"{visit}^^^RS^VN"])
    return (
        f"MSH|^~\\&|SIMRS|RS|HIE|HIE|20261201120000||ADT^A04^ADT_A01|{control}|P|2.5\r"
        f"PID|1||{mrn}^^^RS^MR~P-{mrn}^^^BPJS||{name}||19800101|M\r{pv1}\r"
    ).encode()


def stored(store: Store, key: str, payload: bytes, seconds: float, channel: str = "hie") -> int:
    fields = tuple(identifiers(payload.decode("utf-8", "replace")))
    message = NewMessage(channel, key, payload, kind="hl7", fields=fields)
    return store.enqueue(message, now=at(seconds)).id


def found(store: Store, **filter_) -> list[int]:
    return [m.id for m in store.list_messages(MessageFilter(**filter_), now=NOW).items]


def test_text_and_fields_find_what_the_messages_say(store: Store):
    a = stored(store, "a", hl7("MSG-1", "12345", "SANTOSO^BUDI", "V-77"), 1)
    b = stored(store, "b", hl7("MSG-2", "67890", "Müller^Hans"), 2)
    c = stored(store, "c", b'{"patient": {"mrn": "12345"}, "note": "50%_done"}', 3, "hook")
    d = stored(store, "d", hl7("MSG-3", "12345"), 4)
    not_utf8 = "MSH|^~\\&|X||||||ADT^A08|L-1|P|2.5\rPID|1||999||Gödel\r".encode("latin-1")
    latin1 = stored(store, "e", not_utf8, 5)
    assert found(store, text="12345") == [d, c, a]
    assert found(store, text="santoso") == [a]  # any case
    assert found(store, text="Santoso^Bu") == [a]  # across a component separator
    assert found(store, text="PID|1||67890") == [b]  # across fields
    assert found(store, text="Müller") == [b]
    assert found(store, text="50%_d") == [c]  # % and _ are text, not wildcards
    assert found(store, text="no such text") == []
    assert found(store, text="ADT^A08") == [latin1]  # a payload that is not UTF-8
    assert found(store, fields=(("mrn", "12345"),)) == [d, a]  # exact: not the JSON one
    assert found(store, fields=(("mrn", "P-12345"),)) == [d, a]  # each repetition of PID-3
    assert found(store, fields=(("mrn", "1234"),)) == []
    assert found(store, fields=(("control_id", "MSG-2"),)) == [b]
    assert found(store, fields=(("message_type", "ADT^A04"),)) == [d, b, a]
    assert found(store, fields=(("message_type", "ADT"),)) == [latin1, d, b, a]
    assert found(store, fields=(("visit_number", "V-77"),)) == [a]
    both = (("mrn", "12345"), ("visit_number", "V1"))
    assert found(store, fields=both) == [d]
    assert found(store, fields=(("mrn", "12345"),), text="santoso") == [a]
    assert found(store, text="12345", channel="hook") == [c]
    assert found(store, text="12345", since=at(2), until=at(4)) == [c]
    store.cancel(MessageFilter(ids=(a,)), now=at(6))
    assert found(store, text="12345", statuses=("pending",)) == [d, c]


def test_a_search_pages_newest_stored_first_over_everything(store: Store):
    made = [stored(store, f"k{i}", hl7(f"C{i}", "4242"), i) for i in range(7)]
    stored(store, "other", hl7("X", "1111"), 8)
    for filter_ in ({"text": "4242"}, {"fields": (("mrn", "4242"),)}):
        seen: list[int] = []
        cursor = None
        while True:
            page = store.list_messages(MessageFilter(**filter_), limit=3, cursor=cursor, now=NOW)
            assert page.since is None  # a search is not bound to the last 7 days
            seen += [m.id for m in page.items]
            cursor = page.next
            if cursor is None:
                break
        assert seen == made[::-1], filter_


def test_operator_actions_take_a_search_as_their_filter(store: Store):
    a = stored(store, "a", hl7("M1", "555"), 1)
    stored(store, "b", hl7("M2", "556"), 2)
    c = stored(store, "c", hl7("M3", "555"), 3)
    dry = store.cancel(MessageFilter(fields=(("mrn", "555"),)), dry_run=True, now=at(4))
    assert (dry.matched, sorted(dry.sample)) == (2, [a, c])
    done = store.cancel(MessageFilter(text="M3|P"), now=at(4))
    assert done.changed == [c]
    entry = store.audit(limit=1)[0]
    assert entry["target"] == "messages where statuses pending, q M3|P"


def test_a_payload_holding_a_nul_is_stored_and_searched_up_to_it(store: Store):
    """Text holds no NUL: both backends search a payload up to its first."""
    payload = b"MSH|^~\\&|A|B|C|D|20261205||ADT^A04|NUL-1|P|2.5.1\rNTE|1||before\x00after\r"
    message = NewMessage("webhook", "nul", payload, kind="raw")
    stored_id = store.enqueue(message, now=at(1)).id
    assert found(store, text="before") == [stored_id]
    assert found(store, text="after") == []


def test_deleting_a_message_takes_its_index_entries_with_it(store: Store):
    a = stored(store, "a", hl7("GONE-1", "31337"), 1)
    store.db.execute_sql(f"DELETE FROM outboxd_message WHERE id = {store.db.param}", (a,))
    assert found(store, text="GONE-1") == []
    assert found(store, fields=(("mrn", "31337"),)) == []
    rows = store.db.execute_sql("SELECT COUNT(*) FROM outboxd_message_field").fetchone()
    assert rows[0] == 0


@pytest.mark.parametrize(
    ("filter_", "field"),
    [
        ({"text": "ab"}, "q"),
        ({"text": "x" * 101}, "q"),
        ({"text": "line\nbreak"}, "q"),
        ({"fields": (("mrn", ""),)}, "mrn"),
        ({"fields": (("ward", "3"),)}, "ward"),
    ],
)
def test_a_search_that_cannot_be_one_is_refused_naming_its_field(store: Store, filter_, field):
    with pytest.raises(OperatorRefused) as caught:
        store.list_messages(MessageFilter(**filter_), now=NOW)
    assert caught.value.field == field


def test_a_field_that_cannot_be_kept_is_refused_at_enqueue(store: Store):
    with pytest.raises(InvalidMessage, match="cannot be kept"):
        store.enqueue(NewMessage("hie", "k", b"x", fields=(("mrn", "a\nb"),)))
