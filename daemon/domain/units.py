"""Human units used in the YAML file: durations (``30s``, ``1h30m``) and rates (``5/s``)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+")
LONGEST = 100 * 365 * 86400.0  # no duration outboxd reads is longer: a century
_MAX_RATE_COUNT = 1e9


def parse_duration(value: object) -> float:
    """Seconds from ``90``, ``1.5``, ``"500ms"``, ``"30s"``, ``"1h30m"``; never negative."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m, 1h or 1d, got a boolean")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            seconds = float(text)
        elif _DURATION.fullmatch(text):
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(text))
        else:
            raise ValueError(
                f"invalid duration {value!r}: use a number of seconds or units "
                "ms, s, m, h, d, w (e.g. 30s, 1h30m)"
            )
    else:
        raise ValueError(f"expected a duration such as 30s, got {type(value).__name__}")
    if not math.isfinite(seconds):
        raise ValueError(f"a duration must be a finite number of seconds, got {value!r}")
    if seconds < 0:
        raise ValueError(f"duration must not be negative, got {value!r}")
    if seconds > LONGEST:
        raise ValueError(f"duration {value!r} is longer than a century")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of a duration: ``90`` → ``1m30s``."""
    if seconds < 1 and seconds != 0:
        return f"{round(seconds * 1000)}ms"
    remaining = round(seconds)
    parts = []
    for unit in ("d", "h", "m", "s"):
        size = int(_UNIT_SECONDS[unit])
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


@dataclass(frozen=True)
class Rate:
    """``count`` events per ``per`` seconds, e.g. ``5/s`` or ``100/10m``."""

    count: float
    per: float

    @property
    def per_second(self) -> float:
        return self.count / self.per

    def __str__(self) -> str:
        count = int(self.count) if self.count == int(self.count) else self.count
        per = {1.0: "s", 60.0: "m", 3600.0: "h", 86400.0: "d"}.get(self.per)
        return f"{count}/{per or format_duration(self.per)}"


_RATE = re.compile(r"(\d+(?:\.\d+)?)\s*/\s*(\S+)")


def parse_rate(value: object) -> Rate:
    """A rate from ``"5/s"``, ``"100/m"``, ``"1/30s"``, ``"3600/h"``."""
    if isinstance(value, Rate):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a rate such as 5/s or 100/m, got {value!r}")
    match = _RATE.fullmatch(value.strip().lower())
    if not match:
        raise ValueError(f"invalid rate {value!r}: expected COUNT/PERIOD such as 5/s, 100/m, 1/30s")
    count = float(match.group(1))
    period = match.group(2)
    per = _UNIT_SECONDS[period] if period in _UNIT_SECONDS else parse_duration(period)
    if count <= 0 or per <= 0:
        raise ValueError(f"invalid rate {value!r}: count and period must be positive")
    if count > _MAX_RATE_COUNT:
        raise ValueError(f"invalid rate {value!r}: at most {_MAX_RATE_COUNT:.0e} per period")
    return Rate(count=count, per=per)


_SIZE_UNITS = {"": 1, "b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30}
_SIZE = re.compile(r"(\d{1,12})\s*(b|kib|mib|gib)?")


def parse_size(value: object) -> int:
    """Bytes from ``65536``, ``"64KiB"``, ``"1MiB"``, ``"1 GiB"`` (binary units only:
    ``1MB`` is refused rather than guessed)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"a size must not be negative, got {value!r}")
        return value
    if not isinstance(value, str):
        shown = "a boolean" if isinstance(value, bool) else type(value).__name__
        raise ValueError(f"expected a size such as 64KiB or 1MiB, got {shown}")
    match = _SIZE.fullmatch(value.strip().lower())
    if match is None:
        raise ValueError(
            f"invalid size {value!r}: a number of bytes, or with B, KiB, MiB, GiB (e.g. 1MiB)"
        )
    return int(match.group(1)) * _SIZE_UNITS[match.group(2) or ""]
