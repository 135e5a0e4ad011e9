"""BPJS Antrean protocol facts without I/O: signing, the encrypted response,
request bodies and the result-code table (tests/integration/test_bpjs_channel.py
runs them over sockets)."""

import base64
import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lzstring import LZString

from daemon.bpjs import crypto, payloads, signing
from daemon.bpjs.crypto import DecryptError
from daemon.bpjs.payloads import AddAntrean, BatalAntrean, GetListTask, PayloadError, UpdateWaktu
from daemon.bpjs.results import Result, classify_answer, classify_envelope, wrong_service_date
from daemon.channels.bpjs_antrean.channel import check_payload

# the reference's known-answer vectors
CONS_ID = "12345"
SECRET = "s3cr3tKey"
TIMESTAMP = "1700000000"
SIGNATURE = "yuYFvrUAMWkETEHSRatwHXw6hrp7gokpNq7UYi/A8dY="
KEY_HEX = "a25486e9c7537bc1d9175b153f07bc3d73704c44de853f7a4578c6ee5adc44e0"
PLAIN = '{"ok":1}'
LZ = "N4Ig9g1iBcCMC+Q"
RESPONSE = "6P1INtLKktYCUfsx1pWZzA=="

WAKTU = 1709258400000  # 2024-03-01 09:00 WIB in epoch ms


# --- signing -------------------------------------------------------------------------


def test_signature_known_answer():
    assert signing.signature(CONS_ID, SECRET, TIMESTAMP) == SIGNATURE


def test_signed_headers_carry_all_four_values():
    headers = signing.signed_headers(CONS_ID, SECRET, "user-key-1", TIMESTAMP)
    assert headers == {
        "X-cons-id": CONS_ID,
        "X-timestamp": TIMESTAMP,
        "X-signature": SIGNATURE,
        "user_key": "user-key-1",
    }


@pytest.mark.parametrize(
    ("epoch", "text"), [(1700000000, "1700000000"), (1700000000.999, "1700000000"), (0, "0")]
)
def test_timestamp_is_whole_seconds_as_a_decimal_string(epoch, text):
    assert signing.timestamp_text(epoch) == text


def test_signature_changes_with_the_timestamp_and_the_secret():
    assert signing.signature(CONS_ID, SECRET, "1700000001") != SIGNATURE
    assert signing.signature(CONS_ID, "other", TIMESTAMP) != SIGNATURE
    assert signing.signature("12346", SECRET, TIMESTAMP) != SIGNATURE


@pytest.mark.parametrize(
    ("value", "matches"),
    [(SIGNATURE, True), (f" {SIGNATURE} ", True), (SIGNATURE[:-2], False), ("", False)],
)
def test_signature_matches(value, matches):
    assert signing.signature_matches(CONS_ID, SECRET, TIMESTAMP, value) is matches


def test_a_missing_signature_does_not_match():
    assert signing.signature_matches(CONS_ID, SECRET, TIMESTAMP, None) is False


# --- the encrypted response ----------------------------------------------------------


def test_key_known_answer():
    assert crypto.response_key(CONS_ID, SECRET, TIMESTAMP).hex() == KEY_HEX


def test_lz_string_layer_known_answer():
    assert LZString.compressToEncodedURIComponent(PLAIN) == LZ
    assert LZString.decompressFromEncodedURIComponent(LZ) == PLAIN


def test_aes_layer_known_answer():
    key = bytes.fromhex(KEY_HEX)
    assert crypto.seal(LZ, key) == RESPONSE
    assert crypto.unseal(RESPONSE, key) == LZ


def test_encrypt_known_answer():
    assert crypto.encrypt({"ok": 1}, CONS_ID, SECRET, TIMESTAMP) == RESPONSE


def test_decrypt_known_answer():
    assert crypto.decrypt(RESPONSE, CONS_ID, SECRET, TIMESTAMP) == {"ok": 1}


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(
    value=json_values,
    cons_id=st.text(min_size=1, max_size=10),
    secret=st.text(max_size=20),
    timestamp=st.integers(min_value=0, max_value=2**40).map(str),
)
def test_encrypt_decrypt_round_trip(value, cons_id, secret, timestamp):
    sealed = crypto.encrypt(value, cons_id, secret, timestamp)
    base64.b64decode(sealed, validate=True)  # plain base64, as BPJS sends it
    assert crypto.decrypt(sealed, cons_id, secret, timestamp) == value


