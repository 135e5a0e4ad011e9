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


Channel = Annotated[MllpChannel | HttpChannel | BpjsAntreanChannel, Field(discriminator="kind")]


# --- sources, schedules, control, roles -----------------------------------------


class KhanzaSource(Model):
    kind: Literal["khanza"]
    dsn: SecretStr
    channel: str
    interval: PositiveDuration = 30.0
    timezone: TimeZoneName | None = None
    queries: dict[str, str] = {}


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


class RolesSettings(Model):
    poller: RoleSettings = RoleSettings(base_port=9100)
    dispatcher: RoleSettings = RoleSettings(base_port=9110)
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
