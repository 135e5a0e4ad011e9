"""Planning a visit's BPJS Antrean steps from tables: order, holds, zero dates
(absent times), cancellations, and the epoch ms of local times in two zones."""

from __future__ import annotations

import json
from calendar import timegm
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from daemon.bpjs.plan import Booking, epoch_ms, plan_visit, plan_visits

DAY = date(2026, 11, 23)
JAKARTA = ZoneInfo("Asia/Jakarta")  # UTC+7
MAKASSAR = ZoneInfo("Asia/Makassar")  # UTC+8
KB = "KB-1"
CHANNEL = "bpjs"

ADD_FIELDS: dict[str, Any] = {
    "jenispasien": "JKN",
    "nomorkartu": "0001234567890",
    "nik": "3212345678987654",
    "nohp": "085635228888",
    "kodepoli": "ANA",
    "namapoli": "Anak",
    "norm": "123345",
    "kodedokter": 12345,
    "namadokter": "Dr. Hendra",
    "jampraktek": "08:00-16:00",
    "jeniskunjungan": 1,
    "nomorreferensi": "0001R0040116A000001",
    "nomorantrean": "A-12",
    "angkaantrean": 12,
    "estimasidilayani": 1795917600000,
    "sisakuotajkn": 5,
    "kuotajkn": 30,
    "sisakuotanonjkn": 5,
    "kuotanonjkn": 30,
    "keterangan": "",
}


def at(clock: str, day: date = DAY) -> datetime:
    """A naive local wall-clock time, as Khanza stores it."""
    hour, minute = map(int, clock.split(":"))
    return datetime(day.year, day.month, day.day, hour, minute)


def ms(clock: str, zone: ZoneInfo = JAKARTA, day: date = DAY) -> int:
    """Epoch ms of a local time, computed independently of the code under test."""
    offset_hours = {"Asia/Jakarta": 7, "Asia/Makassar": 8}[str(zone)]
    naive = at(clock, day)
    return (timegm(naive.timetuple()) - offset_hours * 3600) * 1000


def booking(
    times: dict[int, str | datetime | None] | None = None,
    *,
    new: bool = False,
    cancelled: bool = False,
    add: dict[str, Any] | None = None,
    problem: str | None = None,
) -> Booking:
    parsed = {
        task: (at(value) if isinstance(value, str) else value)
        for task, value in (times or {}).items()
    }
    return Booking(
        kodebooking=KB,
        service_date=DAY,
        new_patient=new,
        add={**ADD_FIELDS, **(add or {})},
        times=parsed,
        cancelled=cancelled,
        add_problem=problem,
    )


def plan(b: Booking, progress: dict[str, dict[str, Any]] | None = None, zone=JAKARTA):
    return plan_visit(b, progress or {}, zone, CHANNEL)


def order(messages) -> list[tuple[str, str | None]]:
    """(key, after_key) of each message, without the kodebooking prefix."""

    def short(key: str | None) -> str | None:
        return None if key is None else key.split(":", 1)[1]

    return [(short(m.key), short(m.after_key)) for m in messages]


