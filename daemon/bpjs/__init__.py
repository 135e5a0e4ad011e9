"""BPJS Antrean RS protocol facts as plain code: the signed headers (``signing``), the
encrypted ``response`` field (``crypto``), request bodies (``payloads``) and what an
answer means (``results``). No I/O and nothing of the database."""

from daemon.bpjs.crypto import DecryptError, decrypt, encrypt, response_key
from daemon.bpjs.payloads import (
    AddAntrean,
    BatalAntrean,
    GetListTask,
    Payload,
    PayloadError,
    UpdateWaktu,
    parse,
)
from daemon.bpjs.results import Classification, Result, classify_answer, classify_envelope
from daemon.bpjs.signing import signature, signed_headers, timestamp_text

__all__ = [
    "AddAntrean",
    "BatalAntrean",
    "Classification",
    "DecryptError",
    "GetListTask",
    "Payload",
    "PayloadError",
    "Result",
    "UpdateWaktu",
    "classify_answer",
    "classify_envelope",
    "decrypt",
    "encrypt",
    "parse",
    "response_key",
    "signature",
    "signed_headers",
    "timestamp_text",
]