def test_decrypt_with_another_timestamp_fails_cleanly():
    with pytest.raises(DecryptError):
        crypto.decrypt(RESPONSE, CONS_ID, SECRET, "1700000001")


@pytest.mark.parametrize(
    ("response", "problem"),
    [
        ("not base64!", "not base64"),
        (base64.b64encode(b"short").decode(), "not a whole number of AES blocks"),
        ("", "not a whole number of AES blocks"),
    ],
)
def test_decrypt_names_the_layer_that_failed(response, problem):
    with pytest.raises(DecryptError, match=problem):
        crypto.decrypt(response, CONS_ID, SECRET, TIMESTAMP)


@pytest.mark.parametrize(
    ("inner", "problem"),
    [
        ("this is not lz!", "not LZ-string"),
        (LZString.compressToEncodedURIComponent("not json"), "not JSON"),
    ],
)
def test_decrypt_refuses_a_good_cipher_text_with_bad_content(inner, problem):
    sealed = crypto.seal(inner, crypto.response_key(CONS_ID, SECRET, TIMESTAMP))
    with pytest.raises(DecryptError, match=problem):
        crypto.decrypt(sealed, CONS_ID, SECRET, TIMESTAMP)


@pytest.mark.parametrize("response", [None, 42, {"list": []}, ["x"]])
def test_decrypt_refuses_a_response_that_is_not_a_string(response):
    with pytest.raises(DecryptError, match="not an encrypted string"):
        crypto.decrypt(response, CONS_ID, SECRET, TIMESTAMP)


@settings(max_examples=200, deadline=None)
@given(st.text() | st.binary().map(lambda b: base64.b64encode(b).decode()))
def test_decrypt_raises_only_decrypt_error(response):
    with contextlib.suppress(DecryptError):
        crypto.decrypt(response, CONS_ID, SECRET, TIMESTAMP)


# --- payloads ------------------------------------------------------------------------


def add_body(**changes: Any) -> dict[str, Any]:
    body = {
        "kodebooking": "202403010001",
        "jenispasien": "JKN",
        "nomorkartu": "0001234567890",
        "nik": "3171234567890001",
        "nohp": "081234567890",
        "kodepoli": "INT",
        "namapoli": "Penyakit Dalam",
        "pasienbaru": 0,
        "norm": "123456",
        "tanggalperiksa": "2024-03-01",
        "kodedokter": 12345,
        "namadokter": "dr. Sari",
        "jampraktek": "08:00-12:00",
        "jeniskunjungan": 1,
        "nomorreferensi": "0001R0010324A000001",
        "nomorantrean": "A-12",
        "angkaantrean": 12,
        "estimasidilayani": WAKTU,
        "sisakuotajkn": 5,
        "kuotajkn": 30,
        "sisakuotanonjkn": 5,
        "kuotanonjkn": 30,
        "keterangan": "Peserta harap 30 menit lebih awal",
    }
    return body | changes


def test_update_waktu_builds_its_body():
    task = UpdateWaktu(kodebooking="B-1", taskid=5, waktu=WAKTU, jenisresep="Racikan")
    assert json.loads(task.to_json()) == {
        "kodebooking": "B-1",
        "taskid": 5,
        "waktu": WAKTU,
        "jenisresep": "Racikan",
    }


def test_update_waktu_leaves_out_an_unset_jenisresep():
    assert UpdateWaktu("B-1", 3, WAKTU).body() == {
        "kodebooking": "B-1",
        "taskid": 3,
        "waktu": WAKTU,
    }


def test_batal_and_getlisttask_build_their_bodies():
    assert BatalAntrean("B-1", "pasien batal").body() == {
        "kodebooking": "B-1",
        "keterangan": "pasien batal",
    }
    assert GetListTask("B-1").body() == {"kodebooking": "B-1"}


