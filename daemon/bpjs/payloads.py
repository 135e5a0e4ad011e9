"""Request bodies of the BPJS Antrean calls a hospital bridge makes, as typed values
that check themselves.

Build one (``UpdateWaktu(kodebooking="…", taskid=3, waktu=…)``) and send
``.to_json()``; or check a body read back from JSON with ``parse(call, body)``. A bad
field raises ``PayloadError`` (a ``ValueError``) whose text starts with the field's
name. ``parse`` ignores keys it does not know, so a field BPJS adds later can ride
along in a stored payload without a code change here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, fields
from datetime import date
from typing import Any, ClassVar

ADD = "antrean/add"
UPDATE_WAKTU = "antrean/updatewaktu"
BATAL = "antrean/batal"
GET_LIST_TASK = "antrean/getlisttask"

CANCELLED_TASK = 99
TASK_IDS = frozenset({1, 2, 3, 4, 5, 6, 7, CANCELLED_TASK})
JENIS_RESEP = ("Tidak ada", "Racikan", "Non racikan")
JENIS_PASIEN = ("JKN", "NON JKN")

# Epoch milliseconds between 1973 and 2286: a 10-digit value is seconds, a 16-digit
# one microseconds, both common slips the reference warns about (waktu is **ms**).
MIN_EPOCH_MS = 10**11
MAX_EPOCH_MS = 10**13

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_CLOCK = r"(?:[01]\d|2[0-3]):[0-5]\d"
_JAM_PRAKTEK = re.compile(rf"{_CLOCK}-{_CLOCK}")


class PayloadError(ValueError):
    """A body BPJS would refuse; ``field`` names the culprit."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class _Body:
    """What every payload can do: check itself, become JSON, be read from JSON."""

    call: ClassVar[str]

    def body(self) -> dict[str, Any]:
        """The JSON object to send (optional fields left out when unset)."""
        return {k: v for k, v in asdict(self).items() if v is not None}  # type: ignore[call-overload]

    def to_json(self) -> bytes:
        return json.dumps(self.body(), ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_body(cls, body: Any) -> Any:
        """The payload in a decoded JSON body; unknown keys are ignored."""
        if not isinstance(body, Mapping):
            raise PayloadError("body", f"expected a JSON object, got {_kind(body)}")
        values: dict[str, Any] = {}
        for spec in fields(cls):  # type: ignore[arg-type]
            if spec.name in body:
                values[spec.name] = body[spec.name]
            elif spec.default is MISSING and spec.default_factory is MISSING:
                raise PayloadError(spec.name, "missing")
        return cls(**values)


@dataclass(frozen=True)
class AddAntrean(_Body):
    """``antrean/add``: register a booking; must be accepted before any task time."""

    call: ClassVar[str] = ADD

    kodebooking: str
    jenispasien: str  # "JKN" or "NON JKN"
    nomorkartu: str  # BPJS card number ("" for NON JKN)
    nik: str
    nohp: str
    kodepoli: str  # BPJS sub-specialty code
    namapoli: str
    pasienbaru: int  # 1 new patient (tasks 1-2-3-…), 0 returning (3-…)
    norm: str
    tanggalperiksa: str  # service date, YYYY-MM-DD
    kodedokter: int  # BPJS doctor code
    namadokter: str
    jampraktek: str  # "HH:MM-HH:MM"
    jeniskunjungan: int  # 1-4
    nomorreferensi: str
    nomorantrean: str
    angkaantrean: int
    estimasidilayani: int  # epoch ms
    sisakuotajkn: int
    kuotajkn: int
    sisakuotanonjkn: int
    kuotanonjkn: int
    keterangan: str

    def __post_init__(self) -> None:
        _booking_code(self.kodebooking)
        _choice("jenispasien", self.jenispasien, JENIS_PASIEN)
        for name in ("nomorkartu", "nik", "nohp", "namapoli", "norm", "namadokter"):
            _text(name, getattr(self, name))
        for name in ("nomorreferensi", "nomorantrean", "keterangan"):
            _text(name, getattr(self, name))
        _text("kodepoli", self.kodepoli, non_empty=True)
        _choice("pasienbaru", self.pasienbaru, (0, 1))
        service_date(self.tanggalperiksa)
        _integer("kodedokter", self.kodedokter, minimum=1)
        if not isinstance(self.jampraktek, str) or not _JAM_PRAKTEK.fullmatch(self.jampraktek):
            raise PayloadError("jampraktek", f"expected HH:MM-HH:MM, got {self.jampraktek!r}")
        _choice("jeniskunjungan", self.jeniskunjungan, (1, 2, 3, 4))
        _integer("angkaantrean", self.angkaantrean, minimum=0)
        epoch_ms("estimasidilayani", self.estimasidilayani)
        for name in ("sisakuotajkn", "kuotajkn", "sisakuotanonjkn", "kuotanonjkn"):
            _integer(name, getattr(self, name), minimum=0)

    @property
    def new_patient(self) -> bool:
        return self.pasienbaru == 1


@dataclass(frozen=True)
class UpdateWaktu(_Body):
    """``antrean/updatewaktu``: the time one task happened."""

    call: ClassVar[str] = UPDATE_WAKTU

    kodebooking: str
    taskid: int  # 1-7 or 99
    waktu: int  # epoch milliseconds
    jenisresep: str | None = None  # "Tidak ada", "Racikan" or "Non racikan"

    def __post_init__(self) -> None:
        _booking_code(self.kodebooking)
        if type(self.taskid) is not int or self.taskid not in TASK_IDS:
            raise PayloadError("taskid", f"expected one of 1-7 or 99, got {self.taskid!r}")
        epoch_ms("waktu", self.waktu)
        if self.jenisresep is not None:
            _choice("jenisresep", self.jenisresep, JENIS_RESEP)


@dataclass(frozen=True)
class BatalAntrean(_Body):
    """``antrean/batal``: cancel a booking, with the reason."""

    call: ClassVar[str] = BATAL

    kodebooking: str
    keterangan: str

    def __post_init__(self) -> None:
        _booking_code(self.kodebooking)
        _text("keterangan", self.keterangan)


@dataclass(frozen=True)
class GetListTask(_Body):
    """``antrean/getlisttask``: the task times BPJS holds for a booking."""

    call: ClassVar[str] = GET_LIST_TASK

    kodebooking: str

    def __post_init__(self) -> None:
        _booking_code(self.kodebooking)


Payload = AddAntrean | UpdateWaktu | BatalAntrean | GetListTask

PAYLOADS: dict[str, type[Payload]] = {
    p.call: p for p in (AddAntrean, UpdateWaktu, BatalAntrean, GetListTask)
}


def parse(call: str, body: Any) -> Payload:
    """The payload of ``call`` (e.g. ``"antrean/updatewaktu"``) in a decoded JSON body;
    raises ``PayloadError`` for a bad field, ``ValueError`` for an unknown call."""
    try:
        kind = PAYLOADS[call]
    except KeyError:
        raise ValueError(f"unknown BPJS Antrean call {call!r}") from None
    payload: Payload = kind.from_body(body)
    return payload


def service_date(value: Any, field: str = "tanggalperiksa") -> date:
    """A ``YYYY-MM-DD`` date; ``PayloadError`` otherwise."""
    if isinstance(value, str) and _DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise PayloadError(field, f"expected a date YYYY-MM-DD, got {value!r}")


def epoch_ms(field: str, value: Any) -> int:
    """A time in epoch milliseconds; ``PayloadError`` for anything else (seconds too)."""
    _integer(field, value, minimum=1)
    if value < MIN_EPOCH_MS:
        raise PayloadError(field, f"expected epoch milliseconds, got {value} (seconds?)")
    if value >= MAX_EPOCH_MS:
        raise PayloadError(field, f"expected epoch milliseconds, got {value} (microseconds?)")
    return int(value)


def _booking_code(value: Any) -> None:
    _text("kodebooking", value, non_empty=True)


def _text(field: str, value: Any, *, non_empty: bool = False) -> None:
    if not isinstance(value, str):
        raise PayloadError(field, f"expected a string, got {_kind(value)}")
    if non_empty and not value.strip():
        raise PayloadError(field, "must not be empty")


def _integer(field: str, value: Any, *, minimum: int) -> None:
    if type(value) is not int:  # bool is an int subclass: refuse it too
        raise PayloadError(field, f"expected an integer, got {_kind(value)}")
    if value < minimum:
        raise PayloadError(field, f"must be at least {minimum}, got {value}")


def _choice(field: str, value: Any, allowed: tuple[Any, ...]) -> None:
    if type(value) not in {type(a) for a in allowed} or value not in allowed:
        shown = ", ".join(repr(a) for a in allowed)
        raise PayloadError(field, f"expected one of {shown}, got {value!r}")


def _kind(value: Any) -> str:
    names = {
        type(None): "null",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
    }
    return names.get(type(value), f"a {type(value).__name__}")
