"""A BPJS Antrean RS simulator for the tests and the demo: it checks the signed
headers, keeps each booking's task times in memory (and, when given a state file, in
that file too), enforces the reference's rules and answers as BPJS does (HTTP 200
with the result in ``metadata``), faults included.

In a test::

    async with BpjsSimulator("12345", "s3cr3t", "key") as sim:
        ...  # point a channel at sim.url(); inspect sim.tasks("B-1"), sim.calls
        sim.inject(Fault.TRY_AGAIN, next_calls=2)

As a process (the demo's ``sim-bpjs``)::

    python -m daemon.sim.bpjs --host 127.0.0.1 --port 8082 --cons-id 12345 \\
        --secret S --user-key K --timezone Asia/Jakarta [--state var/sim-bpjs.journal]

``GET /_sim/bookings`` lists the bookings and their tasks as JSON. Exits 0 on SIGTERM
or SIGINT. The calls are served under any base path (``/antreanrs/antrean/add`` and
``/antrean/add`` alike).

With a state file (``--state PATH``, ``BpjsSimulator(..., state=PATH)``) the bookings
outlive the simulator: every accepted add, task time and batal appends the booking's
new state to the file as a JSON line (a journal, see ``daemon.sim.journal``), and a
start reads the file back, then rewrites it with one line per booking, leaving out
bookings whose ``tanggalperiksa`` is more than ``KEEP_DAYS`` days before today. A
file that is not such a journal stops the start (``JournalError``; the process exits
78 with one line naming the file and line) and is left as it is.

What the reference leaves open, and this simulator's choice (invented wording marked
*): a bad ``X-cons-id``, ``user_key``, timestamp or signature gets HTTP 401 with
``{"metadata": {"code": 401, "message": …*}}``; an unknown booking on
``updatewaktu`` gets 201 "TaskId=N belum ada" (its add is the missing predecessor);
a task after a cancellation, a task the patient type does not have (1-2 for a
returning patient) and a time not later than the previous task's get 201 with a
message* of their own; ``batal`` of an unknown or already cancelled booking gets 201
"Antrean Tidak Ditemukan atau Sudah Dibatalkan"*. Task 99 is accepted at any point,
without the order, date or time checks. ``getlisttask`` lists ``wakturs`` (when the
task arrived) and ``waktu`` as ``DD-MM-YYYY HH:MM:SS <zone>``* in the configured
time zone.
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import json
import logging
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from aiohttp import web
from multidict import CIMultiDict

from daemon.bpjs import crypto, payloads, signing
from daemon.bpjs.payloads import AddAntrean, BatalAntrean, GetListTask, PayloadError, UpdateWaktu
from daemon.domain.logs import setup_logging
from daemon.runtime import eventloop
from daemon.sim import fail
from daemon.sim.fail import FailSwitch
from daemon.sim.journal import Journal, JournalError
from daemon.sim.server import SimulatorServer

log = logging.getLogger(__name__)

BOOKINGS_PATH = "/_sim/bookings"
JOURNAL_KIND = "outboxd sim-bpjs bookings"
KEEP_DAYS = 7  # a state file keeps bookings of today and the last KEEP_DAYS days
EX_CONFIG = 78  # sysexits.h: a state file that cannot be used
NEW_PATIENT_TASKS = (1, 2, 3, 4, 5, 6, 7)
RETURNING_PATIENT_TASKS = (3, 4, 5, 6, 7)
TASK_NAMES = {
    1: "admission wait starts",
    2: "admission service starts",
    3: "poli wait starts",
    4: "poli service starts",
    5: "pharmacy wait starts",
    6: "pharmacy service starts",
    7: "medicine ready",
    99: "cancelled / did not attend",
}
_INT_FIELDS = frozenset(
    {
        "taskid",
        "waktu",
        "pasienbaru",
        "kodedokter",
        "jeniskunjungan",
        "angkaantrean",
        "estimasidilayani",
        "sisakuotajkn",
        "kuotajkn",
        "sisakuotanonjkn",
        "kuotanonjkn",
    }
)


class Fault(enum.Enum):
    SERVER_ERROR = "5xx"  # HTTP ``Faults.status`` (503) with an HTML page
    TRY_AGAIN = "gagal"  # HTTP 200, metadata 404 "Gagal dicoba kembali"
    TOO_MANY = "429"  # HTTP 429 with ``Faults.retry_after``
    GARBAGE = "garbage"  # HTTP 200 with a body that is not JSON


@dataclass
class Faults:
    """Trouble to inject; change the fields between calls to change the simulator's
    mind. Per call: wait ``delay``, then answer ``fault`` if ``next_calls`` is left
    (counting it down) or, after those, with probability ``fraction``. A faulted call
    changes no state."""

    fault: Fault | None = None
    next_calls: int = 0
    fraction: float = 0.0
    delay: float = 0.0  # seconds before every answer
    status: int = 503  # the HTTP status of SERVER_ERROR
    retry_after: str | None = "1"  # the Retry-After of TOO_MANY


@dataclass(frozen=True)
class TaskTime:
    taskid: int
    waktu: int  # epoch ms, as sent
    jenisresep: str | None
    received_at: float  # the simulator's clock when it was accepted


@dataclass
class Booking:
    add: AddAntrean
    tasks: list[TaskTime] = field(default_factory=list)  # accepted ones, in arrival order
    cancelled: str | None = None  # the reason given to antrean/batal

    def has(self, taskid: int) -> bool:
        return any(t.taskid == taskid for t in self.tasks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kodebooking": self.add.kodebooking,
            "tanggalperiksa": self.add.tanggalperiksa,
            "pasienbaru": self.add.pasienbaru,
            "cancelled": self.cancelled,
            "tasks": [{"taskid": t.taskid, "waktu": t.waktu} for t in self.tasks],
        }

    def record(self) -> dict[str, Any]:
        """The whole booking as a state file's line holds it."""
        return {
            "add": self.add.body(),
            "tasks": [
                {
                    "taskid": t.taskid,
                    "waktu": t.waktu,
                    "jenisresep": t.jenisresep,
                    "received_at": t.received_at,
                }
                for t in self.tasks
            ],
            "cancelled": self.cancelled,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Booking:
        """The booking in a state file's line; ``ValueError`` when it is not one."""
        add = AddAntrean.from_body(record.get("add"))
        tasks = record.get("tasks")
        cancelled = record.get("cancelled")
        if not isinstance(tasks, list) or not all(isinstance(t, Mapping) for t in tasks):
            raise ValueError("tasks: expected a list of objects")
        if cancelled is not None and not isinstance(cancelled, str):
            raise ValueError(f"cancelled: expected text or null, got {cancelled!r}")
        times: list[TaskTime] = []
        for t in tasks:
            task = UpdateWaktu(
                add.kodebooking, t.get("taskid"), t.get("waktu"), t.get("jenisresep")
            )
            received_at = t.get("received_at")
            if isinstance(received_at, bool) or not isinstance(received_at, int | float):
                raise ValueError(f"received_at: expected a number, got {received_at!r}")
            times.append(TaskTime(task.taskid, task.waktu, task.jenisresep, float(received_at)))
        return cls(add, times, cancelled)


@dataclass(frozen=True)
class Call:
    """One request, as received, and what the simulator answered."""

    method: str
    path: str
    headers: CIMultiDict[str]
    body: bytes
    status: int  # HTTP status answered
    code: int | None  # metadata code answered (None for a fault without an envelope)
    message: str


@dataclass(frozen=True)
class _Answer:
    code: int
    message: str
    response: Any = None
    status: int = 200


class BpjsSimulator(SimulatorServer):
    """An aiohttp server on a loopback port playing BPJS Antrean RS."""

    inspect_path = BOOKINGS_PATH
    default_path = ""

    def __init__(
        self,
        cons_id: str,
        secret: str,
        user_key: str,
        *,
        timezone: str = "Asia/Jakarta",
        tolerance: float = 300.0,
        faults: Faults | None = None,
        string_codes: bool = False,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
        keep: int | None = None,
        state: Path | None = None,
    ) -> None:
        super().__init__()
        self.cons_id = cons_id
        self.secret = secret
        self.user_key = user_key
        self.zone = ZoneInfo(timezone)
        self.tolerance = tolerance  # seconds an X-timestamp may be off the clock
        self.faults = faults or Faults()
        self.string_codes = string_codes  # send "200" rather than 200, as BPJS sometimes does
        self.bookings: dict[str, Booking] = {}
        self.calls: list[Call] = []
        self.keep = keep  # keep only the latest ``keep`` calls (None: all)
        self.state = state  # the state file (None: the bookings are in memory only)
        self._journal: Journal | None = None
        self._clock = clock
        self._random = random.Random(seed)

    # --- starting and stopping --------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen; with a state file, read the bookings from it first (``JournalError``
        when it cannot be used)."""
        if self.state is not None:
            self._open_state(self.state)
        try:
            await super().start(host, port)
        except BaseException:
            self._close_state()
            raise

    async def stop(self) -> None:
        try:
            await super().stop()
        finally:
            self._close_state()

    def _open_state(self, path: Path) -> None:
        """Replay the state file, then rewrite it with the bookings still kept."""
        journal = Journal(path, JOURNAL_KIND)
        bookings: dict[str, Booking] = {}
        for line, record in journal.read():
            try:
                booking = Booking.from_record(record)
            except (ValueError, TypeError) as exc:
                raise journal.error(line, f"not a booking: {exc}") from None
            bookings[booking.add.kodebooking] = booking
        today = datetime.fromtimestamp(self._clock(), self.zone).date()
        oldest = today - timedelta(days=KEEP_DAYS)
        kept = {
            kodebooking: booking
            for kodebooking, booking in bookings.items()
            if payloads.service_date(booking.add.tanggalperiksa) >= oldest
        }
        journal.rewrite(b.record() for b in kept.values())
        self.bookings = kept
        self._journal = journal
        log.info(
            "state read",
            extra={"path": str(path), "bookings": len(kept), "dropped": len(bookings) - len(kept)},
        )

    def _close_state(self) -> None:
        journal, self._journal = self._journal, None
        if journal is not None:
            journal.close()

    # --- what tests use ---------------------------------------------------------------

    def tasks(self, kodebooking: str) -> list[tuple[int, int]]:
        """The accepted (taskid, waktu) of a booking, in arrival order."""
        booking = self.bookings.get(kodebooking)
        return [(t.taskid, t.waktu) for t in booking.tasks] if booking else []

    def inject(self, fault: Fault, *, next_calls: int = 0, fraction: float = 0.0) -> None:
        """Answer the next ``next_calls`` calls, then ``fraction`` of calls, with ``fault``."""
        self.faults.fault = fault
        self.faults.next_calls = next_calls
        self.faults.fraction = fraction

    # --- the HTTP side ----------------------------------------------------------------

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = CIMultiDict(request.headers)
        if self.faults.delay > 0:
            await asyncio.sleep(self.faults.delay)
        fault = self._draw_fault()
        if fault is None and self.fail_switch.fails():
            fault = Fault.SERVER_ERROR
        if fault is not None:
            response, code, message = self._fault_answer(fault)
        else:
            answer = self._answer(request.method, request.path, headers, body)
            response = self._envelope(answer, headers)
            code, message = answer.code, answer.message
        self.calls.append(
            Call(request.method, request.path, headers, body, response.status, code, message)
        )
        if self.keep is not None and len(self.calls) > self.keep:
            del self.calls[: len(self.calls) - self.keep]
        log.info("answered", extra={"path": request.path, "code": code, "bpjs_message": message})
        return response

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response([b.as_dict() for b in self.bookings.values()])

    def _draw_fault(self) -> Fault | None:
        faults = self.faults
        if faults.fault is None:
            return None
        if faults.next_calls > 0:
            faults.next_calls -= 1
            return faults.fault
        if faults.fraction > 0 and self._random.random() < faults.fraction:
            return faults.fault
        return None

    def _fault_answer(self, fault: Fault) -> tuple[web.Response, int | None, str]:
        if fault is Fault.SERVER_ERROR:
            page = f"<html><body><h1>{self.faults.status} Service Unavailable</h1></body></html>"
            response = web.Response(status=self.faults.status, text=page, content_type="text/html")
            return response, None, "injected server error"
        if fault is Fault.TOO_MANY:
            headers = {"Retry-After": self.faults.retry_after} if self.faults.retry_after else {}
            envelope = {"metadata": {"code": self._code(429), "message": "Too Many Requests"}}
            return (
                web.json_response(envelope, status=429, headers=headers),
                429,
                "Too Many Requests",
            )
        if fault is Fault.GARBAGE:
            page = "<html><body>Sedang dalam pemeliharaan</body></html>"
            return web.Response(text=page, content_type="text/html"), None, "injected garbage"
        message = "Gagal dicoba kembali"
        envelope = {"metadata": {"code": self._code(404), "message": message}}
        return web.json_response(envelope), 404, message

    def _envelope(self, answer: _Answer, headers: CIMultiDict[str]) -> web.Response:
        envelope: dict[str, Any] = {
            "metadata": {"code": self._code(answer.code), "message": answer.message}
        }
        if answer.response is not None:
            timestamp = headers.get(signing.TIMESTAMP_HEADER, "")
            envelope["response"] = crypto.encrypt(
                answer.response, self.cons_id, self.secret, timestamp
            )
        return web.json_response(envelope, status=answer.status)

    def _code(self, code: int) -> int | str:
        return str(code) if self.string_codes else code

    def _answer(self, method: str, path: str, headers: CIMultiDict[str], body: bytes) -> _Answer:
        refusal = self._refusal(headers)
        if refusal is not None:
            return _Answer(401, refusal, status=401)
        call = next((c for c in payloads.PAYLOADS if path.endswith("/" + c)), None)
        if call is None:
            return _Answer(404, f"Path {path} tidak ditemukan", status=404)
        if method != "POST":
            return _Answer(405, "Method tidak diizinkan", status=405)
        data = _decode(body, headers.get("Content-Type", ""))
        try:
            payload = payloads.parse(call, data)
        except PayloadError as exc:
            return _Answer(201, str(exc))
        if isinstance(payload, AddAntrean):
            return self._add(payload)
        if isinstance(payload, UpdateWaktu):
            return self._update_waktu(payload)
        if isinstance(payload, BatalAntrean):
            return self._batal(payload)
        return self._list_tasks(payload)

    def _refusal(self, headers: CIMultiDict[str]) -> str | None:
        """Why the signed headers are wrong, or None when they are right."""
        if headers.get(signing.CONS_ID_HEADER) != self.cons_id:
            return "X-cons-id tidak dikenal"
        if headers.get(signing.USER_KEY_HEADER) != self.user_key:
            return "user_key tidak valid"
        timestamp = headers.get(signing.TIMESTAMP_HEADER, "")
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
            return "X-timestamp tidak valid"
        if abs(int(timestamp) - self._clock()) > self.tolerance:
            return "X-timestamp kedaluwarsa"
        value = headers.get(signing.SIGNATURE_HEADER)
        if not signing.signature_matches(self.cons_id, self.secret, timestamp, value):
            return "X-signature tidak valid"
        return None

    # --- the rules --------------------------------------------------------------------

    def _commit(self, booking: Booking) -> None:
        """Hold ``booking``'s new state, in the state file first when there is one
        (a write that fails answers HTTP 500 and changes nothing)."""
        if self._journal is not None:
            try:
                self._journal.append(booking.record())
            except JournalError as exc:
                log.error("state not written: %s", exc)
                raise web.HTTPInternalServerError(text="state not written") from None
        self.bookings[booking.add.kodebooking] = booking

    def _add(self, add: AddAntrean) -> _Answer:
        if add.kodebooking in self.bookings:
            return _Answer(208, "Terdapat duplikasi Kode Booking")
        self._commit(Booking(add))
        return _Answer(200, "Ok")

    def _update_waktu(self, task: UpdateWaktu) -> _Answer:
        n = task.taskid
        booking = self.bookings.get(task.kodebooking)
        if booking is None:
            return _Answer(201, f"TaskId={n} belum ada")
        if booking.has(n):
            return _Answer(208, f"TaskId={n} sudah ada")
        if n == payloads.CANCELLED_TASK:
            return self._accept(booking, task)
        if booking.cancelled is not None or booking.has(payloads.CANCELLED_TASK):
            return _Answer(201, "Antrean sudah dibatalkan")
        order = NEW_PATIENT_TASKS if booking.add.new_patient else RETURNING_PATIENT_TASKS
        if n not in order:
            return _Answer(201, f"TaskId {n} tidak berlaku untuk pasien lama")
        position = order.index(n)
        if position > 0 and not booking.has(order[position - 1]):
            return _Answer(201, f"TaskId={n} tidak valid / TaskId sebelumnya belum terkirim")
        service_date = payloads.service_date(booking.add.tanggalperiksa)
        if datetime.fromtimestamp(task.waktu / 1000, self.zone).date() != service_date:
            return _Answer(
                201, f"Tanggal pelayanan untuk Kode Booking tersebut adalah ({service_date})"
            )
        previous = [t.waktu for t in booking.tasks if t.taskid != payloads.CANCELLED_TASK]
        if previous and task.waktu <= max(previous):
            return _Answer(201, f"Waktu TaskId {n} harus setelah waktu TaskId sebelumnya")
        return self._accept(booking, task)

    def _accept(self, booking: Booking, task: UpdateWaktu) -> _Answer:
        accepted = TaskTime(task.taskid, task.waktu, task.jenisresep, self._clock())
        self._commit(Booking(booking.add, [*booking.tasks, accepted], booking.cancelled))
        return _Answer(200, "Ok")

    def _batal(self, batal: BatalAntrean) -> _Answer:
        booking = self.bookings.get(batal.kodebooking)
        if booking is None or booking.cancelled is not None:
            return _Answer(201, "Antrean Tidak Ditemukan atau Sudah Dibatalkan")
        self._commit(Booking(booking.add, booking.tasks, batal.keterangan))
        return _Answer(200, "Ok")

    def _list_tasks(self, query: GetListTask) -> _Answer:
        booking = self.bookings.get(query.kodebooking)
        if booking is None:
            return _Answer(201, "Data Tidak Ditemukan")
        listed = [
            {
                "kodebooking": booking.add.kodebooking,
                "taskid": t.taskid,
                "taskname": TASK_NAMES[t.taskid],
                "wakturs": self._format(t.received_at),
                "waktu": self._format(t.waktu / 1000),
            }
            for t in booking.tasks
        ]
        return _Answer(200, "Ok", {"list": listed})

    def _format(self, epoch_seconds: float) -> str:
        return datetime.fromtimestamp(epoch_seconds, self.zone).strftime("%d-%m-%Y %H:%M:%S %Z")


def _decode(body: bytes, content_type: str) -> Any:
    """A request body as JSON, whatever the Content-Type says; a form-encoded one
    (``a=1&b=x``) as a dict, its integer fields' digits read as numbers. None when
    it is neither."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        pass
    if "x-www-form-urlencoded" not in content_type.lower():
        return None
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        return None
    return {k: int(v) if k in _INT_FIELDS and v.isascii() and v.isdigit() else v for k, v in pairs}


