"""The settings of an ``mllp`` channel: where the peer listens, TLS, timeouts, encoding."""

from __future__ import annotations

import os
import ssl
from typing import Literal

from pydantic import field_validator, model_validator

from daemon.channels.kind import ChannelSettings
from daemon.domain.fields import Encoding, Flag, Host, Model, Port, PositiveDuration
from daemon.hl7 import ascii_compatible


class TlsSettings(Model):
    ca_file: str | None = None  # trust these CAs instead of the system's
    cert_file: str | None = None  # client certificate (mutual TLS)
    key_file: str | None = None
    verify: Flag = True  # check the peer's certificate and host name
    server_hostname: Host | None = None  # name to check, when it differs from host

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _readable(cls, path: str | None) -> str | None:
        if path is None:
            return None
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
        return path

    @model_validator(mode="after")
    def _loadable(self) -> TlsSettings:
        if self.key_file and not self.cert_file:
            raise ValueError("key_file needs cert_file")
        if not all(
            f is None or os.path.isfile(f) for f in (self.ca_file, self.cert_file, self.key_file)
        ):
            return self  # reported by the file's own check
        try:
            client_ssl_context(self)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise ValueError(f"cannot set up TLS: {_tls_problem(exc)}") from None
        return self


def _tls_problem(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return " ".join(str(exc).split()) or type(exc).__name__


def client_ssl_context(tls: TlsSettings) -> ssl.SSLContext:
    """A client TLS context from the channel's ``tls`` settings."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls.ca_file)
    if tls.cert_file:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class MllpSettings(ChannelSettings):
    kind: Literal["mllp"]
    host: Host
    port: Port
    tls: TlsSettings | None = None
    connect_timeout: PositiveDuration = 10.0
    response_timeout: PositiveDuration = 30.0
    encoding: Encoding = "utf-8"
    on_application_error: Literal["reject", "retry"] = "reject"  # what AE/CE means

    @field_validator("encoding")
    @classmethod
    def _ascii_compatible(cls, encoding: str) -> str:
        if not ascii_compatible(encoding):
            raise ValueError(
                f"encoding {encoding!r} does not keep HL7's separators and MLLP's framing "
                "bytes as ASCII; use an ASCII-compatible one (utf-8, latin-1, cp1252, …)"
            )
        return encoding
