"""The BPJS Antrean channel against the simulator (``BpjsSimulator``) on 127.0.0.1,
and the simulator itself: its header checks, its rules, its faults, as a process."""

import asyncio
import json
import os
import re
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from daemon.bpjs import crypto, signing
from daemon.channels.base import Envelope, Outcome, Verdict
from daemon.channels.bpjs_antrean.channel import BpjsAntreanChannel
from daemon.channels.bpjs_antrean.settings import BpjsAntreanSettings as BpjsSettings
from daemon.sim.bpjs import BpjsSimulator, Fault
from tests.support.processes import PROCESS_WAIT

pytestmark = pytest.mark.timeout(30)

CONS_ID = "12345"
SECRET = "s3cr3tKey-9f2c"
USER_KEY = "uk-71d0a8c4"
BASE_PATH = "/antreanrs_dev"
WIB = ZoneInfo("Asia/Jakarta")
SERVICE_DATE = date(2024, 3, 1)
BOOKING = "202403010001"


def at(hour: int, minute: int = 0, day: date = SERVICE_DATE) -> int:
    """Epoch ms of a local (WIB) time on ``day``."""
    local = datetime(day.year, day.month, day.day, hour, minute, tzinfo=WIB)
    return int(local.timestamp() * 1000)


def add_body(kodebooking: str = BOOKING, pasienbaru: int = 0, **changes: Any) -> dict[str, Any]:
    return {
        "kodebooking": kodebooking,
        "jenispasien": "JKN",
        "nomorkartu": "0001234567890",
        "nik": "3171234567890001",
        "nohp": "081234567890",
        "kodepoli": "INT",
        "namapoli": "Penyakit Dalam",
        "pasienbaru": pasienbaru,
        "norm": "123456",
        "tanggalperiksa": SERVICE_DATE.isoformat(),
        "kodedokter": 12345,
        "namadokter": "dr. Sari",
        "jampraktek": "08:00-12:00",
        "jeniskunjungan": 1,
        "nomorreferensi": "0001R0010324A000001",
        "nomorantrean": "A-12",
        "angkaantrean": 12,
        "estimasidilayani": at(9),
        "sisakuotajkn": 5,
        "kuotajkn": 30,
        "sisakuotanonjkn": 5,
        "kuotanonjkn": 30,
        "keterangan": "Peserta harap 30 menit lebih awal",
    } | changes


def add(kodebooking: str = BOOKING, pasienbaru: int = 0) -> Envelope:
    body = json.dumps(add_body(kodebooking, pasienbaru)).encode()
    return Envelope(id=1, key=f"{kodebooking}-add", kind="bpjs.add", payload=body, attempt=1)


def task(taskid: int, waktu: int, kodebooking: str = BOOKING, **extra: Any) -> Envelope:
    body = json.dumps({"kodebooking": kodebooking, "taskid": taskid, "waktu": waktu} | extra)
    return Envelope(
        id=taskid,
        key=f"{kodebooking}-{taskid}",
        kind="bpjs.updatewaktu",
        payload=body.encode(),
        attempt=1,
    )


def batal(kodebooking: str = BOOKING, keterangan: str = "pasien batal") -> Envelope:
    body = json.dumps({"kodebooking": kodebooking, "keterangan": keterangan}).encode()
    return Envelope(id=9, key=f"{kodebooking}-batal", kind="bpjs.batal", payload=body, attempt=1)


def assert_envelope(outcome: Outcome, code: int, message: str) -> None:
    """The full answer is kept as the response."""
    assert outcome.response is not None
    assert json.loads(outcome.response) == {"metadata": {"code": code, "message": message}}


@pytest.fixture
async def sim() -> AsyncIterator[BpjsSimulator]:
    async with BpjsSimulator(CONS_ID, SECRET, USER_KEY, timezone="Asia/Jakarta") as s:
        yield s


@pytest.fixture
async def make_channel(sim: BpjsSimulator) -> AsyncIterator[Callable[..., BpjsAntreanChannel]]:
    made: list[BpjsAntreanChannel] = []

    def make(clock: Callable[[], float] = time.time, **settings: object) -> BpjsAntreanChannel:
        values = {
            "kind": "bpjs_antrean",
            "base_url": sim.url(BASE_PATH),
            "cons_id": CONS_ID,
            "secret": SECRET,
            "user_key": USER_KEY,
            "predecessor_wait": "42s",
        } | settings
        channel = BpjsAntreanChannel(BpjsSettings.model_validate(values), clock=clock)
        made.append(channel)
        return channel

    yield make
    for channel in made:
        await channel.close()


