"""What to send BPJS Antrean for a visit, and what to hold back: pure planning.

Given a booking as a source read it (``Booking``), the visit's current
``task_progress`` and the hospital's zone, ``plan_visit`` answers the messages to
enqueue and the progress entries to write:

- ``KB:add`` (``bpjs.add``) first; then the tasks in the patient's order, new
  patients 1-2-3-4-5-6-7, returning patients 3-4-5-6-7, each ``KB:task:N``
  (``bpjs.updatewaktu``, ``waktu`` in epoch ms) with ``after_key`` naming the step
  before it (unless that one is already sent), so the outbox delivers in order;
  ``group_key`` is the kodebooking.
- 99 (cancelled) after whatever was sent or queued before it, at any point after
  the add, when the booking is cancelled: at the time the source gives, or, when
  it has none (a visit cancelled at the counter), at the time the poller first
  saw the cancellation (``cancel_time: observed``, the entry's ``source`` says
  so) or held until the source has one (``cancel_time: hold``).
- A step already queued or further along is never planned again, and its time,
  as queued, is the one the next step must follow.

Task times are never made up or moved. A task without a time is "not yet"; the tasks
after it wait for it. A task whose time is not later than the one before it, or
not on the service date, is held with the reason, and so are the tasks after it
("waiting for task N"); an operator sees the reason in the visit. A step whose
message failed or was cancelled holds the steps after it the same way. Once
task 99 is queued, later tasks are held: BPJS takes nothing after a cancellation.

Entries: ``{"status": "queued", "waktu": ms}`` (``add``: no waktu) and
``{"status": "held", "reason": …}``. Only entries that differ from the current
progress are returned.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any, Literal

from daemon.bpjs.flow import ADD, KIND_ADD, KIND_TASK, add_key, task_key
from daemon.bpjs.payloads import CANCELLED_TASK, AddAntrean, PayloadError, UpdateWaktu
from daemon.domain.messages import NewMessage

NEW_PATIENT_TASKS = (1, 2, 3, 4, 5, 6, 7)
RETURNING_PATIENT_TASKS = (3, 4, 5, 6, 7)
SENT = frozenset({"sent", "confirmed"})  # delivered: no need to wait for it
STUCK = frozenset({"failed", "cancelled", "rejected"})  # the steps after it wait
CancelTime = Literal["observed", "hold"]  # a cancellation the source has no time for

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Booking:
    """One visit as a source reads it.

    ``add`` holds the ``antrean/add`` fields except ``kodebooking``,
    ``tanggalperiksa`` and ``pasienbaru``, which come from the fields here.
    ``times`` maps a task (1-7, 99) to when it happened: an aware datetime, or a
    naive local wall-clock time (read in the plan's zone); None or absent: not yet.
    """

    kodebooking: str
    service_date: date
    new_patient: bool
    add: Mapping[str, Any]
    times: Mapping[int, datetime | None] = field(default_factory=dict)
    cancelled: bool = False
    no_rawat: str | None = None
    add_problem: str | None = None  # why the add cannot be built (e.g. a code not mapped)


@dataclass
class Plan:
    """Messages and progress entries for a batch of visits."""

    messages: list[NewMessage] = field(default_factory=list)
    progress: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    held: int = 0  # steps held, counting those already held before this plan


def epoch_ms(moment: datetime, zone: tzinfo) -> int:
    """Epoch milliseconds of a time; a naive one is local time in ``zone``."""
    return (_aware(moment, zone) - _EPOCH) // timedelta(milliseconds=1)


def plan_visits(
    bookings: Iterable[Booking],
    progress: Mapping[str, Mapping[str, Mapping[str, Any]]],
    zone: tzinfo,
    channel: str,
    now: datetime | None = None,
    cancel_time: CancelTime = "observed",
) -> Plan:
    """``plan_visit`` for each booking (``progress``: kodebooking → its progress)."""
    plan = Plan()
    for booking in bookings:
        current = progress.get(booking.kodebooking, {})
        messages, entries = plan_visit(booking, current, zone, channel, now, cancel_time)
        plan.messages += messages
        if entries:
            plan.progress[booking.kodebooking] = entries
        merged = {**current, **entries}
        plan.held += sum(1 for e in merged.values() if e.get("status") == "held")
    return plan


def plan_visit(
    booking: Booking,
    progress: Mapping[str, Mapping[str, Any]],
    zone: tzinfo,
    channel: str,
    now: datetime | None = None,
    cancel_time: CancelTime = "observed",
) -> tuple[list[NewMessage], dict[str, dict[str, Any]]]:
    """The messages to enqueue for one visit and its changed progress entries.
    ``now`` is when the source was read (the observed time of a cancellation the
    source has no time for)."""
    return _Planner(booking, progress, zone, channel, now, cancel_time).run()


class _Planner:
    def __init__(
        self,
        booking: Booking,
        progress: Mapping[str, Mapping[str, Any]],
        zone: tzinfo,
        channel: str,
        now: datetime | None,
        cancel_time: CancelTime,
    ) -> None:
        self.booking = booking
        self.kb = booking.kodebooking
        self.current = progress
        self.zone = zone
        self.channel = channel
        self.now = now or datetime.now(UTC)
        self.cancel_time = cancel_time
        self.messages: list[NewMessage] = []
        self.entries: dict[str, dict[str, Any]] = {}
        self.previous_key: str | None = None  # the latest step with a message, unless sent
        self.blocker: str | None = None  # why the next steps wait, once one cannot go

    def run(self) -> tuple[list[NewMessage], dict[str, dict[str, Any]]]:
        self._add()
        self._tasks()
        self._cancellation()
        return self.messages, self.entries

    # --- the steps ----------------------------------------------------------------

    def _add(self) -> None:
        entry = self.current.get(ADD)
        state = _state(entry)
        if state == "done":
            self._follow(add_key(self.kb), entry)
            return
        if state == "stuck":
            self.blocker = f"waiting for the add ({_status(entry)})"
            return
        if self.booking.add_problem:
            self._hold(ADD, f"cannot build antrean/add: {self.booking.add_problem}")
            self.blocker = "waiting for the add"
            return
        body = {
            **self.booking.add,
            "kodebooking": self.kb,
            "tanggalperiksa": self.booking.service_date.isoformat(),
            "pasienbaru": 1 if self.booking.new_patient else 0,
        }
        try:
            payload = AddAntrean(**body).to_json()
        except (PayloadError, TypeError) as exc:
            self._hold(ADD, f"cannot build antrean/add: {exc}")
            self.blocker = "waiting for the add"
            return
        self._enqueue(ADD, add_key(self.kb), KIND_ADD, payload, {"status": "queued"})

    def _tasks(self) -> None:
        order = NEW_PATIENT_TASKS if self.booking.new_patient else RETURNING_PATIENT_TASKS
        cancelled = _state(self.current.get(str(CANCELLED_TASK))) == "done"
        previous: tuple[int, datetime] | None = None  # the last task's number and time
        for task in order:
            step = str(task)
            entry = self.current.get(step)
            state = _state(entry)
            moment = self._time(task)
            if state == "done":
                assert entry is not None
                waktu = entry.get("waktu")
                at = _from_ms(waktu) if isinstance(waktu, int) else moment
                previous = (task, at) if at is not None else previous
                self._follow(task_key(self.kb, task), entry)
                continue
            if state == "stuck":
                self.blocker = self.blocker or f"waiting for task {task} ({_status(entry)})"
                continue
            if moment is None:
                self.blocker = self.blocker or _waiting_for(task)
                continue
            if self.blocker is not None:
                self._hold(step, self.blocker)
                continue
            if cancelled:
                self._hold(step, "the booking is cancelled: task 99 went before it")
                continue
            problem = self._misplaced(task, moment, previous)
            if problem is not None:
                self._hold(step, problem)
                self.blocker = f"waiting for task {task}"
                continue
            waktu = epoch_ms(moment, self.zone)
            payload = UpdateWaktu(kodebooking=self.kb, taskid=task, waktu=waktu).to_json()
            entry_new = {"status": "queued", "waktu": waktu}
            self._enqueue(step, task_key(self.kb, task), KIND_TASK, payload, entry_new)
            previous = (task, moment)

    def _cancellation(self) -> None:
        step = str(CANCELLED_TASK)
        moment = self._time(CANCELLED_TASK)
        if not (self.booking.cancelled or moment is not None):
            return
        current = self.current.get(step)
        if _state(current) in ("done", "stuck"):
            return
        facts: dict[str, Any] | None = None
        if moment is None:
            if self.cancel_time == "hold":
                self._hold(step, "cancelled, but the source has no time for the cancellation")
                return
            facts = _observed(current, self.now)
            moment = _from_ms(facts["waktu"])
        add_state = _state(self.current.get(ADD))
        if add_state != "done" and ADD not in self._queued():
            self._hold(step, "waiting for the add", facts)
            return
        waktu = epoch_ms(moment, self.zone)
        payload = UpdateWaktu(kodebooking=self.kb, taskid=CANCELLED_TASK, waktu=waktu).to_json()
        entry: dict[str, Any] = {"status": "queued", "waktu": waktu}
        if facts is not None:
            entry["source"] = facts
        self._enqueue(step, task_key(self.kb, CANCELLED_TASK), KIND_TASK, payload, entry)

    # --- helpers ------------------------------------------------------------------

    def _time(self, task: int) -> datetime | None:
        moment = self.booking.times.get(task)
        return None if moment is None else _aware(moment, self.zone)

    def _misplaced(
        self, task: int, moment: datetime, previous: tuple[int, datetime] | None
    ) -> str | None:
        local = moment.astimezone(self.zone)
        if local.date() != self.booking.service_date:
            return (
                f"task {task} at {local:%Y-%m-%d} {_clock(local)} is not on the "
                f"service date {self.booking.service_date.isoformat()}"
            )
        if previous is None:
            return None
        before, at = previous
        at_local = at.astimezone(self.zone)
        if moment < at:
            return (
                f"task {task} at {_clock(local)} is earlier than task {before} "
                f"at {_clock(at_local)}"
            )
        if moment == at:
            return (
                f"task {task} at {_clock(local)} is not later than task {before} "
                f"at {_clock(at_local)}; BPJS takes each task only after the one before"
            )
        return None

    def _enqueue(
        self, step: str, key: str, kind: str, payload: bytes, entry: dict[str, Any]
    ) -> None:
        self.messages.append(
            NewMessage(
                self.channel,
                key,
                payload,
                kind,
                after_key=self.previous_key,
                group_key=self.kb,
                visit=self.kb,
                step=step,
            )
        )
        self._put(step, entry)
        self.previous_key = key

    def _follow(self, key: str, entry: Mapping[str, Any] | None) -> None:
        """A step already under way: the next one goes after it unless it is sent."""
        self.previous_key = None if _status(entry) in SENT else key

    def _hold(self, step: str, reason: str, facts: dict[str, Any] | None = None) -> None:
        entry: dict[str, Any] = {"status": "held", "reason": reason}
        if facts is not None:
            entry["source"] = facts
        self._put(step, entry)

    def _put(self, step: str, entry: dict[str, Any]) -> None:
        if self.current.get(step) != entry:
            self.entries[step] = entry

    def _queued(self) -> set[str]:
        return {step for step, entry in self.entries.items() if entry.get("status") == "queued"}


def _observed(entry: Mapping[str, Any] | None, now: datetime) -> dict[str, Any]:
    """The observed time of a cancellation without one: kept from the first poll
    that saw it (held while the add waited), else ``now``."""
    facts = entry.get("source") if entry else None
    if isinstance(facts, dict) and isinstance(facts.get("waktu"), int):
        return facts
    waktu = (now.astimezone(UTC) - _EPOCH) // timedelta(milliseconds=1)
    return {
        "time": "observed",
        "waktu": waktu,
        "why": "the source has no time for the cancellation; the poller saw it then",
    }


def _waiting_for(task: int) -> str:
    if task == 1:
        return "waiting for task 1 (a new patient's visit starts at task 1; no time for it yet)"
    return f"waiting for task {task}"


def _state(entry: Mapping[str, Any] | None) -> str | None:
    """None (not planned yet), "held", "stuck" (failed or cancelled) or "done"
    (queued or further along)."""
    if entry is None:
        return None
    status = _status(entry)
    if status == "held":
        return "held"
    if status in STUCK:
        return "stuck"
    return "done"


def _status(entry: Mapping[str, Any] | None) -> str | None:
    return None if entry is None else entry.get("status")


def _aware(moment: datetime, zone: tzinfo) -> datetime:
    return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment


def _from_ms(waktu: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=waktu)


def _clock(moment: datetime) -> str:
    return f"{moment:%H:%M}" if moment.second == 0 else f"{moment:%H:%M:%S}"
