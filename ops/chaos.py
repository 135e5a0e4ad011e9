"""Chaos on the whole suite, from the command line (see docs/operations.md,
"Scale-out and chaos"):

    .venv/bin/python ops/chaos.py [--duration 600] [--seed 1] [--every 4]

One host under supervisord on a PostgreSQL and a MariaDB of the run's own, every
role, mixed traffic, and faults every ``--every`` seconds or so for ``--duration``
seconds: random SIGKILLs, PostgreSQL and MariaDB restarted, each partner down for
a while, a SIGHUP with a changed config. Then it waits for everything to settle
and checks that nothing was lost (``ops/cluster/chaos.py`` says what it checks).
Prints the faults, the counts and the checks; exits 0 when every check held, 1
otherwise. Needs the test extra (it reuses the tests' Khanza schema and helpers).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: ops, tests

from ops.cluster.chaos import Chaos, main_venv


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of faults")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--every", type=float, default=4.0, help="seconds between faults")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    started = time.monotonic()
    report = asyncio.run(Chaos(main_venv(), args.duration, args.seed, args.every).run())
    for line in report.lines():
        print(line)
    print(f"wall time {time.monotonic() - started:.0f}s")
    return 0 if not report.problems else 1


if __name__ == "__main__":
    sys.exit(main())