@pytest.fixture
def channel(make_channel: Callable[..., BpjsAntreanChannel]) -> BpjsAntreanChannel:
    return make_channel()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound but not listening: a connect to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def secrets_absent(outcome: Outcome) -> bool:
    text = f"{outcome.detail}\n{outcome.response or ''}"
    return SECRET not in text and USER_KEY not in text


# --- the request ---------------------------------------------------------------------


async def test_request_is_signed_and_carries_the_body_unchanged(sim, channel):
    envelope = add()
    before = int(time.time())
    outcome = await channel.sender().send(envelope)
    after = int(time.time())

    assert outcome.verdict is Verdict.DELIVERED
    assert outcome.detail == "antrean/add: BPJS 200: Ok"
    assert_envelope(outcome, 200, "Ok")
    [call] = sim.calls
    assert (call.method, call.path) == ("POST", f"{BASE_PATH}/antrean/add")
    assert call.body == envelope.payload  # byte for byte
    timestamp = call.headers["X-timestamp"]
    assert re.fullmatch(r"[0-9]+", timestamp)
    assert before <= int(timestamp) <= after
    assert call.headers["X-cons-id"] == CONS_ID
    assert call.headers["user_key"] == USER_KEY
    assert call.headers["X-signature"] == signing.signature(CONS_ID, SECRET, timestamp)
    assert call.headers["Content-Type"] == "application/json"
    assert call.headers["User-Agent"].startswith("outboxd/")


async def test_every_attempt_gets_a_fresh_timestamp_and_signature(sim, make_channel):
    ticks = iter([time.time() - 20, time.time() - 10, time.time()])
    channel = make_channel(clock=lambda: next(ticks))
    sim.inject(Fault.TRY_AGAIN, next_calls=2)
    sender = channel.sender()
    verdicts = [(await sender.send(add())).verdict for _ in range(3)]

    assert verdicts == [Verdict.RETRY, Verdict.RETRY, Verdict.DELIVERED]
    stamps = [c.headers["X-timestamp"] for c in sim.calls]
    assert len(set(stamps)) == 3
    signatures = [c.headers["X-signature"] for c in sim.calls]
    assert signatures == [signing.signature(CONS_ID, SECRET, s) for s in stamps]
    assert len(set(signatures)) == 3


async def test_form_content_type_sends_the_same_json_body(sim, make_channel):
    channel = make_channel(content_type="form")
    outcome = await channel.sender().send(add())
    assert outcome.verdict is Verdict.DELIVERED
    [call] = sim.calls
    assert call.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert json.loads(call.body) == add_body()
    assert BOOKING in sim.bookings


async def test_a_base_url_with_a_trailing_slash_reaches_the_same_path(sim, make_channel):
    channel = make_channel(base_url=sim.url(BASE_PATH + "/"))
    assert (await channel.sender().send(add())).verdict is Verdict.DELIVERED
    assert sim.calls[0].path == f"{BASE_PATH}/antrean/add"


# --- credentials ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"secret": "an-old-secret"}, "X-signature tidak valid"),
        ({"user_key": "an-old-user-key"}, "user_key tidak valid"),
        ({"cons_id": "54321"}, "X-cons-id tidak dikenal"),
    ],
)
async def test_wrong_credentials_are_rejected_without_showing_them(
    sim, make_channel, settings, message
):
    channel = make_channel(**settings)
    outcome = await channel.sender().send(add())

    assert outcome.verdict is Verdict.REJECTED
    assert (
        outcome.detail
        == f"antrean/add: unclassified answer: BPJS 401: {message} (HTTP 401 Unauthorized)"
    )
    assert_envelope(outcome, 401, message)
    assert secrets_absent(outcome)
    assert "an-old" not in outcome.detail
    assert sim.bookings == {}


