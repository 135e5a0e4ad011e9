"""The typed, frozen settings a YAML file is validated into.

Every model forbids unknown keys (``daemon.domain.fields.Model``). A channel's or a
source's settings are its kind's model (``daemon.channels.registry``,
``daemon.sources.registry``); secrets are ``SecretStr`` so they never show in a
repr or a log line.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from types import GenericAlias
from typing import Annotated, Any, ClassVar, Literal, Self, cast

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from daemon.channels.registry import CHANNEL_KINDS, ChannelSettings, channel_settings
from daemon.config.database import DatabaseSettings
from daemon.domain.auth import Role
from daemon.domain.fields import (
    ByteSize,
    Duration,
    EventLoopName,
    Flag,
    Host,
    HostName,
    Integer,
    JsonPointer,
    Line,
    Model,
    Name,
    NodeName,
    Port,
    PositiveDuration,
    TimeZoneName,
    default_node,
)
from daemon.domain.kinds import tagged_union
from daemon.jobs.kind import JobOptions
from daemon.jobs.registry import JOB_KINDS
from daemon.notify.kind import NotifySettings
from daemon.notify.registry import NOTIFY_KINDS, notify_settings
from daemon.notify.rules import AlertSettings
from daemon.sources.base import SourceSettings
from daemon.sources.registry import SOURCE_KINDS, source_settings
from daemon.webhooks.signing import secret_key

__all__ = [
    "ControlSettings",
    "ControlToken",
    "DatabaseSettings",
    "RoleSettings",
    "Settings",
    "WebhookSettings",
]


MAX_CONCURRENT = 1000  # runs of one schedule at once, at most
MAX_RUNS = 1_000_000_000  # a schedule's max_runs, at most


def _check_cron(expression: str) -> str:
    from daemon.scheduling.cron import parse_crontab  # a file with schedules only

    parse_crontab(expression)
    return expression


CronExpression = Annotated[str, AfterValidator(_check_cron)]


class ScheduleRetrySettings(Model):
    max_attempts: Annotated[Integer, Field(ge=1, le=100)] = 3  # runs of one fire, at most
    backoff: PositiveDuration = 60.0  # before the first retry; twice that before the next
    max_backoff: PositiveDuration = 3600.0


class HolidaySettings(Model):
    """Public holidays of a country (and one of its subdivisions), from the
    ``holidays`` package: ``{country: DE, subdiv: BE}``, ``{country: ID}``."""

    country: Annotated[str, Field(pattern=r"^[A-Z]{2,3}$")]
    subdiv: Annotated[str, Field(pattern=r"^[A-Z0-9-]{1,10}$")] | None = None

    @model_validator(mode="after")
    def _known(self) -> HolidaySettings:
        import holidays

        supported = holidays.list_supported_countries()
        if self.country not in supported:
            raise ValueError(f"holidays: no calendar for country {self.country!r}")
        if self.subdiv is not None and self.subdiv not in supported[self.country]:
            known = ", ".join(supported[self.country]) or "none"
            raise ValueError(
                f"holidays: {self.country} has no subdivision {self.subdiv!r} ({known})"
            )
        return self


class ScheduleSettings(Model):
    """One schedule: when (``cron`` or ``every``), with which rules, what job."""

    cron: CronExpression | None = None
    every: Annotated[PositiveDuration, Field(ge=1.0)] | None = None
    anchor: datetime | None = None  # every: the instant its multiples count from
    timezone: TimeZoneName | None = None
    on_missing_time: Literal["shift", "skip"] = "shift"
    on_repeated_time: Literal["once", "twice"] = "once"
    skip: list[Literal["weekends", "holidays"]] = Field(default_factory=list)
    if_skipped: Literal["drop", "next_business_day"] = "drop"
    holidays: HolidaySettings | None = None  # the calendar of skip: [holidays]
    overlap: Literal["skip", "queue_one", "allow"] = "skip"
    # overlap: allow — the runs that may run at once; a fire beyond them is skipped
    max_concurrent: Annotated[Integer, Field(ge=1, le=MAX_CONCURRENT)] | None = None
    # no fire before start_at, none after end_at (both in; a wall time in the
    # schedule's zone unless an offset is given)
    start_at: datetime | None = None
    end_at: datetime | None = None
    # no fire once its fires have made this many runs, counted while it has a max_runs
    # (retries, run now and backfill do not count; a run counts whatever its end)
    max_runs: Annotated[Integer, Field(ge=1, le=MAX_RUNS)] | None = None
    catch_up: Duration = 3600.0
    jitter: Duration = 0.0  # a start delayed by up to this much (the fire time is kept)
    timeout: PositiveDuration = 3600.0  # a run taking longer fails
    retry: ScheduleRetrySettings = Field(default_factory=ScheduleRetrySettings.model_construct)
    enabled: Flag = True
    job: str
    options: JobOptions

    @field_validator("max_concurrent")
    @classmethod
    def _bounds_allow(cls, value: int | None, info: ValidationInfo) -> int | None:
        overlap = info.data.get("overlap")
        if value is not None and overlap is not None and overlap != "allow":
            raise ValueError(
                f"max_concurrent is for overlap: allow (overlap: {overlap} runs one at a time)"
            )
        return value

    @field_validator("end_at")
    @classmethod
    def _after_start(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        start = info.data.get("start_at")
        if value is None or start is None:
            return value
        if (value.tzinfo is None) == (start.tzinfo is None) and value <= start:
            raise ValueError(f"end_at ({value.isoformat()}) is not later than start_at "
                             f"({start.isoformat()})")  # fmt: skip
        return value

    @model_validator(mode="after")
    def _when(self) -> ScheduleSettings:
        if (self.cron is None) == (self.every is None):
            raise ValueError("give cron or every, one of them")
        if self.anchor is not None and self.every is None:
            raise ValueError("anchor is for every")
        if self.if_skipped == "next_business_day" and self.cron is None:
            raise ValueError("if_skipped: next_business_day is for cron schedules")
        if self.if_skipped == "next_business_day" and not self.skip:
            raise ValueError("if_skipped says what to do with skipped days: give skip")
        if self.cron is not None and "weekends" in self.skip and self.if_skipped == "drop":
            from daemon.scheduling.cron import parse_crontab
            from daemon.scheduling.fires import EPOCH, Timing, next_fires

            weekdays = Timing(UTC, parse_crontab(self.cron), skip_weekends=True)
            if not next_fires(weekdays, EPOCH):
                raise ValueError(
                    f"cron {self.cron!r} runs on weekends only and skip: [weekends] drops "
                    "every fire (if_skipped: next_business_day moves them)"
                )
        return self


def schedule_model(job: str) -> type[ScheduleSettings]:
    """The settings of a schedule of one job kind (``KeyError`` for no such kind):
    its ``job`` that kind's name, its ``options`` that kind's options. Made once."""
    model = _SCHEDULES.get(job)
    if model is None:
        with _MAKING:
            model = _SCHEDULES.get(job) or _schedule_model(job)
            _SCHEDULES[job] = model
    return model


def _schedule_model(job: str) -> type[ScheduleSettings]:
    kind = JOB_KINDS[job]
    tag: Any = Literal[kind.name]  # a literal made at run time, one per kind
    return create_model(
        f"{kind.name.title().replace('_', '')}ScheduleSettings",
        __base__=ScheduleSettings,
        job=(tag, ...),
        options=(kind.options, Field(default_factory=kind.options))
        if _has_defaults(kind.options)
        else (kind.options, ...),
    )


_SCHEDULES: dict[str, type[ScheduleSettings]] = {}
_MAKING = threading.RLock()  # one model per set of kinds or job, whichever thread asks first


def _has_defaults(model: type[BaseModel]) -> bool:
    """Whether the model can be made from nothing (every field has a default)."""
    return all(not field.is_required() for field in model.model_fields.values())


def schedule_settings(names: Sequence[str]) -> Any:
    """The type a schedule is validated as: the schedules of the job kinds named
    (registered ones, in the registry's order), told apart by ``job``."""
    kinds = JOB_KINDS.named(names)
    return tagged_union([schedule_model(n) for n in kinds], "job", ScheduleSettings)


def _sha256_hex(value: object) -> object:
    if isinstance(value, str) and len(value) == 64:
        try:
            bytes.fromhex(value)
        except ValueError:
            pass
        else:
            return value.lower()
    raise ValueError(
        "expected the 64 hex digits of the token's SHA-256 (outboxd token new prints them), "
        "not the token itself"
    )


class ControlToken(Model):
    """One caller of the control API: the token's name, its role and its SHA-256."""

    name: Name
    role: Role
    sha256: Annotated[str, BeforeValidator(_sha256_hex)]


class ControlSettings(Model):
    host: Host = "127.0.0.1"  # another address than a loopback one needs tokens
    port: Port = 8080  # not 9140: that is roles.control.base_port, its health port
    tokens: Annotated[list[ControlToken], Field(max_length=1000)] = Field(default_factory=list)
    max_body: Annotated[ByteSize, Field(ge=1024, le=64 << 20)] = 1 << 20  # a request's body
    # the names a request's Host may give beside the address listened on (a reverse
    # proxy's public name): any other is refused, so that a page on another site
    # that a DNS name of its own points here (DNS rebinding) reads nothing
    allowed_hosts: Annotated[list[HostName], Field(max_length=100)] = Field(default_factory=list)
    # a connection with no request under way is closed after idle_timeout: between
    # requests, and while a request's line and headers are still arriving
    idle_timeout: Annotated[PositiveDuration, Field(le=3600.0)] = 15.0
    body_timeout: Annotated[PositiveDuration, Field(le=3600.0)] = 30.0  # to read a request's body

    @field_validator("tokens")
    @classmethod
    def _names_unique(cls, tokens: list[ControlToken]) -> list[ControlToken]:
        seen: dict[str, int] = {}
        for i, token in enumerate(tokens):
            if token.name in seen:
                raise ValueError(
                    f"token name {token.name!r} is given twice (tokens[{seen[token.name]}] "
                    f"and tokens[{i}]): every token needs a name of its own"
                )
            seen[token.name] = i
        return tokens


def _webhook_secret(secret: SecretStr) -> SecretStr:
    secret_key(secret.get_secret_value())
    return secret


WebhookSecret = Annotated[SecretStr, AfterValidator(_webhook_secret)]  # whsec_…
Outcome = Literal["confirmed", "rejected"]  # what a tracked message that was sent becomes


class WebhookSettings(Model):
    """A partner's status callbacks, POSTed to ``/webhooks/NAME`` and signed the
    Standard Webhooks way: which of the channel's messages the body is about
    (its key at ``message_key``, or the partner's id at ``message_ref``, matched
    with the id at ``id_pointer`` in the answer kept when the message was
    sent), the partner's status at ``status``, and what it means."""

    secret: WebhookSecret | None = None
    secrets: Annotated[list[WebhookSecret], Field(min_length=1, max_length=8)] | None = None
    channel: Name
    message_key: JsonPointer | None = None
    message_ref: JsonPointer | None = None
    id_pointer: JsonPointer = "/id"  # message_ref: the partner's id in the answer kept at send
    status: JsonPointer = "/status"
    statuses: Annotated[dict[Line, Outcome], Field(min_length=1)]
    tolerance: Annotated[PositiveDuration, Field(le=86400.0)] = 300.0

    @model_validator(mode="after")
    def _one_of_each(self) -> WebhookSettings:
        if (self.secret is None) == (self.secrets is None):
            raise ValueError("give secret or secrets (old and new, while rotating), one of them")
        if (self.message_key is None) == (self.message_ref is None):
            raise ValueError("give message_key or message_ref, one of them")
        return self

    def keys(self) -> list[bytes]:
        """The HMAC keys a signature may be made with (every secret while rotating)."""
        given = [self.secret] if self.secret is not None else list(self.secrets or [])
        return [secret_key(s.get_secret_value()) for s in given]


class RoleSettings(Model):
    host: Host = "127.0.0.1"
    base_port: Port
    drain_timeout: PositiveDuration = 30.0
    # The asyncio event loop implementation: "uvloop" (libuv; less CPU per message,
    # the default where it is installed, i.e. not on Windows) or "asyncio" (the
    # standard library's).
    event_loop: EventLoopName = "uvloop"


class DispatcherRoleSettings(RoleSettings):
    # Run the process's database work in a child process of its own (true) or on
    # a thread (false). A busy event loop and a store thread take turns on one
    # interpreter lock, so a thread makes both wait; a child process does not
    # (about 1.5x the messages a second on SQLite). Read at start.
    store_process: Flag = True


class SchedulerRoleSettings(RoleSettings):
    run_lease: Annotated[PositiveDuration, Field(ge=1.0)] = 30.0  # renewed every third of it
    sync_interval: PositiveDuration = 2.0  # how soon a schedule changed in the database is seen
    alert_interval: PositiveDuration = 15.0  # how often the alert rules are judged


# Each role's first health port when the file names none. The defaults below are
# made when a file is read (``default_factory``), not when this module is imported:
# a model made at import would build its validator then, for nothing.
DEFAULT_BASE_PORTS = {"poller": 9100, "dispatcher": 9110, "scheduler": 9130, "control": 9140}


def _role_default(model: type[RoleSettings], role: str) -> Any:
    return Field(default_factory=lambda: model.model_construct(base_port=DEFAULT_BASE_PORTS[role]))


class RolesSettings(Model):
    poller: RoleSettings = _role_default(RoleSettings, "poller")
    dispatcher: DispatcherRoleSettings = _role_default(DispatcherRoleSettings, "dispatcher")
    scheduler: SchedulerRoleSettings = _role_default(SchedulerRoleSettings, "scheduler")
    control: RoleSettings = _role_default(RoleSettings, "control")


class LoggingSettings(Model):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


def _database_shorthand(value: object) -> object:
    return {"url": value} if isinstance(value, str) else value


def _this_host() -> str:
    return default_node(socket.gethostname())


class Settings(Model):
    """The whole file. A file is validated by ``settings_model``'s subclass of this
    class for the kinds it names (``channels``, ``sources``, ``schedules`` and
    ``notify`` hold the settings of those kinds), never by this class itself."""

    database: Annotated[DatabaseSettings, BeforeValidator(_database_shorthand)]
    # this host's name in the suite: in every lease owner (node:pid:role.n), /healthz,
    # /metrics (outboxd_process_info) and JSON logs; by default the host name up to
    # its first dot. Give each machine sharing one database a name of its own.
    node: NodeName = Field(default_factory=_this_host)
    timezone: TimeZoneName = "UTC"
    channels: dict[Name, ChannelSettings] = Field(default_factory=dict)
    sources: dict[Name, SourceSettings] = Field(default_factory=dict)
    schedules: dict[Name, ScheduleSettings] = Field(default_factory=dict)
    holidays: HolidaySettings | None = None  # the calendar of schedules' skip: [holidays]
    notify: dict[Name, NotifySettings] = Field(default_factory=dict)
    alerts: list[AlertSettings] = Field(default_factory=list)
    control: ControlSettings = Field(default_factory=ControlSettings.model_construct)
    webhooks: dict[Name, WebhookSettings] = Field(default_factory=dict)
    roles: RolesSettings = Field(default_factory=RolesSettings.model_construct)
    logging: LoggingSettings = Field(default_factory=LoggingSettings.model_construct)

    @model_validator(mode="before")
    @classmethod
    def _of_kinds(cls, data: Any) -> Any:
        if cls is Settings:  # it knows no kind: every channel would be refused
            raise TypeError("Settings validates through the model of a file's kinds: use "
                            "Settings.model_validate or daemon.config.loader")  # fmt: skip
        return data

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Self:
        """The settings ``obj`` gives, by the model of the kinds it names where this
        is ``Settings`` itself (``model_for``)."""
        if cls is Settings and isinstance(obj, Mapping):
            return cast(Self, model_for(obj).model_validate(obj, *args, **kwargs))
        return super().model_validate(obj, *args, **kwargs)

    def __eq__(self, other: object) -> bool:
        """Equal values are equal settings, whichever kinds each one's model knew."""
        if not isinstance(other, Settings):
            return NotImplemented
        return self.__dict__ == other.__dict__

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as the kinds its model knows and its values: the model is made
        again where it is unpickled."""
        return _unpickle, (type(self).__kinds__, dict(self.__dict__), set(self.model_fields_set))

    __kinds__: ClassVar[tuple[tuple[str, ...], ...]] = ((), (), (), ())


def _unpickle(
    kinds: tuple[tuple[str, ...], ...], values: dict[str, Any], given: set[str]
) -> Settings:
    return settings_model(*kinds).model_construct(_fields_set=given, **values)


_MODELS: dict[tuple[tuple[str, ...], ...], type[Settings]] = {}


def _named(value: Any) -> Any:
    """A section of named entries of the type ``value`` (``dict[Name, value]``),
    empty unless given."""
    return GenericAlias(dict, (Name, value)), Field(default_factory=dict)


def settings_model(
    channels: Sequence[str], sources: Sequence[str], jobs: Sequence[str], notify: Sequence[str]
) -> type[Settings]:
    """The settings of a file whose channels, sources, schedules and notify targets
    are of the kinds named (registered ones): only those kinds are imported, and
    pydantic builds the validator of no other. A file with a kind not named fails
    its validation. Made once per set of kinds."""
    key = (
        CHANNEL_KINDS.named(channels), SOURCE_KINDS.named(sources), JOB_KINDS.named(jobs),
        NOTIFY_KINDS.named(notify),
    )  # fmt: skip
    model = _MODELS.get(key)
    if model is None:
        with _MAKING:
            model = _MODELS.get(key)
            if model is None:
                model = create_model(
                    "Settings",
                    __base__=Settings,
                    __module__=__name__,
                    channels=_named(channel_settings(key[0])),
                    sources=_named(source_settings(key[1])),
                    schedules=_named(schedule_settings(key[2])),
                    notify=_named(notify_settings(key[3])),
                )
                model.__kinds__ = key
                _MODELS[key] = model
    return model


def _every_key() -> tuple[tuple[str, ...], ...]:
    return tuple(CHANNEL_KINDS), tuple(SOURCE_KINDS), tuple(JOB_KINDS), tuple(NOTIFY_KINDS)


def knows_every_kind(model: type[Settings]) -> bool:
    """Whether ``model`` is the model of every registered kind."""
    return model.__kinds__ == _every_key()


def every_kind() -> type[Settings]:
    """The settings that know every registered kind: the model whose errors name
    them all (``unknown kind 'x'; expected one of …``)."""
    return settings_model(*_every_key())


def _tags(section: object, tag: str) -> list[str] | None:
    """The tags the entries of a section give (none for a section not given), or
    None where the section is not a mapping or an entry gives no tag that is a
    string."""
    if section is None:
        return []
    if not isinstance(section, Mapping):
        return None
    tags = [entry.get(tag) if isinstance(entry, Mapping) else None for entry in section.values()]
    return (
        [t for t in tags if isinstance(t, str)] if all(isinstance(t, str) for t in tags) else None
    )


def kinds_named(data: Mapping[str, Any]) -> list[list[str]] | None:
    """The kinds a file's channels, sources, schedules (their jobs) and notify
    targets name, in that order; None where one names a kind outboxd does not
    have, or none at all."""
    sections = (
        ("channels", "kind", CHANNEL_KINDS), ("sources", "kind", SOURCE_KINDS),
        ("schedules", "job", JOB_KINDS), ("notify", "kind", NOTIFY_KINDS),
    )  # fmt: skip
    found = []
    for key, tag, kinds in sections:
        tags = _tags(data.get(key), tag)
        if tags is None or not all(t in kinds for t in tags):
            return None
        found.append(tags)
    return found


def model_for(data: Mapping[str, Any]) -> type[Settings]:
    """The settings model to validate a file with: the one for the kinds it names,
    so that a dispatcher of MLLP channels loads no BPJS, job or notify code. The
    model of every kind where the file names a kind outboxd does not have or an
    entry names none (its errors then say what is known), or where this process
    has built that model already (it validates any file as fast)."""
    built = _MODELS.get(_every_key())
    if built is not None and built.__pydantic_complete__:
        return built
    named = kinds_named(data)
    return every_kind() if named is None else settings_model(*named)