def statuses(entries: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {step: e["status"] for step, e in entries.items()}


# --- order -------------------------------------------------------------------------


def test_a_returning_patient_goes_add_then_3_4_5_each_after_the_one_before():
    messages, entries = plan(booking({3: "08:00", 4: "08:20", 5: "09:00"}))
    assert order(messages) == [
        ("add", None),
        ("task:3", "add"),
        ("task:4", "task:3"),
        ("task:5", "task:4"),
    ]
    assert all(m.channel == CHANNEL and m.group_key == KB for m in messages)
    assert [m.kind for m in messages] == ["bpjs.add"] + ["bpjs.updatewaktu"] * 3
    assert entries == {
        "add": {"status": "queued"},
        "3": {"status": "queued", "waktu": ms("08:00")},
        "4": {"status": "queued", "waktu": ms("08:20")},
        "5": {"status": "queued", "waktu": ms("09:00")},
    }


def test_payloads_are_the_bpjs_bodies():
    messages, _ = plan(booking({3: "08:00"}, new=False))
    add = json.loads(messages[0].payload)
    assert add["kodebooking"] == KB and add["tanggalperiksa"] == "2026-11-23"
    assert add["pasienbaru"] == 0 and add["kodedokter"] == 12345
    assert json.loads(messages[1].payload) == {
        "kodebooking": KB,
        "taskid": 3,
        "waktu": ms("08:00"),
    }


@pytest.mark.parametrize(
    ("new", "times", "planned"),
    [
        # a new patient: 1-2-3-4-5-6-7
        (True, {1: "07:30", 2: "07:40", 3: "08:00", 4: "08:10"}, ["add", "1", "2", "3", "4"]),
        (True, dict.fromkeys(range(1, 8), None) | {1: "07:00"}, ["add", "1"]),
        # a returning patient has no admission tasks: times for 1 and 2 are ignored
        (False, {1: "07:30", 2: "07:40", 3: "08:00"}, ["add", "3"]),
        # a visit with its prescription: 3-4-5-6-7
        (
            False,
            {3: "08:00", 4: "08:10", 5: "08:30", 6: "08:45", 7: "09:15"},
            ["add", "3", "4", "5", "6", "7"],
        ),
        # nothing happened yet: the add alone
        (False, {}, ["add"]),
    ],
)
def test_the_patient_decides_the_tasks(new, times, planned):
    messages, entries = plan(booking(times, new=new))
    assert [m.key.rsplit(":", 1)[1] for m in messages] == planned
    assert [s for s, e in entries.items() if e["status"] == "queued"] == planned


# --- holds ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("new", "times", "expected"),
    [
        # a time earlier than its predecessor: held with both times, later steps wait
        (
            False,
            {3: "10:00", 4: "10:05", 5: "10:02", 6: "10:30"},
            {
                "5": "task 5 at 10:02 is earlier than task 4 at 10:05",
                "6": "waiting for task 5",
            },
        ),
        # the same time is not later
        (
            False,
            {3: "10:00", 4: "10:00"},
            {
                "4": "task 4 at 10:00 is not later than task 3 at 10:00; "
                "BPJS takes each task only after the one before"
            },
        ),
        # a zero date (no time) in the middle: the tasks after it wait
        (
            False,
            {3: "10:00", 4: None, 5: "10:30", 6: None, 7: "11:00"},
            {"5": "waiting for task 4", "7": "waiting for task 4"},
        ),
        (False, {3: "10:00", 5: "10:30"}, {"5": "waiting for task 4"}),
        # a new patient without admission times: task 3 waits for task 1
        (
            True,
            {3: "10:00", 4: "10:10"},
            {
                "3": "waiting for task 1 (a new patient's visit starts at task 1; "
                "no time for it yet)",
                "4": "waiting for task 1 (a new patient's visit starts at task 1; "
                "no time for it yet)",
            },
        ),
        # a time on another date
        (
            False,
            {3: "10:00", 4: at("10:05", date(2026, 11, 24))},
            {"4": "task 4 at 2026-11-24 10:05 is not on the service date 2026-11-23"},
        ),
    ],
)
def test_times_out_of_order_are_held_with_the_reason(new, times, expected):
    messages, entries = plan(booking(times, new=new))
    held = {s: e["reason"] for s, e in entries.items() if e["status"] == "held"}
    assert held == expected
    assert not {m.key.rsplit(":", 1)[1] for m in messages} & set(expected)


def test_a_held_step_goes_once_the_source_is_corrected():
    _, progress = plan(booking({3: "10:00", 4: "10:05", 5: "10:02"}))
    assert statuses(progress) == {"add": "queued", "3": "queued", "4": "queued", "5": "held"}
    messages, changed = plan(booking({3: "10:00", 4: "10:05", 5: "10:12"}), progress)
    assert order(messages) == [("task:5", "task:4")]
    assert changed == {"5": {"status": "queued", "waktu": ms("10:12")}}


def test_a_step_already_under_way_is_not_planned_again_and_its_queued_time_counts():
    # task 4 was queued at 10:05; the source now says 10:20 (edited): the queued time
    # stands, and task 5 at 10:10 is later than it
    progress = {
        "add": {"status": "sent", "sent_at": "x"},
        "3": {"status": "sent", "waktu": ms("10:00")},
        "4": {"status": "queued", "waktu": ms("10:05")},
    }
    messages, entries = plan(booking({3: "10:00", 4: "10:20", 5: "10:10"}), progress)
    assert order(messages) == [("task:5", "task:4")]
    assert entries == {"5": {"status": "queued", "waktu": ms("10:10")}}