async def test_a_clock_off_by_more_than_the_tolerance_is_refused(sim, make_channel):
    channel = make_channel(clock=lambda: time.time() - 3600)
    outcome = await channel.sender().send(add())
    assert outcome.verdict is Verdict.REJECTED
    assert "X-timestamp kedaluwarsa" in outcome.detail

    within = make_channel(clock=lambda: time.time() - 200)  # default tolerance: 300 s
    assert (await within.sender().send(add())).verdict is Verdict.DELIVERED


# --- the result paths ----------------------------------------------------------------


async def test_new_patient_tasks_in_order_are_all_delivered(sim, channel):
    sender = channel.sender()
    assert (await sender.send(add(pasienbaru=1))).verdict is Verdict.DELIVERED
    times = {n: at(8, 5 * n) for n in (1, 2, 3, 4, 5, 6, 7)}
    for n, waktu in times.items():
        extra = {"jenisresep": "Non racikan"} if n == 5 else {}
        outcome = await sender.send(task(n, waktu, **extra))
        assert outcome.verdict is Verdict.DELIVERED, outcome.detail
    assert sim.tasks(BOOKING) == list(times.items())
    assert sim.bookings[BOOKING].tasks[4].jenisresep == "Non racikan"


async def test_a_predecessor_arriving_late(sim, channel):
    sender = channel.sender()
    await sender.send(add())

    early = await sender.send(task(4, at(9, 30)))

    assert early.verdict is Verdict.RETRY
    assert early.retry_after == 42.0
    assert early.transport_error is False
    assert early.detail == (
        "waiting 42s for the predecessor task (antrean/updatewaktu: BPJS 201: "
        "TaskId=4 tidak valid / TaskId sebelumnya belum terkirim)"
    )
    assert_envelope(early, 201, "TaskId=4 tidak valid / TaskId sebelumnya belum terkirim")
    assert sim.tasks(BOOKING) == []

    assert (await sender.send(task(3, at(9)))).verdict is Verdict.DELIVERED
    assert (await sender.send(task(4, at(9, 30)))).verdict is Verdict.DELIVERED
    assert sim.tasks(BOOKING) == [(3, at(9)), (4, at(9, 30))]


async def test_a_task_before_its_add_waits_for_the_add(sim, channel):
    sender = channel.sender()
    early = await sender.send(task(3, at(9)))
    assert early.verdict is Verdict.RETRY
    assert early.retry_after == 42.0
    assert "TaskId=3 belum ada" in early.detail

    assert (await sender.send(add())).verdict is Verdict.DELIVERED
    assert (await sender.send(task(3, at(9)))).verdict is Verdict.DELIVERED


async def test_a_repeated_add_is_delivered_as_a_duplicate(sim, channel):
    sender = channel.sender()
    await sender.send(add())
    again = await sender.send(add())

    assert again.verdict is Verdict.DELIVERED
    assert again.detail == (
        "duplicate: already recorded by BPJS (antrean/add: BPJS 208: "
        "Terdapat duplikasi Kode Booking)"
    )
    assert_envelope(again, 208, "Terdapat duplikasi Kode Booking")
    assert list(sim.bookings) == [BOOKING]


async def test_a_repeated_task_is_delivered_as_a_duplicate(sim, channel):
    sender = channel.sender()
    await sender.send(add())
    await sender.send(task(3, at(9)))
    again = await sender.send(task(3, at(9)))

    assert again.verdict is Verdict.DELIVERED
    assert again.detail.startswith("duplicate: already recorded by BPJS")
    assert "TaskId=3 sudah ada" in again.detail
    assert sim.tasks(BOOKING) == [(3, at(9))]


async def test_numeric_string_codes_are_understood(channel, sim):
    sim.string_codes = True
    sender = channel.sender()
    assert (await sender.send(add())).detail == "antrean/add: BPJS 200: Ok"
    duplicate = await sender.send(add())
    assert duplicate.verdict is Verdict.DELIVERED
    assert duplicate.detail.startswith("duplicate:")
    assert duplicate.response is not None
    assert json.loads(duplicate.response)["metadata"]["code"] == "208"