def test_add_round_trips_through_parse():
    add = payloads.parse(payloads.ADD, add_body())
    assert isinstance(add, AddAntrean)
    assert add.body() == add_body()
    assert not add.new_patient
    assert payloads.parse(payloads.ADD, add_body(pasienbaru=1)).new_patient


@pytest.mark.parametrize("taskid", sorted(payloads.TASK_IDS))
@pytest.mark.parametrize("jenisresep", [None, "Tidak ada", "Racikan", "Non racikan"])
def test_every_task_id_and_jenisresep_is_accepted(taskid, jenisresep):
    assert UpdateWaktu("B-1", taskid, WAKTU, jenisresep).taskid == taskid


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"kodebooking": ""}, "kodebooking"),
        ({"kodebooking": "   "}, "kodebooking"),
        ({"kodebooking": 17}, "kodebooking"),
        ({"taskid": 0}, "taskid"),
        ({"taskid": 8}, "taskid"),
        ({"taskid": 98}, "taskid"),
        ({"taskid": "3"}, "taskid"),
        ({"taskid": True}, "taskid"),
        ({"taskid": 3.0}, "taskid"),
        ({"waktu": 0}, "waktu"),
        ({"waktu": -WAKTU}, "waktu"),
        ({"waktu": WAKTU // 1000}, "waktu"),  # seconds, not ms
        ({"waktu": WAKTU * 1000}, "waktu"),  # microseconds
        ({"waktu": float(WAKTU)}, "waktu"),
        ({"waktu": str(WAKTU)}, "waktu"),
        ({"jenisresep": "racikan"}, "jenisresep"),
        ({"jenisresep": "Obat"}, "jenisresep"),
        ({"jenisresep": 1}, "jenisresep"),
    ],
)
def test_bad_update_waktu_names_the_field(changes, field):
    body = {"kodebooking": "B-1", "taskid": 3, "waktu": WAKTU} | changes
    with pytest.raises(PayloadError, match=f"^{field}: ") as caught:
        payloads.parse(payloads.UPDATE_WAKTU, body)
    assert caught.value.field == field
    assert isinstance(caught.value, ValueError)


def test_the_constructor_checks_too():
    with pytest.raises(ValueError, match=r"^taskid: "):
        UpdateWaktu("B-1", 8, WAKTU)
    with pytest.raises(ValueError, match=r"^kodebooking: "):
        BatalAntrean("", "x")
    with pytest.raises(ValueError, match=r"^kodebooking: "):
        GetListTask("")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"kodebooking": ""}, "kodebooking"),
        ({"jenispasien": "BPJS"}, "jenispasien"),
        ({"kodepoli": ""}, "kodepoli"),
        ({"pasienbaru": 2}, "pasienbaru"),
        ({"pasienbaru": True}, "pasienbaru"),
        ({"tanggalperiksa": "01-03-2024"}, "tanggalperiksa"),
        ({"tanggalperiksa": "2024-02-30"}, "tanggalperiksa"),
        ({"tanggalperiksa": "20240301"}, "tanggalperiksa"),
        ({"kodedokter": "12345"}, "kodedokter"),
        ({"kodedokter": 0}, "kodedokter"),
        ({"jampraktek": "8:00-12:00"}, "jampraktek"),
        ({"jampraktek": "08:00-24:00"}, "jampraktek"),
        ({"jeniskunjungan": 5}, "jeniskunjungan"),
        ({"estimasidilayani": 1709258400}, "estimasidilayani"),
        ({"kuotajkn": -1}, "kuotajkn"),
        ({"nik": None}, "nik"),
    ],
)
def test_bad_add_names_the_field(changes, field):
    with pytest.raises(PayloadError, match=f"^{field}: "):
        payloads.parse(payloads.ADD, add_body(**changes))


def test_a_missing_field_is_named():
    body = add_body()
    del body["norm"]
    with pytest.raises(PayloadError, match=r"^norm: missing"):
        payloads.parse(payloads.ADD, body)
    with pytest.raises(PayloadError, match=r"^waktu: missing"):
        payloads.parse(payloads.UPDATE_WAKTU, {"kodebooking": "B-1", "taskid": 3})