# --- as a process -------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m daemon.sim.bpjs", description="BPJS Antrean simulator for outboxd"
    )
    eventloop.add_argument(parser)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--cons-id", required=True)
    parser.add_argument(
        "--secret",
        default=os.environ.get("OUTBOXD_SIM_BPJS_SECRET"),
        help="the consumer secret (default: $OUTBOXD_SIM_BPJS_SECRET)",
    )
    parser.add_argument(
        "--user-key",
        default=os.environ.get("OUTBOXD_SIM_BPJS_USER_KEY"),
        help="the user key (default: $OUTBOXD_SIM_BPJS_USER_KEY)",
    )
    parser.add_argument("--timezone", default="Asia/Jakarta", help="the hospital's IANA zone")
    parser.add_argument(
        "--tolerance", type=float, default=300.0, help="seconds X-timestamp may be off"
    )
    parser.add_argument("--fault", choices=[f.value for f in Fault], help="fault to inject")
    parser.add_argument("--fail-next", type=int, default=0, help="calls that get the fault")
    parser.add_argument("--fault-fraction", type=float, default=0.0, help="then this share")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before answering")
    fail.add_argument(parser)
    parser.add_argument("--seed", type=int, help="for --fault-fraction's dice")
    parser.add_argument("--keep", type=int, default=1000, help="calls kept in memory")
    parser.add_argument(
        "--state", type=Path, help="keep the bookings in this file across restarts (a journal)"
    )
    args = parser.parse_args(argv)
    if not args.secret or not args.user_key:
        parser.error("--secret and --user-key (or their environment variables) are required")
    return args


async def _serve(args: argparse.Namespace) -> int:
    faults = Faults(
        fault=Fault(args.fault) if args.fault else None,
        next_calls=args.fail_next,
        fraction=args.fault_fraction,
        delay=args.delay,
    )
    sim = BpjsSimulator(
        args.cons_id,
        args.secret,
        args.user_key,
        timezone=args.timezone,
        tolerance=args.tolerance,
        faults=faults,
        seed=args.seed,
        keep=args.keep,
        state=args.state,
    )
    sim.fail_switch = FailSwitch(args.fail_switch, "sim-bpjs")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await sim.start(args.host, args.port)
    except JournalError as exc:
        print(f"sim-bpjs: {exc}", file=sys.stderr)
        return EX_CONFIG
    log.info("listening", extra={"host": args.host, "port": sim.port})
    try:
        await stop.wait()
    finally:
        await sim.stop()
    log.info("stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    setup_logging("INFO", "text", "sim-bpjs")
    return eventloop.run(_serve(args), args.event_loop)


if __name__ == "__main__":
    sys.exit(main())
