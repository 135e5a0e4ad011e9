"""What an operator hands in, as pydantic models: the API validates its request
bodies with them and its OpenAPI document shows their JSON Schema
(``model_json_schema``); ``outboxd enqueue --batch`` reads each line as a
``MessageIn``. Every bound is ``daemon.domain.limits``'s. ``parse`` checks a
value against a model and refuses it naming the field at fault."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

import pydantic
from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, RootModel

from daemon.domain.errors import Refused
from daemon.domain.limits import (
    KEY_MAX,
    KIND_MAX,
    MAX_BATCH,
    MAX_ID,
    MAX_IDS,
    NAME_MAX,
    NAME_PATTERN,
    NOTE_MAX,
    REASON_MAX,
    TEXT_RULE,
    TIME_MAX,
    text_problem,
)
from daemon.domain.search import FIELD_VALUE_MAX, SEARCH_FIELDS, TEXT_MAX, TEXT_MIN
from daemon.domain.statuses import STATUSES
from daemon.operator.enqueue import Handed

M = TypeVar("M", bound=pydantic.BaseModel)


def _stored_text(limit: int) -> Callable[[str], str]:
    """A check of text stored as a message's key, kind or group: ``text_problem``'s."""

    def check(value: str) -> str:
        problem = text_problem(value, limit)
        if problem is not None:
            raise ValueError(problem)
        return value

    return check


def _reason(value: str) -> str:
    """A reason as the audit keeps it: stripped, by the text rule."""
    said = value.strip()
    problem = text_problem(said, REASON_MAX) if said else None
    if problem is not None:
        raise ValueError(problem)
    return said


def _one_or_more(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


Name = Annotated[str, Field(min_length=1, max_length=NAME_MAX, pattern=f"^{NAME_PATTERN}$")]
Key = Annotated[
    str,
    Field(min_length=1, max_length=KEY_MAX, description=TEXT_RULE),
    AfterValidator(_stored_text(KEY_MAX)),
]
Kind = Annotated[
    str,
    Field(min_length=1, max_length=KIND_MAX, description=TEXT_RULE),
    AfterValidator(_stored_text(KIND_MAX)),
]
KeyPrefix = Annotated[str, Field(min_length=1, max_length=KEY_MAX, description="keys beginning so")]
MessageId = Annotated[int, Field(ge=1, le=MAX_ID)]
SearchText = Annotated[
    str,
    Field(min_length=TEXT_MIN, max_length=TEXT_MAX,
          description="payloads holding this text, in any case"),
]  # fmt: skip
FieldValue = Annotated[str, Field(min_length=1, max_length=FIELD_VALUE_MAX)]
Reason = Annotated[
    str,
    Field(max_length=REASON_MAX,
          description="why (a ticket number, a few words): kept in the audit with the action"),
    AfterValidator(_reason),
]  # fmt: skip
Time = Annotated[
    str,
    Field(max_length=TIME_MAX, json_schema_extra={"format": "date-time"},
          description="ISO 8601; without an offset, in the file's timezone"),
]  # fmt: skip
Status = Literal[STATUSES]  # type: ignore[valid-type]
Statuses = Annotated[
    list[Status],
    BeforeValidator(_one_or_more, json_schema_input_type=list[Status] | Status),
    Field(min_length=1, max_length=len(STATUSES)),
]


class Request(pydantic.BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# --- messages -------------------------------------------------------------------------


class MessageIn(Request):
    """One message to enqueue."""

    channel: Name
    key: Key = Field(description="the idempotency key, unique per channel")
    payload: str | dict[str, Any] | list[Any] = Field(
        description="the bytes to send, as text; a JSON value is sent as its JSON text"
    )
    kind: Kind | None = None
    after: Key | None = Field(default=None, description="a message of the channel to send first")
    group: Key | None = Field(default=None, description="one at a time per group (ordered)")

    def handed(self) -> Handed:
        payload = self.payload if isinstance(self.payload, str) else json.dumps(self.payload)
        return Handed(
            self.channel, self.key, payload.encode("utf-8"), self.kind, self.after, self.group
        )


class BatchIn(Request):
    """Messages to enqueue in one transaction."""

    messages: list[MessageIn] = Field(min_length=1, max_length=MAX_BATCH)


EnqueueIn = MessageIn | BatchIn  # the body of POST /api/v1/messages


def _field_text(name: str) -> str:
    what, where = SEARCH_FIELDS[name]
    return f"messages stored with this {what} ({where} of an HL7 message), exactly"


class FilterIn(Request):
    """Which messages; null or a field left out: not filtered on."""

    channel: Name | None = None
    status: Statuses | None = None
    kind: Kind | None = None
    key: KeyPrefix | None = Field(default=None, description="a key prefix (needs channel)")
    since: Time | None = None
    until: Time | None = None
    q: SearchText | None = None
    mrn: FieldValue | None = Field(default=None, description=_field_text("mrn"))
    control_id: FieldValue | None = Field(default=None, description=_field_text("control_id"))
    message_type: FieldValue | None = Field(default=None, description=_field_text("message_type"))
    visit_number: FieldValue | None = Field(default=None, description=_field_text("visit_number"))

    def search_fields(self) -> tuple[tuple[str, str], ...]:
        """The search fields given, as ``MessageFilter.fields``."""
        return tuple(
            (name, value) for name in SEARCH_FIELDS if (value := getattr(self, name)) is not None
        )


class ActionIn(Request):
    """Retry, cancel or resend: by ids or by a filter."""

    ids: list[MessageId] | None = Field(default=None, min_length=1, max_length=MAX_IDS)
    filter: FilterIn | None = None
    dry_run: bool = False
    reason: Reason | None = None


# --- schedules ------------------------------------------------------------------------

Definition = Annotated[
    dict[str, Any],
    Field(description="the keys of a schedule in the YAML file (cron or every, job, options, …)"),
]


class ScheduleIn(Request):
    """A schedule of the operator's own."""

    name: Name
    definition: Definition