def test_unknown_keys_are_ignored():
    body = {"kodebooking": "B-1", "taskid": 3, "waktu": WAKTU, "catatan": "x"}
    assert payloads.parse(payloads.UPDATE_WAKTU, body) == UpdateWaktu("B-1", 3, WAKTU)


@pytest.mark.parametrize("body", [[], "B-1", None, 3])
def test_a_body_that_is_not_an_object_is_refused(body):
    with pytest.raises(PayloadError, match=r"^body: expected a JSON object"):
        payloads.parse(payloads.BATAL, body)


def test_an_unknown_call_is_refused():
    with pytest.raises(ValueError, match="unknown BPJS Antrean call 'antrean/ubah'"):
        payloads.parse("antrean/ubah", {})


def test_check_payload_maps_kinds_to_calls():
    task = check_payload(
        "bpjs.updatewaktu", b'{"kodebooking": "B-1", "taskid": 4, "waktu": %d}' % WAKTU
    )
    assert task == UpdateWaktu("B-1", 4, WAKTU)
    assert check_payload("bpjs.batal", b'{"kodebooking": "B-1", "keterangan": ""}') == BatalAntrean(
        "B-1", ""
    )
    assert isinstance(check_payload("bpjs.add", json.dumps(add_body()).encode()), AddAntrean)


@pytest.mark.parametrize(
    ("kind", "payload", "problem"),
    [
        ("bpjs.ubah", b"{}", "unknown message kind 'bpjs.ubah'"),
        ("bpjs.updatewaktu", b"{not json", "antrean/updatewaktu body is not JSON"),
        ("bpjs.updatewaktu", b'{"kodebooking": "B", "taskid": 8, "waktu": 1}', "body: taskid: "),
    ],
)
def test_check_payload_says_why_not(kind, payload, problem):
    with pytest.raises(ValueError, match=problem):
        check_payload(kind, payload)


# --- the result-code table -----------------------------------------------------------


def envelope(code: Any, message: str) -> str:
    return json.dumps({"metadata": {"code": code, "message": message}})


