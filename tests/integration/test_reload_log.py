"""A running role told to reload (SIGHUP) logs every value the file changed by its
YAML path, old → new, in every section, secrets masked; what it reads at start
only as a warning saying so; and a reload that changes nothing says that."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from daemon.config.database import DatabaseSettings
from daemon.sim.http import HttpSink
from daemon.store.db import open_database
from daemon.store.migrations import migrate
from tests.support.ports import free_port
from tests.support.processes import DaemonProcess
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow

CONFIG = """
database: sqlite:///{db}
channels:
  hook:
    kind: http
    url: http://127.0.0.1:{sink_port}/hook
    rate: 20/s
    hmac: {{secret: first-s3cret}}
schedules:
  nightly:
    cron: "0 2 * * *"
    job: purge
    options: {{messages_older_than: 30d}}
webhooks:
  filing:
    secret: whsec_c2FtcGxlLXNlY3JldA==
    channel: hook
    message_key: /key
    statuses: {{ACCEPTED: confirmed}}
roles:
  dispatcher: {{base_port: {health_port}, drain_timeout: 10s}}
control: {{port: {control_port}}}
logging: {{level: INFO}}
"""

EDITS = [
    ('cron: "0 2 * * *"', 'cron: "0 3 * * *"'),
    ("rate: 20/s", "rate: 5/s"),
    ("first-s3cret", "second-s3cret"),
    ("whsec_c2FtcGxlLXNlY3JldA==", "whsec_bmV3LXNlY3JldA=="),
    ("{ACCEPTED: confirmed}", "{ACCEPTED: confirmed, REJECTED: rejected}"),
    ("drain_timeout: 10s", "drain_timeout: 20s"),
    ("level: INFO", "level: DEBUG"),
]
SAID = [
    "INFO dispatcher.0 reload: channels.hook.rate: 20/s → 5/s",
    "INFO dispatcher.0 reload: channels.hook.hmac.secret: changed",
    'INFO dispatcher.0 reload: schedules.nightly.cron: "0 2 * * *" → "0 3 * * *"',
    "INFO dispatcher.0 reload: webhooks.filing.secret: changed",
    "INFO dispatcher.0 reload: webhooks.filing.statuses.REJECTED: added",
    "INFO dispatcher.0 reload: roles.dispatcher.drain_timeout: 10s → 20s",
    "WARNING dispatcher.0 reload: logging.level: INFO → DEBUG; it takes effect at the next restart",
    "INFO dispatcher.0 channel hook changed: rate 20/s → 5/s, hmac.secret changed",
]


def migrated(path: Path) -> Path:
    """A SQLite store (what a reload logs does not depend on the database)."""
    db = open_database(DatabaseSettings(url=f"sqlite:///{path}"))
    migrate(db)
    db.close()
    return path


async def test_a_reload_logs_each_changed_value_by_its_yaml_path(tmp_path: Path):
    async with HttpSink() as sink:
        health = free_port()
        config = tmp_path / "outboxd.yaml"
        text = CONFIG.format(
            db=migrated(tmp_path / "outbox.db"),
            sink_port=sink.port,
            health_port=health,
            control_port=free_port(),
        )
        config.write_text(text)
        proc = DaemonProcess(tmp_path, config)
        try:
            await proc.start(health)
            proc.signal(signal.SIGHUP)  # the same file: nothing to say but that
            await eventually(
                lambda: "reload: the file changes nothing" in proc.output(),
                what="a reload that changes nothing", dump=proc.output,
            )  # fmt: skip
            for old, new in EDITS:
                assert text.count(old) == 1, old
                text = text.replace(old, new)
            config.write_text(text)
            proc.signal(signal.SIGHUP)
            await eventually(
                lambda: "channel hook changed" in proc.output(), what="the reload", dump=proc.output
            )
            lines = [line.split(" ", 1)[1] for line in proc.output().splitlines() if " " in line]
            for said in SAID:
                assert said in lines, f"{said!r} not logged:\n{proc.output()}"
            for secret in ("first-s3cret", "second-s3cret", "c2FtcGxl", "bmV3LXNl"):
                assert secret not in proc.output()
        finally:
            assert await proc.stop() == 0