class ScheduleChangesIn(RootModel[Definition]):
    """The keys of a schedule to change (a new cron or every replaces the old timing)."""

    model_config = ConfigDict(strict=True)


def _said(note: str) -> str:
    if not note.strip():
        raise ValueError("say why it is paused (shown with the schedule)")
    problem = text_problem(note.strip(), NOTE_MAX)
    if problem is not None:
        raise ValueError(problem)
    return note.strip()


class PauseIn(Request):
    note: Annotated[
        str,
        Field(min_length=1, max_length=NOTE_MAX, json_schema_extra={"pattern": "\\S"},
              description="why it is paused (shown with the schedule)"),
        AfterValidator(_said),
    ]  # fmt: skip
    reason: Reason | None = None


class ResumeIn(Request):
    note: str | None = Field(default=None, max_length=NOTE_MAX)
    reason: Reason | None = None


class RunIn(Request):
    """Run now: the body may be left out."""

    reason: Reason | None = None


class CancelRunIn(Request):
    note: str | None = Field(
        default=None, max_length=NOTE_MAX,
        description="why (kept with the run and in the audit)",
    )  # fmt: skip


class RangeIn(Request):
    start: Time = Field(alias="from")
    until: Time
    dry_run: bool = False
    reason: Reason | None = None


# --- checking -------------------------------------------------------------------------


def location(loc: tuple[int | str, ...], where: str = "") -> str:
    """A pydantic error's location as a request names it: ``messages[1].key``."""
    path = where
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path and not path.endswith(".") else part
    return path


def parse(model: type[M], data: Any, where: str = "") -> M:
    """``data`` checked by ``model``; else ``Refused`` (usage) with the first
    error, its ``field`` the location (``where`` in front)."""
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        path = location(first["loc"], where) or None
        if first["type"] == "extra_forbidden":
            reason = "unknown field"
        elif first["type"] == "missing":
            reason = "required"
        else:
            reason = first["msg"].removeprefix("Value error, ")
        raise Refused(reason, "usage", path) from None