TABLE = [
    # (HTTP status, body, call, result)
    (200, envelope(200, "Ok"), "antrean/add", Result.DELIVERED),
    (200, envelope("200", "Ok"), "antrean/updatewaktu", Result.DELIVERED),
    (200, envelope(200, ""), "antrean/batal", Result.DELIVERED),
    (200, envelope(1, "OK"), "ref/poli", Result.DELIVERED),
    (200, envelope("1", "Sukses"), "ref/dokter", Result.DELIVERED),
    (200, envelope(208, "Terdapat duplikasi Kode Booking"), "antrean/add", Result.DUPLICATE),
    (200, envelope(208, "TaskId=4 sudah ada"), "antrean/updatewaktu", Result.DUPLICATE),
    (
        200,
        envelope(201, "TaskId=4 tidak valid / TaskId sebelumnya belum terkirim"),
        "antrean/updatewaktu",
        Result.WAIT_FOR_PREDECESSOR,
    ),
    (
        200,
        envelope(201, "TaskId=5 tidak valid"),
        "antrean/updatewaktu",
        Result.WAIT_FOR_PREDECESSOR,
    ),
    (
        200,
        envelope(201, "TaskId sebelumnya belum terkirim"),
        "antrean/updatewaktu",
        Result.WAIT_FOR_PREDECESSOR,
    ),
    (200, envelope(201, "TaskId=3 belum ada"), "antrean/updatewaktu", Result.WAIT_FOR_PREDECESSOR),
    (
        200,
        envelope(201, "Tanggal pelayanan untuk Kode Booking tersebut adalah (2024-03-01)"),
        "antrean/updatewaktu",
        Result.REJECTED,
    ),
    (200, envelope(201, "Rujukan tidak valid"), "antrean/add", Result.REJECTED),
    (200, envelope(201, "Data dokter tidak ditemukan."), "antrean/add", Result.REJECTED),
    (200, envelope(201, ""), "antrean/add", Result.REJECTED),
    (200, envelope(404, "Gagal dicoba kembali"), "antrean/updatewaktu", Result.RETRY),
    (404, envelope(404, "Proses Gagal dicoba kembali nanti"), "antrean/add", Result.RETRY),
    (500, "<html>Internal Server Error</html>", "antrean/add", Result.RETRY),
    (502, "", "antrean/add", Result.RETRY),
    (503, envelope(503, "Service Unavailable"), "antrean/add", Result.RETRY),
    (504, "upstream timed out", "antrean/add", Result.RETRY),
    (429, "", "antrean/add", Result.RETRY),
    (408, "", "antrean/add", Result.RETRY),
    (200, "<html><body>maintenance</body></html>", "antrean/add", Result.RETRY),
    (200, "", "antrean/add", Result.RETRY),
    (200, '{"metadata": {"code": 200', "antrean/add", Result.RETRY),  # cut short
    (200, envelope(500, "Internal Server Error"), "antrean/add", Result.RETRY),
    # not in the table: kept for an operator
    (200, envelope(1, "OK"), "antrean/add", Result.UNCLASSIFIED),
    (200, envelope(208, "Sudah diproses"), "antrean/add", Result.UNCLASSIFIED),
    (200, envelope(404, "Data tidak ditemukan"), "antrean/add", Result.UNCLASSIFIED),
    (200, envelope(202, "Accepted"), "antrean/add", Result.UNCLASSIFIED),
    (401, envelope(401, "X-signature tidak valid"), "antrean/add", Result.UNCLASSIFIED),
    (200, envelope("abc", "Ok"), "antrean/add", Result.UNCLASSIFIED),
    (200, envelope(None, "Ok"), "antrean/add", Result.UNCLASSIFIED),
    (200, envelope(True, "Ok"), "antrean/add", Result.UNCLASSIFIED),
    (200, envelope(200.5, "Ok"), "antrean/add", Result.UNCLASSIFIED),
    (200, '{"response": null}', "antrean/add", Result.UNCLASSIFIED),
    (200, '{"metadata": "Ok"}', "antrean/add", Result.UNCLASSIFIED),
    (200, "[]", "antrean/add", Result.UNCLASSIFIED),
    (200, "null", "antrean/add", Result.UNCLASSIFIED),
    (200, '"200"', "antrean/add", Result.UNCLASSIFIED),
    (404, "<html>Not Found</html>", "antrean/add", Result.UNCLASSIFIED),
    (403, "Forbidden", "antrean/add", Result.UNCLASSIFIED),
    (301, "", "antrean/add", Result.UNCLASSIFIED),
]


@pytest.mark.parametrize(("status", "body", "call", "result"), TABLE)
def test_result_code_table(status, body, call, result):
    assert classify_answer(status, body, call).result is result


@pytest.mark.parametrize(
    "message",
    [
        "TASKID=4 TIDAK VALID / TASKID SEBELUMNYA BELUM TERKIRIM",
        "taskid = 4  tidak  valid",
        "Task Id=4 belum ada",
        "TaskId\u00a0sebelumnya\u00a0belum terkirim",
        "  TaskId=4\ntidak valid ",
    ],
)
def test_predecessor_messages_match_whatever_the_case_and_spacing(message):
    assert classify_answer(200, envelope(201, message)).result is Result.WAIT_FOR_PREDECESSOR


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (208, "terdapat  DUPLIKASI kode booking"),
        (208, "TaskId = 7 sudah  ada"),
        (208, "Task Id 99 Sudah Ada"),
    ],
)
def test_duplicate_messages_match_whatever_the_case_and_spacing(code, message):
    assert classify_answer(200, envelope(code, message)).result is Result.DUPLICATE


@pytest.mark.parametrize(
    "message", ["Rujukan tidak valid", "Kode poli tidak valid", "Waktu TaskId 4 tidak boleh"]
)
def test_tidak_valid_without_a_task_id_is_a_rejection(message):
    assert classify_answer(200, envelope(201, message)).result is Result.REJECTED