async def test_a_time_on_another_date_is_rejected(sim, channel):
    sender = channel.sender()
    await sender.send(add())
    outcome = await sender.send(task(3, at(9, day=SERVICE_DATE + timedelta(days=1))))

    assert outcome.verdict is Verdict.REJECTED
    message = "Tanggal pelayanan untuk Kode Booking tersebut adalah (2024-03-01)"
    assert outcome.detail == (
        f"task time is not on the booking's service date (antrean/updatewaktu: BPJS 201: {message})"
    )
    assert_envelope(outcome, 201, message)
    assert sim.tasks(BOOKING) == []


async def test_the_service_date_is_judged_in_the_hospital_time_zone(sim, channel):
    sender = channel.sender()
    await sender.send(add("B-1"))
    await sender.send(add("B-2"))
    # 00:30 WIB on the service date is still the day before in UTC: accepted
    assert (await sender.send(task(3, at(0, 30), "B-1"))).verdict is Verdict.DELIVERED
    # 23:30 WIB the day before is 16:30 UTC that day: refused
    late = await sender.send(task(3, at(23, 30, day=SERVICE_DATE - timedelta(days=1)), "B-2"))
    assert late.verdict is Verdict.REJECTED
    assert "Tanggal pelayanan" in late.detail


async def test_a_time_not_after_the_previous_task_is_rejected(sim, channel):
    sender = channel.sender()
    await sender.send(add())
    await sender.send(task(3, at(9)))
    outcome = await sender.send(task(4, at(9)))

    assert outcome.verdict is Verdict.REJECTED
    assert outcome.detail == (
        "antrean/updatewaktu: BPJS 201: Waktu TaskId 4 harus setelah waktu TaskId sebelumnya"
    )
    assert sim.tasks(BOOKING) == [(3, at(9))]


async def test_a_returning_patient_has_no_admission_tasks(sim, channel):
    sender = channel.sender()
    await sender.send(add(pasienbaru=0))
    outcome = await sender.send(task(1, at(8)))
    assert outcome.verdict is Verdict.REJECTED
    assert "TaskId 1 tidak berlaku untuk pasien lama" in outcome.detail


async def test_task_99_is_allowed_at_any_point_and_ends_the_visit(sim, channel):
    sender = channel.sender()
    await sender.send(add())
    await sender.send(task(3, at(9)))
    assert (await sender.send(task(99, at(8)))).verdict is Verdict.DELIVERED
    after = await sender.send(task(4, at(10)))
    assert after.verdict is Verdict.REJECTED
    assert "Antrean sudah dibatalkan" in after.detail
    assert sim.tasks(BOOKING) == [(3, at(9)), (99, at(8))]


async def test_batal_is_delivered_once_then_refused(sim, channel):
    sender = channel.sender()
    await sender.send(add())
    first = await sender.send(batal())
    assert (first.verdict, first.detail) == (Verdict.DELIVERED, "antrean/batal: BPJS 200: Ok")
    assert sim.bookings[BOOKING].cancelled == "pasien batal"

    again = await sender.send(batal())
    assert again.verdict is Verdict.REJECTED
    assert again.detail == "antrean/batal: BPJS 201: Antrean Tidak Ditemukan atau Sudah Dibatalkan"


async def test_an_add_bpjs_would_refuse_is_not_sent(sim, channel):
    body = json.dumps(add_body(jenispasien="UMUM")).encode()
    outcome = await channel.sender().send(
        Envelope(id=1, key="k", kind="bpjs.add", payload=body, attempt=1)
    )
    assert outcome.verdict is Verdict.REJECTED
    assert outcome.detail.startswith("not sent: antrean/add body: jenispasien: expected one of")
    assert sim.calls == []


# --- retries -------------------------------------------------------------------------


async def test_gagal_dicoba_kembali_is_retried_and_changes_nothing(sim, channel):
    sender = channel.sender()
    await sender.send(add())
    sim.inject(Fault.TRY_AGAIN, next_calls=1)

    outcome = await sender.send(task(3, at(9)))

    assert outcome.verdict is Verdict.RETRY
    assert outcome.transport_error is False
    assert outcome.retry_after is None
    assert outcome.detail == "antrean/updatewaktu: BPJS 404: Gagal dicoba kembali"
    assert_envelope(outcome, 404, "Gagal dicoba kembali")
    assert sim.tasks(BOOKING) == []
    assert (await sender.send(task(3, at(9)))).verdict is Verdict.DELIVERED


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_server_errors_are_retried_but_not_as_transport_errors(sim, channel, status):
    sim.faults.status = status
    sim.inject(Fault.SERVER_ERROR, next_calls=1)
    outcome = await channel.sender().send(add())

    assert outcome.verdict is Verdict.RETRY
    assert outcome.transport_error is False  # BPJS answered
    assert outcome.detail.startswith(f"antrean/add: HTTP {status}")
    assert outcome.response is not None and "Service Unavailable" in outcome.response
    assert sim.bookings == {}


