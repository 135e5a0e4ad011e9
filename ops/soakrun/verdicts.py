"""Whether each sampled figure stayed flat, and the table and sparklines that say so.

A series is split in thirds by sample; the first is the warm-up (the tables filling,
the first purges) and is not judged. The verdict compares the median of the last third
with the median of the second (the claim p99 and the delivery rate: each third's own,
from the cumulative histogram and counter at its ends): a figure that must not grow
(memory, descriptors, the database, the claim time) passes when last / second stays
within its bound; the delivery rate passes when it has not fallen by more than its bound.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import median

from soakrun.samples import Sample, histogram_quantile

SPARKS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 48


@dataclass(frozen=True)
class Rule:
    """``grow``: last/second must be at most ``bound`` (plus ``slack`` in the
    figure's own unit, for small integers such as descriptors); ``fall``: at least
    ``bound``; ``none``: shown, not judged."""

    kind: str
    bound: float = 1.0
    slack: float = 0.0

    def holds(self, second: float, last: float) -> bool:
        if self.kind == "grow":
            return last <= second * self.bound + self.slack
        return last >= second * self.bound

    def text(self) -> str:
        if self.kind == "grow":
            extra = f" (+{self.slack:g})" if self.slack else ""
            return f"<= {self.bound:.2f}x{extra}"
        if self.kind == "fall":
            return f">= {self.bound:.2f}x"
        return "not judged"


MEMORY = Rule("grow", 1.10)
FDS = Rule("grow", 1.10, 2)
DATABASE = Rule("grow", 1.10)
ROWS = Rule("grow", 1.10)
CLAIM = Rule("grow", 1.50)  # p99 of a shared machine's second: noisy; a trend shows far above
RATE = Rule("fall", 0.90)
SHOWN = Rule("none")


@dataclass
class Verdict:
    figure: str
    unit: str
    second: float
    last: float
    ratio: float
    rule: Rule
    result: str  # PASS, FAIL, or "-" (not judged, or too few samples)
    spark: str
    low: float
    high: float


def sparkline(values: Sequence[float], width: int = SPARK_WIDTH) -> str:
    """The series squeezed into ``width`` block characters (means of equal slices),
    scaled from its minimum to its maximum."""
    points = [v for v in values if not math.isnan(v)]
    if not points:
        return ""
    if len(points) > width:
        size = len(points) / width
        points = [
            sum(chunk) / len(chunk)
            for i in range(width)
            if (chunk := points[int(i * size) : max(int(i * size) + 1, int((i + 1) * size))])
        ]
    low, high = min(points), max(points)
    span = high - low
    if span <= abs(high) * 1e-9 or span == 0:
        return SPARKS[3] * len(points)
    return "".join(
        SPARKS[min(len(SPARKS) - 1, int((v - low) / span * len(SPARKS)))] for v in points
    )


def judge(figure: str, unit: str, values: Sequence[float | None], rule: Rule) -> Verdict:
    series = [math.nan if v is None else float(v) for v in values]
    third = len(series) // 3
    second = [v for v in series[third : 2 * third] if not math.isnan(v)]
    last = [v for v in series[2 * third :] if not math.isnan(v)]
    known = [v for v in series if not math.isnan(v)]
    low, high = (min(known), max(known)) if known else (math.nan, math.nan)
    spark = sparkline(series)
    if not second or not last:
        return Verdict(figure, unit, math.nan, math.nan, math.nan, rule, "-", spark, low, high)
    m2, m3 = median(second), median(last)
    ratio = m3 / m2 if m2 else (1.0 if m3 == 0 else math.inf)
    if rule.kind == "none":
        return Verdict(figure, unit, m2, m3, ratio, rule, "-", spark, low, high)
    result = "PASS" if rule.holds(m2, m3) else "FAIL"
    return Verdict(figure, unit, m2, m3, ratio, rule, result, spark, low, high)


def over_thirds(
    figure: str,
    unit: str,
    samples: Sequence[Sample],
    value: Callable[[Sample, Sample], float | None],
    series: Sequence[float | None],
    rule: Rule,
) -> Verdict:
    """A figure taken over each third as a whole (``value(first, last)`` of its
    samples, from cumulative counters) rather than as a median of the samples; the
    sparkline is still the per-sample ``series``."""
    verdict = judge(figure, unit, series, rule)
    third = len(samples) // 3
    if third < 2:
        return verdict
    second = value(samples[third - 1], samples[2 * third - 1])
    last = value(samples[2 * third - 1], samples[-1])
    if second is None or last is None or math.isnan(second) or math.isnan(last):
        return verdict
    ratio = last / second if second else (1.0 if last == 0 else math.inf)
    ok = (
        last <= second * rule.bound + rule.slack
        if rule.kind == "grow"
        else last >= second * rule.bound
    )
    verdict.second, verdict.last, verdict.ratio = second, last, ratio
    verdict.result = "PASS" if ok else "FAIL"
    return verdict


def delivery_rate(first: Sample, last: Sample) -> float | None:
    if last.delivered < first.delivered or last.at <= first.at:
        return None  # a dispatcher restarted: its counters began again
    return (last.delivered - first.delivered) / (last.at - first.at)


def claim_p99(first: Sample, last: Sample) -> float | None:
    if not last.buckets:
        return None
    return histogram_quantile(0.99, first.buckets, last.buckets) * 1000


def verdicts(samples: Sequence[Sample], judged: Callable[[str], bool]) -> list[Verdict]:
    """Every figure of the run; ``judged(process name)`` says whose memory and
    descriptors are held to the rules (outboxd's own, not the simulators')."""
    names = sorted({n for s in samples for n in s.processes})
    out: list[Verdict] = []
    for name in names:
        rss = [s.processes[name].rss_kb / 1024 if name in s.processes else None for s in samples]
        fds = [s.processes[name].fds if name in s.processes else None for s in samples]
        own = judged(name)
        out.append(judge(f"RSS {name}", "MiB", rss, MEMORY if own else SHOWN))
        out.append(judge(f"fds {name}", "", fds, FDS if own else SHOWN))
    out += [
        judge("database size", "MiB", [s.db_bytes / 2**20 for s in samples], DATABASE),
        judge("of which the WAL", "MiB", [s.wal_bytes / 2**20 for s in samples], SHOWN),
        judge("message rows", "", [s.messages for s in samples], ROWS),
        judge("visit rows (kept: no purge)", "", [s.visits for s in samples], SHOWN),
        over_thirds(
            "claim p99", "ms", samples, claim_p99, [s.claim_p99_ms for s in samples], CLAIM
        ),
        over_thirds(
            "delivery rate",
            "msg/s",
            samples,
            delivery_rate,
            [s.delivery_rate for s in samples],
            RATE,
        ),
        judge("backlog (pending)", "", [s.pending for s in samples], SHOWN),
        judge("oldest pending", "s", [s.oldest_pending_s for s in samples], SHOWN),
    ]
    return out


def number(value: float, unit: str) -> str:
    if math.isnan(value):
        return "-"
    if unit in ("ms", "MiB") or (abs(value) < 100 and value != int(value)):
        return f"{value:,.1f}"
    return f"{value:,.0f}"


def table(rows: Sequence[Verdict]) -> list[str]:
    width = max(len(r.figure) for r in rows)
    head = (
        f"{'figure':<{width}} {'unit':<5} {'2nd third':>10} {'last third':>10} {'ratio':>6}"
        f" {'rule':<13} {'verdict':<7} {'min':>9} {'max':>9}  over the run"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        ratio = "-" if math.isnan(r.ratio) else f"{r.ratio:.2f}"
        lines.append(
            f"{r.figure:<{width}} {r.unit:<5} {number(r.second, r.unit):>10}"
            f" {number(r.last, r.unit):>10} {ratio:>6} {r.rule.text():<13} {r.result:<7}"
            f" {number(r.low, r.unit):>9} {number(r.high, r.unit):>9}  {r.spark}"
        )
    return lines
