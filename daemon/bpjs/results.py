"""What a BPJS Antrean answer means, per the reference's result-code table.

``classify_answer(status, body, call)`` reads an HTTP answer; ``classify_envelope``
an already decoded one (``{"metadata": {"code": …, "message": …}, "response": …}``).
Neither raises on any input: an answer they cannot place is ``UNCLASSIFIED`` and the
caller keeps its full text. Messages are matched case-insensitively with any
spacing, because BPJS's wording drifts.

| answer                                                      | result               |
|-------------------------------------------------------------|----------------------|
| code 200 (1 on ``ref/*``)                                   | DELIVERED            |
| 208 "Terdapat duplikasi Kode Booking", "TaskId=N sudah ada" | DUPLICATE            |
| 201 "TaskId=N tidak valid", "TaskId sebelumnya belum        | WAIT_FOR_PREDECESSOR |
|     terkirim", "TaskId=N belum ada", "Kode Booking tidak    |                      |
|     ditemukan" (the add is the missing predecessor)         |                      |
| 201 "Tanggal pelayanan … adalah (YYYY-MM-DD)"               | REJECTED (wrong date)|
| any other 201                                               | REJECTED             |
| 404 "… Gagal dicoba kembali …"                              | RETRY                |
| code 429 or 5xx in the metadata (a server trouble, as in    | RETRY                |
|     HTTP; not in the reference: our reading)                |                      |
| HTTP 408, 429, 5xx; a 2xx whose body is not JSON            | RETRY                |
| anything else: other codes, no metadata, odd shapes, a      | UNCLASSIFIED         |
|     non-JSON 3xx/4xx                                        |                      |
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MESSAGE_LIMIT = 200  # characters of a message quoted in ``why``

_CODE_TEXT = re.compile(r"[0-9]{1,9}")
_MAX_CODE = 10**9  # larger numbers are no result code (and too long to print safely)
_TASK = r"task\s*id"
_DUPLICATE = re.compile(rf"duplikasi\s*kode\s*booking|{_TASK}\s*=?\s*[0-9]*\s*sudah\s*ada")
_PREDECESSOR = re.compile(
    rf"{_TASK}\s*sebelumnya\s*belum\s*terkirim"
    rf"|{_TASK}\s*=?\s*[0-9]+\s*tidak\s*valid"
    rf"|{_TASK}\s*=?\s*[0-9]+\s*belum\s*ada"
    r"|kode\s*booking\s*(?:tersebut\s*)?tidak\s*ditemukan"
)
_WRONG_DATE = re.compile(r"tanggal\s*pelayanan")
_TRY_AGAIN = re.compile(r"gagal.{0,100}?coba\s*kembali")  # bounded: no quadratic scan
_RETRY_HTTP = frozenset({408, 429})


class Result(enum.Enum):
    DELIVERED = "delivered"
    DUPLICATE = "duplicate"  # BPJS already holds it: as good as delivered
    WAIT_FOR_PREDECESSOR = "wait_for_predecessor"  # send the earlier task (or add) first
    RETRY = "retry"  # a hiccup on BPJS's side or the way there
    REJECTED = "rejected"  # BPJS refused it for good
    UNCLASSIFIED = "unclassified"  # an answer the table does not cover


@dataclass(frozen=True)
class Classification:
    result: Result
    why: str  # one line for the operator, e.g. "BPJS 201: Rujukan tidak valid"
    code: int | None = None  # metadata.code, when it is a number
    message: str = ""  # metadata.message, as sent


def classify_answer(status: int, body: str, call: str = "", reason: str = "") -> Classification:
    """The meaning of an HTTP answer with this status and body to ``call`` (the path
    after the base URL, e.g. ``antrean/add``; ``ref/*`` calls answer 1 for ok)."""
    http = _one_line(f"HTTP {status} {reason}")
    if status in _RETRY_HTTP or 500 <= status <= 599:
        return Classification(Result.RETRY, http)
    try:
        envelope = json.loads(body)
    except (ValueError, RecursionError):
        if 200 <= status <= 299:
            return Classification(Result.RETRY, f"answer is not JSON ({http})")
        return Classification(Result.UNCLASSIFIED, f"answer is not JSON ({http})")
    found = classify_envelope(envelope, call)
    if found.result is Result.UNCLASSIFIED and not 200 <= status <= 299:
        return Classification(found.result, f"{found.why} ({http})", found.code, found.message)
    return found


def classify_envelope(envelope: Any, call: str = "") -> Classification:
    """The meaning of a decoded answer to ``call``."""
    metadata = _metadata(envelope)
    if metadata is None:
        return Classification(Result.UNCLASSIFIED, "unclassified answer: no metadata")
    code = _code(_field(metadata, "code"))
    message = _message(_field(metadata, "message"))
    if code is None:
        shown = f" ({_one_line(message)})" if message.strip() else ""
        return Classification(
            Result.UNCLASSIFIED, f"unclassified answer: no numeric code{shown}", None, message
        )
    result = _result(code, message, call)
    why = f"BPJS {code}: {_one_line(message)}" if message.strip() else f"BPJS {code}"
    if result is Result.UNCLASSIFIED:
        why = f"unclassified answer: {why}"
    return Classification(result, why, code, message)


def _result(code: int, message: str, call: str) -> Result:
    text = " ".join(message.casefold().split())
    if code == 200 or (code == 1 and call.startswith("ref/")):
        return Result.DELIVERED
    if code == 208 and _DUPLICATE.search(text):
        return Result.DUPLICATE
    if code == 201:
        if _PREDECESSOR.search(text):
            return Result.WAIT_FOR_PREDECESSOR
        return Result.REJECTED  # the wrong service date included
    if code == 404 and _TRY_AGAIN.search(text):
        return Result.RETRY
    if code == 429 or 500 <= code <= 599:
        return Result.RETRY
    return Result.UNCLASSIFIED


def wrong_service_date(message: str) -> bool:
    """Whether a 201 message says the task time is not on the booking's service date."""
    return bool(_WRONG_DATE.search(" ".join(message.casefold().split())))


def _metadata(envelope: Any) -> Mapping[str, Any] | None:
    if not isinstance(envelope, Mapping):
        return None
    for key, value in envelope.items():  # "metadata", also "metaData" as in other BPJS APIs
        if isinstance(key, str) and key.lower() == "metadata" and isinstance(value, Mapping):
            return value
    return None


def _field(mapping: Mapping[str, Any], name: str) -> Any:
    """``mapping[name]``, the name matched case-insensitively; None when absent."""
    if name in mapping:
        return mapping[name]
    return next((v for k, v in mapping.items() if isinstance(k, str) and k.lower() == name), None)


def _code(value: Any) -> int | None:
    """A result code from a number or a numeric string; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and _CODE_TEXT.fullmatch(value.strip()):
        value = int(value.strip())
    if isinstance(value, int) and abs(value) < _MAX_CODE:
        return value
    return None


def _message(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, float) or (isinstance(value, int) and abs(value) < _MAX_CODE):
        return str(value)
    return f"(a message of type {type(value).__name__})"


def _one_line(text: str, limit: int = MESSAGE_LIMIT) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