def test_nothing_waits_for_a_step_already_sent():
    progress = {
        "add": {"status": "sent"},
        "3": {"status": "sent", "waktu": ms("10:00")},
    }
    messages, _ = plan(booking({3: "10:00", 4: "10:05"}), progress)
    assert order(messages) == [("task:4", None)]


def test_a_failed_step_holds_the_steps_after_it():
    progress = {
        "add": {"status": "sent"},
        "3": {"status": "failed", "reason": "201 Rujukan tidak valid", "waktu": ms("10:00")},
    }
    messages, entries = plan(booking({3: "10:00", 4: "10:05"}), progress)
    assert messages == []
    assert entries == {"4": {"status": "held", "reason": "waiting for task 3 (failed)"}}


def test_planning_again_with_the_stored_progress_changes_nothing():
    b = booking({3: "10:00", 4: "10:05", 5: "10:02"})
    _, entries = plan(b)
    assert plan(b, entries) == ([], {})


# --- the add -------------------------------------------------------------------------


def test_an_add_that_cannot_be_built_holds_everything_with_the_reason():
    messages, entries = plan(booking({3: "10:00"}, add={"kodedokter": "DR-7"}))
    assert messages == []
    assert entries["add"]["status"] == "held"
    assert entries["add"]["reason"].startswith("cannot build antrean/add: kodedokter:")
    assert entries["3"] == {"status": "held", "reason": "waiting for the add"}


def test_a_source_problem_with_the_add_is_the_reason():
    problem = "doctor 'D01' has no BPJS code in maping_dokter_dpjpvclaim"
    messages, entries = plan(booking({}, problem=problem))
    assert messages == []
    assert entries == {"add": {"status": "held", "reason": f"cannot build antrean/add: {problem}"}}


# --- cancellation ---------------------------------------------------------------------


def test_a_cancellation_goes_after_the_last_task():
    messages, entries = plan(booking({3: "10:00", 4: "10:05", 99: "10:30"}, cancelled=True))
    assert order(messages)[-1] == ("task:99", "task:4")
    assert entries["99"] == {"status": "queued", "waktu": ms("10:30")}


def test_a_cancellation_before_any_task_goes_right_after_the_add():
    messages, _ = plan(booking({99: "07:00"}, cancelled=True))
    assert order(messages) == [("add", None), ("task:99", "add")]


def test_a_time_for_99_is_a_cancellation_even_without_the_flag():
    messages, _ = plan(booking({99: "07:00"}))
    assert [m.key for m in messages] == [f"{KB}:add", f"{KB}:task:99"]


def test_a_cancellation_without_a_time_is_held_with_cancel_time_hold():
    messages, entries = plan_visit(
        booking({3: "10:00"}, cancelled=True), {}, JAKARTA, CHANNEL, cancel_time="hold"
    )
    assert order(messages) == [("add", None), ("task:3", "add")]
    assert entries["99"] == {
        "status": "held",
        "reason": "cancelled, but the source has no time for the cancellation",
    }


SEEN = datetime(2026, 11, 23, 4, 15, 30, tzinfo=UTC)  # 11:15:30 WIB: the poll that saw it


def test_a_cancellation_without_a_time_goes_at_the_time_it_was_observed():
    messages, entries = plan_visit(
        booking({3: "10:00"}, cancelled=True), {}, JAKARTA, CHANNEL, SEEN
    )
    assert order(messages) == [("add", None), ("task:3", "add"), ("task:99", "task:3")]
    observed = ms("11:15") + 30_000
    assert json.loads(messages[-1].payload) == {
        "kodebooking": KB,
        "taskid": 99,
        "waktu": observed,
    }
    assert entries["99"]["status"] == "queued"
    assert entries["99"]["waktu"] == observed
    assert entries["99"]["source"]["time"] == "observed"  # said so in the progress


