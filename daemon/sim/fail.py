"""The demo's failure switch: a share of deliveries every simulated partner fails,
for a while, as a partner having a bad day does (and then recovers).

    python -m daemon.sim.fail 30%      # from now on, about 3 deliveries in 10 fail
    python -m daemon.sim.fail          # what it is set to
    python -m daemon.sim.fail off      # every delivery succeeds again

The command writes the share to a small file (``var/sim-fail`` by default,
``--file`` to name another); each simulator started with ``--fail-switch FILE``
(as supervisord.conf starts them) looks at it again at most every
``CHECK_EVERY`` seconds, logs when it changes, and answers that share of what it
is sent with a transient failure of its protocol, which outboxd retries with
backoff: the MLLP receiver an ACK ``AE``, the HTTP sink ``503``, BPJS Antrean an
HTTP 503 page, the FHIR server ``503``. The file holds one number from 0 to 1;
no file, or 0, is no failures.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger("outboxd.sim.fail")

DEFAULT_FILE = Path("var/sim-fail")
CHECK_EVERY = 0.25  # seconds between two looks at the file
EX_USAGE = 64
EX_CANTCREAT = 73


def parse_share(text: str) -> float:
    """``30%``, ``0.3``, ``off`` (0) or ``on`` (1) as a share from 0 to 1."""
    word = text.strip().lower()
    if word in ("off", "none", "no"):
        return 0.0
    if word in ("on", "all"):
        return 1.0
    try:
        share = float(word[:-1]) / 100 if word.endswith("%") else float(word)
    except ValueError:
        raise ValueError(
            f"not a share: {text!r} (give a percentage such as 30%, a fraction such as 0.3, or off)"
        ) from None
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"not a share: {text!r} (from 0% to 100%, or 0 to 1)")
    return share


def describe(share: float) -> str:
    if share <= 0:
        return "every delivery succeeds"
    if share >= 1:
        return "every delivery fails"
    return f"{share:.0%} of deliveries fail"


def read_share(path: Path) -> float:
    """The share the file holds; 0 when there is none (or it cannot be read)."""
    try:
        return parse_share(path.read_text())
    except FileNotFoundError:
        return 0.0
    except (OSError, ValueError) as exc:
        log.warning("failure switch %s: %s; taken as off", path, exc)
        return 0.0


def write_share(path: Path, share: float) -> None:
    """Set the switch (the file replaced at once: a simulator never reads half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(f"{share:g}\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class FailSwitch:
    """A simulator's view of the switch: ``fails()`` says whether to fail the
    delivery in hand. Without a file it never fails."""

    def __init__(
        self,
        path: Path | str | None,
        name: str = "simulator",
        *,
        dice: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.name = name
        self.share = 0.0
        self.failed = 0  # deliveries failed so far
        self._dice = dice
        self._clock = clock
        self._checked = float("-inf")

    def current(self) -> float:
        """The share now (the file looked at again when it is time)."""
        if self.path is None:
            return 0.0
        now = self._clock()
        if now - self._checked >= CHECK_EVERY:
            self._checked = now
            share = read_share(self.path)
            if share != self.share:
                log.info("failure switch: %s now (%s)", describe(share), self.name)
                self.share = share
        return self.share

    def fails(self) -> bool:
        share = self.current()
        if share > 0 and self._dice() < share:
            self.failed += 1
            return True
        return False

    @property
    def reason(self) -> str:
        """What a failed delivery is told."""
        return f"simulated failure ({self.share:.0%} of deliveries, python -m daemon.sim.fail)"


def add_argument(parser: argparse.ArgumentParser) -> None:
    """A simulator's ``--fail-switch FILE``."""
    parser.add_argument(
        "--fail-switch",
        metavar="FILE",
        help="fail the share of deliveries this file holds (python -m daemon.sim.fail sets it)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m daemon.sim.fail",
        description="Make the demo's simulated partners fail a share of deliveries, or stop.",
    )
    parser.add_argument(
        "share", nargs="?", help="30%%, 0.3, off (none) or on (all); none given: say what it is"
    )
    parser.add_argument(
        "--file",
        type=Path,
        default=DEFAULT_FILE,
        help=f"the switch the simulators read (default: {DEFAULT_FILE}, as supervisord.conf)",
    )
    args = parser.parse_args(argv)
    if args.share is None:
        print(f"failure switch ({args.file}): {describe(read_share(args.file))}")
        return 0
    try:
        share = parse_share(args.share)
    except ValueError as exc:
        print(f"python -m daemon.sim.fail: {exc}", file=sys.stderr)
        return EX_USAGE
    try:
        write_share(args.file, share)
    except OSError as exc:
        print(f"python -m daemon.sim.fail: cannot write {args.file}: {exc}", file=sys.stderr)
        return EX_CANTCREAT
    print(f"failure switch ({args.file}): {describe(share)}")
    if share > 0:
        print("outboxd retries them with backoff; python -m daemon.sim.fail off ends it")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
