"""Start a simulator where the YAML file expects its peer:
``python -m daemon.sim.run mllp|http|bpjs|fhir -c FILE --channel NAME [options]`` for a
channel's peer, ``python -m daemon.sim.run khanza -c FILE --source NAME [options]``
for a Khanza source's hospital, ``python -m daemon.sim.run smtp -c FILE --notify NAME
[--dir DIR]`` for the mail server of an smtp notify target (the mail catcher).
Addresses, credentials, files and time zones come from the config, so the demo
sets each in one place."""

from __future__ import annotations

import argparse
import os
import sys
from urllib.parse import urlsplit

from daemon.channels.bpjs_antrean.settings import BpjsAntreanSettings
from daemon.channels.fhir.settings import FhirSettings
from daemon.channels.http.settings import HttpSettings
from daemon.channels.mllp.settings import MllpSettings
from daemon.config.errors import EX_CONFIG, ConfigError
from daemon.config.loader import load_config
from daemon.config.settings import Settings
from daemon.sources.base import SourceError
from daemon.sources.khanza.reader import connect_args
from daemon.sources.khanza.settings import KhanzaSettings

CHANNEL_KINDS = ("mllp", "http", "bpjs", "fhir")
SOURCE_KINDS = ("khanza",)
NOTIFY_KINDS = ("smtp",)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m daemon.sim.run")
    parser.add_argument("kind", choices=CHANNEL_KINDS + SOURCE_KINDS + NOTIFY_KINDS)
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("--channel", help="the channel whose peer this is (mllp, http, bpjs, fhir)")
    parser.add_argument("--source", help="the source whose database this is (khanza)")
    parser.add_argument("--notify", help="the notify target whose mail server this is (smtp)")
    args, rest = parser.parse_known_args(argv)
    wanted = (
        "--channel" if args.kind in CHANNEL_KINDS
        else "--source" if args.kind in SOURCE_KINDS
        else "--notify"
    )  # fmt: skip
    if getattr(args, wanted.lstrip("-")) is None:
        parser.error(f"{args.kind} needs {wanted} NAME")
    try:
        settings = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EX_CONFIG
    if args.kind in SOURCE_KINDS:
        return _source(args, settings, rest)
    if args.kind in NOTIFY_KINDS:
        return _mail(args, settings, rest)
    return _channel(args, settings, rest)


def _channel(args: argparse.Namespace, settings: Settings, rest: list[str]) -> int:
    channel = settings.channels.get(args.channel)
    if args.kind == "mllp" and isinstance(channel, MllpSettings):
        from daemon.sim import mllp

        return mllp.main(["--host", channel.host, "--port", str(channel.port), *rest])
    if args.kind == "http" and isinstance(channel, HttpSettings):
        from daemon.sim import http

        url = urlsplit(channel.url)
        return http.main(
            ["--host", url.hostname or "127.0.0.1", "--port", str(url.port or 80), *rest]
        )
    if args.kind == "bpjs" and isinstance(channel, BpjsAntreanSettings):
        from daemon.sim import bpjs

        url = urlsplit(str(channel.base_url))
        # the credentials by environment, not argv: `ps` shows a command line
        os.environ["OUTBOXD_SIM_BPJS_SECRET"] = channel.secret.get_secret_value()
        os.environ["OUTBOXD_SIM_BPJS_USER_KEY"] = channel.user_key.get_secret_value()
        zone = _channel_zone(settings, args.channel)
        return bpjs.main(
            [
                "--host", url.hostname or "127.0.0.1",
                "--port", str(url.port or (443 if url.scheme == "https" else 80)),
                "--cons-id", channel.cons_id,
                "--timezone", zone,
                *rest,
            ]
        )  # fmt: skip
    if args.kind == "fhir" and isinstance(channel, FhirSettings):
        return _fhir(channel, rest)
    print(f"no {args.kind} channel named {args.channel!r} in {args.config}", file=sys.stderr)
    return EX_CONFIG


def _fhir(channel: FhirSettings, rest: list[str]) -> int:
    """The FHIR simulator where the channel's base URL is, knowing its OAuth2 client."""
    from daemon.channels.oauth.settings import OAuth2Settings
    from daemon.sim import fhir

    url = urlsplit(channel.base_url)
    if isinstance(channel.auth, OAuth2Settings):
        # by environment, not argv: `ps` shows a command line
        os.environ["OUTBOXD_SIM_FHIR_CLIENT_ID"] = channel.auth.client_id.get_secret_value()
        os.environ["OUTBOXD_SIM_FHIR_CLIENT_SECRET"] = channel.auth.client_secret.get_secret_value()
    return fhir.main(
        [
            "--host", url.hostname or "127.0.0.1",
            "--port", str(url.port or (443 if url.scheme == "https" else 80)),
            *rest,
        ]
    )  # fmt: skip


def _channel_zone(settings: Settings, channel: str) -> str:
    """The zone of the hospital feeding ``channel``: its source's, else the file's."""
    for source in settings.sources.values():
        if isinstance(source, KhanzaSettings) and source.channel == channel and source.timezone:
            return str(source.timezone)
    return str(settings.timezone)


def _mail(args: argparse.Namespace, settings: Settings, rest: list[str]) -> int:
    """The mail catcher where an smtp notify target sends."""
    from daemon.notify.smtp import SmtpSettings

    target = settings.notify.get(args.notify)
    if not isinstance(target, SmtpSettings):
        print(f"no smtp notify target named {args.notify!r} in {args.config}", file=sys.stderr)
        return EX_CONFIG
    if target.security != "none" or target.username is not None:
        print(
            f"notify.{args.notify}: the mail catcher speaks plain SMTP without a login; "
            "give it security: none and no username",
            file=sys.stderr,
        )
        return EX_CONFIG
    from daemon.sim import mail

    return mail.main(["serve", "--host", target.host, "--port", str(target.port), *rest])


def _source(args: argparse.Namespace, settings: Settings, rest: list[str]) -> int:
    source = settings.sources.get(args.source)
    if not isinstance(source, KhanzaSettings):
        print(f"no khanza source named {args.source!r} in {args.config}", file=sys.stderr)
        return EX_CONFIG
    try:
        where = connect_args(source.dsn.get_secret_value())
    except SourceError as exc:
        print(f"sources.{args.source}.{exc}", file=sys.stderr)
        return EX_CONFIG
    if "path" not in where:
        print(
            f"sources.{args.source}.dsn: the hospital simulator writes a SQLite file"
            " (sqlite:///PATH); it never touches a real Khanza server",
            file=sys.stderr,
        )
        return EX_CONFIG
    from daemon.sim import khanza

    zone = str(source.timezone or settings.timezone)
    return khanza.main(["--db", where["path"], "--timezone", zone, *rest])


if __name__ == "__main__":
    raise SystemExit(main())