def test_an_observed_cancellation_keeps_the_first_time_it_was_seen():
    """Held behind an add that cannot be built, it keeps the time of the first poll
    that saw it, not the time of the poll that finally sends it."""
    first = plan_visit(
        booking({}, cancelled=True, problem="poli not mapped"), {}, JAKARTA, CHANNEL, SEEN
    )
    held = first[1]["99"]
    assert held["status"] == "held" and held["source"]["waktu"] == ms("11:15") + 30_000
    later = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
    progress = {"add": {"status": "sent"}, "99": held}
    messages, entries = plan_visit(booking({}, cancelled=True), progress, JAKARTA, CHANNEL, later)
    assert [m.key for m in messages] == [f"{KB}:task:99"]
    assert json.loads(messages[0].payload)["waktu"] == ms("11:15") + 30_000
    assert entries["99"]["source"]["waktu"] == ms("11:15") + 30_000


def test_a_time_the_source_has_wins_over_observing():
    messages, entries = plan_visit(
        booking({3: "10:00", 99: "10:45"}, cancelled=True), {}, JAKARTA, CHANNEL, SEEN
    )
    assert json.loads(messages[-1].payload)["waktu"] == ms("10:45")
    assert "source" not in entries["99"]


def test_no_task_goes_after_a_cancellation():
    progress = {
        "add": {"status": "sent"},
        "3": {"status": "sent", "waktu": ms("10:00")},
        "99": {"status": "queued", "waktu": ms("10:30")},
    }
    messages, entries = plan(booking({3: "10:00", 4: "10:40", 99: "10:30"}), progress)
    assert messages == []
    assert entries == {
        "4": {"status": "held", "reason": "the booking is cancelled: task 99 went before it"}
    }


def test_a_cancellation_waits_for_an_add_that_cannot_go():
    messages, entries = plan(booking({99: "10:30"}, add={"kodepoli": ""}))
    assert messages == []
    assert entries["99"] == {"status": "held", "reason": "waiting for the add"}


# --- time zones ------------------------------------------------------------------------


@pytest.mark.parametrize("zone", [JAKARTA, MAKASSAR], ids=str)
def test_local_times_become_epoch_ms_in_the_hospital_zone(zone):
    messages, entries = plan(booking({3: "08:00", 4: "08:15"}), zone=zone)
    assert [json.loads(m.payload).get("waktu") for m in messages[1:]] == [
        ms("08:00", zone),
        ms("08:15", zone),
    ]
    assert entries["3"]["waktu"] == ms("08:00", zone)


def test_the_same_wall_clock_is_an_hour_apart_in_jakarta_and_makassar():
    moment = at("08:00")
    assert epoch_ms(moment, JAKARTA) == 1795395600000  # 2026-11-23T01:00:00Z
    assert epoch_ms(moment, MAKASSAR) == 1795392000000  # 2026-11-23T00:00:00Z
    assert epoch_ms(moment, JAKARTA) - epoch_ms(moment, MAKASSAR) == 3_600_000


def test_an_aware_time_is_taken_as_it_is():
    aware = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)  # 08:00 in Jakarta, 09:00 in Makassar
    assert epoch_ms(aware, JAKARTA) == epoch_ms(aware, MAKASSAR) == 1795395600000
    _, entries = plan(booking({3: aware}), zone=MAKASSAR)
    assert entries["3"]["waktu"] == 1795395600000


def test_the_service_date_is_judged_in_the_hospital_zone():
    # 23:30 on the 23rd in Jakarta is already the 24th in Makassar
    late = datetime(2026, 11, 23, 23, 30, tzinfo=JAKARTA)
    _, in_jakarta = plan(booking({3: late}), zone=JAKARTA)
    _, in_makassar = plan(booking({3: late}), zone=MAKASSAR)
    assert in_jakarta["3"]["status"] == "queued"
    assert in_makassar["3"] == {
        "status": "held",
        "reason": "task 3 at 2026-11-24 00:30 is not on the service date 2026-11-23",
    }


# --- batches ------------------------------------------------------------------------------


def test_a_batch_plans_each_visit_and_counts_what_is_held():
    one = booking({3: "10:00", 4: "09:00"})
    two = Booking("KB-2", DAY, False, ADD_FIELDS, {3: at("11:00")})
    result = plan_visits([one, two], {"KB-2": {"add": {"status": "sent"}}}, JAKARTA, CHANNEL)
    assert [m.key for m in result.messages] == ["KB-1:add", "KB-1:task:3", "KB-2:task:3"]
    assert set(result.progress) == {"KB-1", "KB-2"}
    assert result.held == 1