async def test_429_is_retried_after_what_bpjs_asks(sim, channel):
    sim.faults.retry_after = "7"
    sim.inject(Fault.TOO_MANY, next_calls=1)
    outcome = await channel.sender().send(add())

    assert outcome.verdict is Verdict.RETRY
    assert outcome.retry_after == 7.0
    assert outcome.transport_error is False
    assert outcome.detail == ("antrean/add: HTTP 429 Too Many Requests; asked to retry after 7s")


async def test_a_body_that_is_not_json_is_retried_and_kept(sim, channel):
    sim.inject(Fault.GARBAGE, next_calls=1)
    outcome = await channel.sender().send(add())

    assert outcome.verdict is Verdict.RETRY
    assert outcome.transport_error is False
    assert outcome.detail == "antrean/add: answer is not JSON (HTTP 200 OK)"
    assert outcome.response == "<html><body>Sedang dalam pemeliharaan</body></html>"


async def test_a_timeout_is_a_transport_error(sim, make_channel):
    sim.faults.delay = 3600  # no answer within the test: only the timeout ends the send
    channel = make_channel(timeout=0.3)
    outcome = await channel.sender().send(add())

    assert outcome.verdict is Verdict.RETRY
    assert outcome.transport_error is True
    assert outcome.detail == "no response within 0.3s"
    assert outcome.response is None


async def test_connection_refused_is_a_transport_error(make_channel, closed_port):
    channel = make_channel(base_url=f"http://127.0.0.1:{closed_port}{BASE_PATH}")
    outcome = await channel.sender().send(add())
    assert outcome.verdict is Verdict.RETRY
    assert outcome.transport_error is True
    assert outcome.detail.startswith(f"cannot connect to 127.0.0.1:{closed_port}")
    assert secrets_absent(outcome)


async def test_a_fraction_of_faults_then_recovery(sim, channel):
    sim.inject(Fault.SERVER_ERROR, fraction=1.0)
    sender = channel.sender()
    assert (await sender.send(add())).verdict is Verdict.RETRY
    sim.faults.fraction = 0.0
    assert (await sender.send(add())).verdict is Verdict.DELIVERED


# --- what is never sent --------------------------------------------------------------


async def test_an_unknown_kind_is_rejected_without_a_call(sim, channel):
    envelope = Envelope(id=1, key="k", kind="bpjs.getlisttask", payload=b"{}", attempt=1)
    outcome = await channel.sender().send(envelope)
    assert outcome.verdict is Verdict.REJECTED
    assert outcome.detail == (
        "not sent: unknown message kind 'bpjs.getlisttask' for BPJS Antrean "
        "(expected bpjs.add, bpjs.batal, bpjs.updatewaktu)"
    )
    assert sim.calls == []


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"not json", "antrean/updatewaktu body is not JSON"),
        (b'{"kodebooking": "B", "taskid": 8, "waktu": 1709258400000}', "taskid: expected"),
        (b'{"kodebooking": "B", "taskid": 3, "waktu": 1709258400}', "(seconds?)"),
    ],
)
async def test_a_bad_payload_is_rejected_without_a_call(sim, channel, payload, problem):
    envelope = Envelope(id=1, key="k", kind="bpjs.updatewaktu", payload=payload, attempt=1)
    outcome = await channel.sender().send(envelope)
    assert outcome.verdict is Verdict.REJECTED
    assert outcome.detail.startswith("not sent: ")
    assert problem in outcome.detail
    assert sim.calls == []


# --- the session ---------------------------------------------------------------------


