"""The commands on the file and the schema: check-config, migrate."""

from __future__ import annotations

import argparse
import os

from daemon.cli.common import drivers_for, settings_of
from daemon.operator.summaries import config_summary


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    source = str(args.config or os.environ.get("OUTBOXD_CONFIG"))
    print("\n".join(config_summary(settings, source)))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    drivers_for(settings)
    from daemon.store.db import open_database
    from daemon.store.migrations import LATEST, current_version, migrate

    db = open_database(settings.database)
    try:
        before = current_version(db)
        applied = migrate(db)
    finally:
        db.close()
    if applied:
        for m in applied:
            print(f"applied migration {m.version}: {m.description}")
        print(f"schema upgraded from version {before} to {LATEST}")
    else:
        print(f"schema is up to date (version {LATEST})")
    return 0