def test_a_metadata_key_in_another_case_is_read():
    body = json.dumps({"metaData": {"Code": "208", "Message": "TaskId=3 sudah ada"}})
    found = classify_answer(200, body, "antrean/updatewaktu")
    assert (found.result, found.code, found.message) == (
        Result.DUPLICATE,
        208,
        "TaskId=3 sudah ada",
    )


def test_classification_carries_code_message_and_a_one_line_why():
    found = classify_answer(200, envelope(201, "Rujukan\ntidak valid"))
    assert (found.code, found.message) == (201, "Rujukan\ntidak valid")
    assert found.why == "BPJS 201: Rujukan tidak valid"
    assert classify_answer(503, "", reason="Service Unavailable").why == (
        "HTTP 503 Service Unavailable"
    )
    assert classify_answer(200, "<html>").why == "answer is not JSON (HTTP 200)"
    assert classify_answer(200, envelope(999, "x")).why == "unclassified answer: BPJS 999: x"
    assert classify_answer(401, envelope(401, "no")).why == (
        "unclassified answer: BPJS 401: no (HTTP 401)"
    )


def test_a_long_message_is_cut_in_why_but_kept_whole():
    found = classify_answer(200, envelope(201, "x" * 5000))
    assert len(found.why) < 250
    assert found.message == "x" * 5000


def test_wrong_service_date_is_told_apart_from_other_rejections():
    assert wrong_service_date("Tanggal pelayanan untuk Kode Booking tersebut adalah (2024-03-01)")
    assert wrong_service_date("TANGGAL  PELAYANAN tidak sesuai")
    assert not wrong_service_date("Rujukan tidak valid")


def test_classify_envelope_reads_a_decoded_answer():
    assert (
        classify_envelope({"metadata": {"code": 200, "message": "Ok"}}).result is Result.DELIVERED
    )
    assert classify_envelope(None).result is Result.UNCLASSIFIED


json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.sampled_from(["200", "201", "208", "404", " 200 ", "1", "-5", "9" * 5000]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["metadata", "metaData", "code", "message", "response"]) | st.text(),
            inner,
            max_size=4,
        )
    ),
    max_leaves=15,
)
messages = st.text() | st.sampled_from(
    [
        "TaskId=4 sudah ada",
        "TaskId=4 tidak valid",
        "Terdapat duplikasi Kode Booking",
        "Gagal dicoba kembali",
        "Tanggal pelayanan",
    ]
)


def _one_line(found) -> bool:
    return "\n" not in found.why and "\r" not in found.why


@settings(max_examples=400, deadline=None)
@given(value=json_like, call=st.sampled_from(["", "antrean/add", "ref/poli"]))
def test_classify_envelope_never_raises(value, call):
    found = classify_envelope(value, call)
    assert isinstance(found.result, Result)
    assert _one_line(found)


@settings(max_examples=400, deadline=None)
@given(
    code=json_like | st.integers(min_value=0, max_value=1000),
    message=messages | json_like,
    status=st.integers(min_value=100, max_value=599),
)
def test_classify_answer_of_an_envelope_never_raises(code, message, status):
    body = json.dumps({"metadata": {"code": code, "message": message}}, default=str)
    found = classify_answer(status, body, "antrean/updatewaktu")
    assert isinstance(found.result, Result)
    assert _one_line(found)


@settings(max_examples=400, deadline=None)
@given(
    status=st.integers(min_value=-10, max_value=1000),
    body=st.text() | st.sampled_from(["[" * 100_000, "1" * 5000, '{"metadata": {"code": 1e999}}']),
    reason=st.text(max_size=30),
)
def test_classify_answer_of_any_text_never_raises(status, body, reason):
    found = classify_answer(status, body, "antrean/add", reason)
    assert isinstance(found.result, Result)
    assert _one_line(found)


@pytest.mark.timeout(5)
@pytest.mark.parametrize("word", ["gagal ", "taskid ", "taskid= ", "task id 4 "])
def test_a_huge_repetitive_message_is_classified_quickly(word):
    body = envelope(404, word * 12_000)
    assert classify_answer(200, body).result is Result.UNCLASSIFIED