async def test_senders_share_one_session_and_close_releases_it(sim, channel):
    first, second = channel.sender(), channel.sender()
    assert channel.session is None  # created on the first send, in the loop
    await asyncio.gather(first.send(add("B-1")), second.send(add("B-2")))
    session = channel.session
    assert session is not None
    await first.close()  # a worker leaving does not close the shared session
    assert not session.closed
    assert (await second.send(add("B-3"))).verdict is Verdict.DELIVERED

    await channel.close()

    assert session.closed
    assert channel.session is None
    outcome = await second.send(add("B-4"))
    assert (outcome.verdict, outcome.detail) == (Verdict.RETRY, "channel is closed")
    assert sorted(sim.bookings) == ["B-1", "B-2", "B-3"]
    await channel.close()  # twice is harmless


async def test_cancellation_propagates(sim, channel):
    sim.faults.delay = 5
    sending = asyncio.create_task(channel.sender().send(add()))
    await asyncio.sleep(0.2)
    sending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sending


# --- the simulator on its own --------------------------------------------------------


async def post(
    sim: BpjsSimulator,
    call: str,
    body: bytes,
    content_type: str = "application/json",
    timestamp: str | None = None,
) -> tuple[int, Any, str]:
    """A signed call made by hand; its status, answer (decoded when JSON) and timestamp."""
    timestamp = timestamp or signing.timestamp_text(time.time())
    headers = signing.signed_headers(CONS_ID, SECRET, USER_KEY, timestamp)
    headers["Content-Type"] = content_type
    async with (
        aiohttp.ClientSession() as session,
        session.post(sim.url(f"/{call}"), data=body, headers=headers) as response,
    ):
        text = await response.text()
    try:
        return response.status, json.loads(text), timestamp
    except ValueError:
        return response.status, text, timestamp


async def test_getlisttask_answers_the_encrypted_task_list(sim, channel):
    sender = channel.sender()
    await sender.send(add())
    await sender.send(task(3, at(9)))
    await sender.send(task(4, at(9, 30)))

    status, answer, timestamp = await post(
        sim, "antrean/getlisttask", b'{"kodebooking": "%s"}' % BOOKING.encode()
    )

    assert status == 200
    assert answer["metadata"] == {"code": 200, "message": "Ok"}
    listed = crypto.decrypt(answer["response"], CONS_ID, SECRET, timestamp)["list"]
    assert [(t["kodebooking"], t["taskid"]) for t in listed] == [(BOOKING, 3), (BOOKING, 4)]
    assert [t["waktu"] for t in listed] == ["01-03-2024 09:00:00 WIB", "01-03-2024 09:30:00 WIB"]
    assert all(t["taskname"] and t["wakturs"].endswith(" WIB") for t in listed)
    with pytest.raises(crypto.DecryptError):  # the key is bound to the call's timestamp
        crypto.decrypt(answer["response"], CONS_ID, SECRET, str(int(timestamp) + 1))


async def test_getlisttask_of_an_unknown_booking(sim):
    status, answer, _ = await post(sim, "antrean/getlisttask", b'{"kodebooking": "nope"}')
    assert (status, answer) == (200, {"metadata": {"code": 201, "message": "Data Tidak Ditemukan"}})


async def test_a_form_encoded_body_is_accepted(sim):
    await post(sim, "antrean/add", json.dumps(add_body()).encode())
    form = f"kodebooking={BOOKING}&taskid=3&waktu={at(9)}".encode()
    status, answer, _ = await post(
        sim, "antrean/updatewaktu", form, "application/x-www-form-urlencoded"
    )
    assert (status, answer["metadata"]["code"]) == (200, 200)
    assert sim.tasks(BOOKING) == [(3, at(9))]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"kodebooking=x&taskid=3", "body: expected a JSON object, got null"),
        (b'{"kodebooking": "x", "taskid": 3}', "waktu: missing"),
    ],
)
async def test_a_body_it_cannot_read_gets_a_201(sim, body, message):
    status, answer, _ = await post(sim, "antrean/updatewaktu", body)  # form body, JSON type
    assert (status, answer) == (200, {"metadata": {"code": 201, "message": message}})


async def test_an_unknown_path_gets_a_404_envelope(sim):
    status, answer, _ = await post(sim, "antrean/ubah", b"{}")
    assert status == 404
    assert answer["metadata"]["code"] == 404


