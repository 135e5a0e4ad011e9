"""What ``outboxd backup`` costs on SQLite: the time to copy and check a database of
``--messages`` messages (1 KiB payloads), against a plain file copy of it.

Each figure is the median of ``--repeat`` runs (default 5). The ratio (backup ÷ plain
copy) holds on a shared, noisy machine where an absolute time would not: what the
backup adds is the page-by-page copy through SQLite and ``PRAGMA integrity_check``.

    .venv/bin/python ops/bench/backup.py
    .venv/bin/python ops/bench/backup.py --messages 20000 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from daemon.config.database import DatabaseSettings  # noqa: E402
from daemon.domain.messages import NewMessage  # noqa: E402
from daemon.store.backup import backup  # noqa: E402
from daemon.store.db import open_database  # noqa: E402
from daemon.store.migrations import migrate  # noqa: E402
from daemon.store.sync import Store  # noqa: E402


def fill(path: Path, count: int) -> None:
    store = Store(open_database(DatabaseSettings(url=f"sqlite:///{path}")))
    try:
        migrate(store.db)
        payload = b'{"text": "' + b"x" * 1000 + b'"}'
        for start in range(0, count, 500):
            batch = range(start, min(start + 500, count))
            store.enqueue_many([NewMessage("hook", f"m{i}", payload, "json") for i in batch])
    finally:
        store.close()


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        source = work / "o.db"
        print(f"filling {args.messages} messages…", file=sys.stderr, flush=True)
        fill(source, args.messages)
        size = source.stat().st_size
        settings = DatabaseSettings(url=f"sqlite:///{source}")
        backups, copies = [], []
        for _ in range(args.repeat):
            backups.append(timed(lambda: backup(settings, work / "b.db", force=True)))
            copies.append(timed(lambda: shutil.copyfile(source, work / "c.db")))
            os.sync()
    took, copied = median(backups), median(copies)
    print(f"database: {args.messages} messages, {size / 2**20:.1f} MiB; {args.repeat} runs")
    print(f"outboxd backup (copy + integrity_check): {took:.2f} s, {size / 2**20 / took:.0f} MiB/s")
    print(f"plain file copy: {copied:.2f} s")
    print(f"ratio backup / plain copy: {took / copied:.1f}")


if __name__ == "__main__":
    main()
