"""The typed, frozen settings a YAML file is validated into.

Every model forbids unknown keys. Durations are seconds (``float``) parsed from
``30s``-style strings; secrets are ``SecretStr`` so they never show in a repr
or a log line.
"""

from __future__ import annotations

import codecs
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    SecretStr,
    field_validator,
    model_validator,
)

from daemon.cron import crontab_trigger
from daemon.eventloop import EventLoopName
from daemon.units import Rate, parse_duration, parse_rate


def _check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r} (use an IANA name such as Asia/Jakarta)"
        ) from None
    return name


def _check_cron(expression: str) -> str:
    crontab_trigger(expression, "UTC")
    return expression


def _check_encoding(name: str) -> str:
    try:
        codecs.lookup(name)
    except LookupError:
        raise ValueError(f"unknown text encoding {name!r}") from None
    return name


def _check_http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected an http:// or https:// URL, got {url!r}")
    return url


Duration = Annotated[float, BeforeValidator(parse_duration)]
PositiveDuration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
RateValue = Annotated[Rate, PlainValidator(parse_rate)]
Port = Annotated[int, Field(ge=1, le=65535)]
TimeZoneName = Annotated[str, AfterValidator(_check_timezone)]
CronExpression = Annotated[str, AfterValidator(_check_cron)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")]
HttpUrl = Annotated[str, AfterValidator(_check_http_url)]
Encoding = Annotated[str, AfterValidator(_check_encoding)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- database -----------------------------------------------------------------

STORE_SCHEMES = ("sqlite", "postgres", "postgresql")


class DatabaseSettings(Model):
    url: SecretStr
    busy_timeout: PositiveDuration = 10.0
    connect_timeout: PositiveDuration = 10.0

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: SecretStr) -> SecretStr:
        scheme = urlsplit(url.get_secret_value()).scheme
        if scheme not in STORE_SCHEMES:
            raise ValueError(
                f"unsupported database scheme {scheme or '(none)'!r}: "
                "use sqlite:///PATH or postgresql://USER@HOST/DB"
            )
        return url


# --- channels -----------------------------------------------------------------


class RetrySettings(Model):
    max_attempts: Annotated[int, Field(ge=1)] = 12
    backoff: PositiveDuration = 30.0
    max_backoff: PositiveDuration = 3600.0
    max_age: PositiveDuration = 86400.0

    @model_validator(mode="after")
    def _cap_not_below_base(self) -> RetrySettings:
        if self.max_backoff < self.backoff:
            raise ValueError("max_backoff must not be smaller than backoff")
        return self


class BreakerSettings(Model):
    failures: Annotated[int, Field(ge=1)] = 5  # consecutive transport failures that open it
    cooldown: PositiveDuration = 30.0  # open this long, then one probe (half-open)


class ChannelBase(Model):
    rate: RateValue | None = None
    burst: Annotated[int, Field(ge=1)] | None = None
    concurrency: Annotated[int, Field(ge=1, le=1000)] = 4
    batch_size: Annotated[int, Field(ge=1, le=10000)] = 100
    lease: PositiveDuration = 60.0
    ordered: bool = False  # one message in flight per ordering key, oldest first
    retry: RetrySettings = RetrySettings()
    breaker: BreakerSettings = BreakerSettings()


class TlsSettings(Model):
    ca_file: str | None = None  # trust these CAs instead of the system's
    cert_file: str | None = None  # client certificate (mutual TLS)
    key_file: str | None = None
    verify: bool = True  # check the peer's certificate and host name
    server_hostname: str | None = None  # name to check, when it differs from host


class MllpChannel(ChannelBase):
    kind: Literal["mllp"]
    host: str
    port: Port
    tls: TlsSettings | None = None
    connect_timeout: PositiveDuration = 10.0
    response_timeout: PositiveDuration = 30.0
    encoding: Encoding = "utf-8"
    on_application_error: Literal["reject", "retry"] = "reject"  # what AE/CE means


def _check_headers(headers: dict[str, str]) -> dict[str, str]:
    for name, value in headers.items():
        if any(c in name + value for c in "\r\n\0") or not name.strip() or ":" in name:
            raise ValueError(f"header {name!r} has a character HTTP headers cannot carry")
    return headers


HttpHeaders = Annotated[dict[str, str], AfterValidator(_check_headers)]


class BearerAuth(Model):
    type: Literal["bearer"]
    token: SecretStr


class BasicAuth(Model):
    type: Literal["basic"]
    username: Annotated[str, Field(pattern=r"^[^:\r\n]*$")]
    password: SecretStr


class HmacSettings(Model):
    secret: SecretStr
    header: str = "X-Outboxd-Signature"  # value: sha256=<hex of HMAC-SHA256(body)>


class HttpChannel(ChannelBase):
    kind: Literal["http"]
    url: HttpUrl
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    headers: HttpHeaders = {}
    auth: Annotated[BearerAuth | BasicAuth, Field(discriminator="type")] | None = None
    hmac: HmacSettings | None = None
    timeout: PositiveDuration = 30.0
    connect_timeout: PositiveDuration = 10.0


class BpjsAntreanChannel(ChannelBase):
    kind: Literal["bpjs_antrean"]
    base_url: HttpUrl
    cons_id: str
    secret: SecretStr
    user_key: SecretStr
    timeout: PositiveDuration = 30.0
    # Seconds to wait for the TCP (and TLS) connection before counting a transport failure.
    connect_timeout: PositiveDuration = 10.0
    # How long to wait before retrying a task BPJS refused because its predecessor task
    # (or the booking's antrean/add) has not been recorded yet (201 "TaskId=N tidak
    # valid / TaskId sebelumnya belum terkirim", "TaskId=N belum ada").
    predecessor_wait: PositiveDuration = 60.0
    # The Content-Type of every call; the body is the same JSON either way. "json" sends
    # application/json (the reference); "form" sends application/x-www-form-urlencoded,
    # as some clients do (unconfirmed which one BPJS prefers, so it is a setting).
    content_type: Literal["json", "form"] = "json"


Channel = Annotated[MllpChannel | HttpChannel | BpjsAntreanChannel, Field(discriminator="kind")]


# --- sources, schedules, control, roles -----------------------------------------


class KhanzaSource(Model):
    """A SIMRS Khanza database (MariaDB/MySQL) polled for BPJS Antrean task times
    (``outboxd run poller``; code in ``daemon/sources/khanza.py``)."""

    kind: Literal["khanza"]
    # mysql://USER:PASSWORD@HOST[:PORT]/DATABASE[?charset=utf8mb4] (a read-only user is
    # enough; the poller only reads), or sqlite:///PATH for a Khanza-like SQLite file
    # (the demo's). Checked when the poller connects.
    dsn: SecretStr
    channel: str  # a bpjs_antrean channel: the messages go there
    interval: PositiveDuration = 30.0  # between the end of one poll and the next
    # The hospital's IANA zone: Khanza's DATETIMEs carry none (default: the top-level
    # ``timezone``). It also decides which date "today" is.
    timezone: TimeZoneName | None = None
    # Per-task SQL replacing the stock source of a task's time. Keys "1".."7" and "99";
    # the stock sources are 3 mutasi_berkas.dikirim, 4 mutasi_berkas.diterima, 5 the
    # earliest pemeriksaan_ralan, 6 resep_obat tgl_peresepan + jam_peresepan, 7 resep_obat
    # tgl_perawatan + jam, 99 referensi_mobilejkn_bpjs_batal.tanggalbatal; 1 and 2 have none.
    # A query runs once per booking with the named parameters %(no_rawat)s,
    # %(kodebooking)s and %(tanggal)s (the service date); write a literal % as %%. Its
    # first row is the time: one column (a DATETIME, or text 'YYYY-MM-DD HH:MM:SS') or
    # two (a DATE and a TIME). No row, NULL, or a zero date ('0000-00-00…', or a TIME of
    # 00:00:00 in the two-column form) means "not yet". A time from a "99" query also
    # marks the booking cancelled. E.g.
    #   "1": SELECT validasi FROM referensi_mobilejkn_bpjs WHERE nobooking = %(kodebooking)s
    #   "2": SELECT tgl_registrasi, jam_reg FROM reg_periksa WHERE no_rawat = %(no_rawat)s
    queries: dict[str, str] = {}
    # true: only Mobile JKN bookings (referensi_mobilejkn_bpjs). false: also every
    # outpatient visit in reg_periksa without such a booking whose poli is mapped in
    # maping_poli_bpjs (on-site registrations; kodebooking = no_rawat).
    jkn_only: bool = True
    # kd_pj (penjab) codes of BPJS patients: an on-site visit with one is "JKN".
    jkn_payers: list[str] = ["BPJ"]
    # antrean/add's jeniskunjungan for on-site visits (Khanza records it only for
    # Mobile JKN bookings): 1 Rujukan FKTP, 2 Rujukan Internal, 3 Kontrol, 4 Antar RS.
    onsite_jeniskunjungan: Literal[1, 2, 3, 4] = 1
    # Each wait is the interval ± this fraction, so pollers do not hit the database in step.
    jitter: Annotated[float, Field(ge=0, le=0.5)] = 0.1
    # After a failed poll the wait doubles from ``interval`` up to this.
    max_backoff: PositiveDuration = 300.0
    # Earlier service dates polled again on every poll (1: yesterday's visits too, for
    # task times typed in after midnight). The day before a date change is always
    # polled once more, whatever this says.
    lookback_days: Annotated[int, Field(ge=0, le=7)] = 0
    connect_timeout: PositiveDuration = 10.0  # to reach the database
    read_timeout: PositiveDuration = 30.0  # for one query's answer
    timeout: PositiveDuration = 120.0  # for a whole poll's reading; then it counts as failed

    @field_validator("queries", mode="before")
    @classmethod
    def _task_keys_as_text(cls, queries: object) -> object:
        # ``5: SELECT …`` in YAML has an integer key; it names task "5" all the same.
        if isinstance(queries, dict):
            return {str(k) if isinstance(k, int) else k: v for k, v in queries.items()}
        return queries

    @field_validator("queries")
    @classmethod
    def _check_queries(cls, queries: dict[str, str]) -> dict[str, str]:
        import re  # (kept here: only this class's checks need it)

        allowed = ("1", "2", "3", "4", "5", "6", "7", "99")
        params = ("no_rawat", "kodebooking", "tanggal")
        problems = []
        for key, sql in queries.items():
            if key not in allowed:
                problems.append(f"unknown task {key!r} (tasks: {', '.join(allowed)})")
                continue
            if not sql.strip():
                problems.append(f"task {key}: empty query")
            for spec in re.finditer(r"%(?:\(([^)]*)\))?(.?)", sql):
                name, conversion = spec.groups()
                if spec.group(0) == "%%" or (name in params and conversion == "s"):
                    continue
                problems.append(
                    f"task {key}: {spec.group(0)!r} is not a parameter (use %(no_rawat)s, "
                    "%(kodebooking)s or %(tanggal)s; write a literal % as %%)"
                )
                break
        if problems:
            raise ValueError("; ".join(problems))
        return queries


Source = Annotated[KhanzaSource, Field(discriminator="kind")]

JOB_KINDS = ("purge", "export", "report", "status_sweep")


class ScheduleSettings(Model):
    cron: CronExpression
    job: Literal["purge", "export", "report", "status_sweep"]
    timezone: TimeZoneName | None = None
    options: dict[str, Any] = {}
    enabled: bool = True


class ControlSettings(Model):
    host: str = "127.0.0.1"
    port: Port = 8080
    token: SecretStr | None = None


class RoleSettings(Model):
    host: str = "127.0.0.1"
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
    store_process: bool = True


class RolesSettings(Model):
    poller: RoleSettings = RoleSettings(base_port=9100)
    dispatcher: DispatcherRoleSettings = DispatcherRoleSettings(base_port=9110)
    scheduler: RoleSettings = RoleSettings(base_port=9130)
    control: RoleSettings = RoleSettings(base_port=9140)


class LoggingSettings(Model):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


def _database_shorthand(value: object) -> object:
    return {"url": value} if isinstance(value, str) else value


class Settings(Model):
    database: Annotated[DatabaseSettings, BeforeValidator(_database_shorthand)]
    timezone: TimeZoneName = "UTC"
    channels: dict[Name, Channel] = {}
    sources: dict[Name, Source] = {}
    schedules: dict[Name, ScheduleSettings] = {}
    control: ControlSettings = ControlSettings()
    roles: RolesSettings = RolesSettings()
    logging: LoggingSettings = LoggingSettings()