async def test_a_malformed_timestamp_is_refused(sim):
    status, answer, _ = await post(sim, "antrean/add", b"{}", timestamp="17e8")
    assert (status, answer["metadata"]) == (
        401,
        {"code": 401, "message": "X-timestamp tidak valid"},
    )


async def test_seeded_fraction_of_faults_is_repeatable():
    async def run(seed: int) -> list[int]:
        async with BpjsSimulator(CONS_ID, SECRET, USER_KEY, seed=seed) as sim:
            sim.inject(Fault.SERVER_ERROR, fraction=0.5)
            return [
                (await post(sim, "antrean/getlisttask", b'{"kodebooking": "x"}'))[0]
                for _ in range(12)
            ]

    first = await run(7)
    assert first == await run(7)
    assert set(first) == {200, 503}


async def test_keep_bounds_the_record_of_calls():
    async with BpjsSimulator(CONS_ID, SECRET, USER_KEY, keep=2) as sim:
        for kodebooking in ("a", "b", "c"):
            await post(sim, "antrean/getlisttask", b'{"kodebooking": "%s"}' % kodebooking.encode())
        assert [json.loads(c.body)["kodebooking"] for c in sim.calls] == ["b", "c"]


async def test_bookings_are_listed_for_the_demo(sim, channel):
    sender = channel.sender()
    await sender.send(add())
    await sender.send(task(3, at(9)))
    async with aiohttp.ClientSession() as session, session.get(sim.url("/_sim/bookings")) as r:
        listed = await r.json()
    assert listed == [
        {
            "kodebooking": BOOKING,
            "tanggalperiksa": "2024-03-01",
            "pasienbaru": 0,
            "cancelled": None,
            "tasks": [{"taskid": 3, "waktu": at(9)}],
        }
    ]


async def _start_process(*extra: str) -> tuple[asyncio.subprocess.Process, int]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "daemon.sim.bpjs",
        "--port",
        "0",
        "--cons-id",
        CONS_ID,
        "--timezone",
        "Asia/Jakarta",
        *extra,
        stderr=asyncio.subprocess.PIPE,
        env=os.environ | {"OUTBOXD_SIM_BPJS_SECRET": SECRET, "OUTBOXD_SIM_BPJS_USER_KEY": USER_KEY},
    )
    assert process.stderr is not None
    line = await asyncio.wait_for(process.stderr.readline(), 10)
    match = re.search(rb"listening .*port=(\d+)", line)
    assert match, line
    return process, int(match[1])


@pytest.mark.timeout(3 * PROCESS_WAIT)  # a process: slow to start on a loaded machine
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_runs_as_a_process_and_exits_0_on_a_signal(make_channel, signum):
    process, port = await _start_process()
    try:
        channel = make_channel(base_url=f"http://127.0.0.1:{port}{BASE_PATH}")
        sender = channel.sender()
        assert (await sender.send(add())).verdict is Verdict.DELIVERED
        assert (await sender.send(task(3, at(9)))).verdict is Verdict.DELIVERED
        assert (await sender.send(add())).detail.startswith("duplicate:")

        process.send_signal(signum)
        assert await asyncio.wait_for(process.wait(), PROCESS_WAIT) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.timeout(3 * PROCESS_WAIT)  # a process: slow to start on a loaded machine
async def test_the_process_injects_faults_from_its_options(make_channel):
    process, port = await _start_process("--fault", "gagal", "--fail-next", "1")
    try:
        channel = make_channel(base_url=f"http://127.0.0.1:{port}")
        sender = channel.sender()
        assert "Gagal dicoba kembali" in (await sender.send(add())).detail
        assert (await sender.send(add())).verdict is Verdict.DELIVERED
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), PROCESS_WAIT) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.timeout(3 * PROCESS_WAIT)  # a process: slow to start on a loaded machine
async def test_the_process_needs_the_secret():
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "daemon.sim.bpjs",
        "--cons-id",
        CONS_ID,
        stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if not k.startswith("OUTBOXD_SIM_BPJS_")},
    )
    _, err = await asyncio.wait_for(process.communicate(), PROCESS_WAIT)
    assert process.returncode == 2
    assert b"--secret and --user-key" in err
