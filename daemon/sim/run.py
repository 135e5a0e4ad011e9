"""Start a simulator where a channel of the YAML file expects its peer:
``python -m daemon.sim.run mllp|http -c FILE --channel NAME [simulator options]``.
The address comes from the config, so the demo's ports are set in one place."""

from __future__ import annotations

import argparse
import sys
from urllib.parse import urlsplit

from daemon.config import EX_CONFIG, ConfigError, load_config
from daemon.settings import HttpChannel, MllpChannel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m daemon.sim.run")
    parser.add_argument("kind", choices=("mllp", "http"))
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("--channel", required=True)
    args, rest = parser.parse_known_args(argv)
    try:
        settings = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EX_CONFIG
    channel = settings.channels.get(args.channel)
    if args.kind == "mllp" and isinstance(channel, MllpChannel):
        from daemon.sim import mllp

        return mllp.main(["--host", channel.host, "--port", str(channel.port), *rest])
    if args.kind == "http" and isinstance(channel, HttpChannel):
        from daemon.sim import http

        url = urlsplit(channel.url)
        return http.main(
            ["--host", url.hostname or "127.0.0.1", "--port", str(url.port or 80), *rest]
        )
    print(f"no {args.kind} channel named {args.channel!r} in {args.config}", file=sys.stderr)
    return EX_CONFIG


if __name__ == "__main__":
    raise SystemExit(main())
