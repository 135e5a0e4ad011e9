from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from daemon.cron import crontab_trigger

JKT = ZoneInfo("Asia/Jakarta")
# Monday 2026-11-23 10:00:30 in Jakarta.
MONDAY = datetime(2026, 11, 23, 10, 0, 30, tzinfo=JKT)


def next_fire(expression: str, after: datetime = MONDAY) -> datetime:
    fire = crontab_trigger(expression, JKT).get_next_fire_time(None, after)
    assert fire is not None
    return fire


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # day-of-week 0 and 7 are Sunday, as in cron (APScheduler's own numbering has 0 = Monday)
        ("0 2 * * 0", datetime(2026, 11, 29, 2, 0, tzinfo=JKT)),
        ("0 2 * * 7", datetime(2026, 11, 29, 2, 0, tzinfo=JKT)),
        ("0 2 * * 1", datetime(2026, 11, 30, 2, 0, tzinfo=JKT)),
        ("0 2 * * sun", datetime(2026, 11, 29, 2, 0, tzinfo=JKT)),
        ("30 9 * * 1-5", datetime(2026, 11, 24, 9, 30, tzinfo=JKT)),
        ("0 12 * * mon-fri", datetime(2026, 11, 23, 12, 0, tzinfo=JKT)),
        # 5-7 is Friday to Sunday; 0-2 is Sunday to Tuesday
        ("0 0 * * 5-7", datetime(2026, 11, 27, 0, 0, tzinfo=JKT)),
        ("0 0 * * 0-2", datetime(2026, 11, 24, 0, 0, tzinfo=JKT)),
        # */2 counts from Sunday: Sun, Tue, Thu, Sat
        ("0 0 * * */2", datetime(2026, 11, 24, 0, 0, tzinfo=JKT)),
        ("0 3 1 * *", datetime(2026, 12, 1, 3, 0, tzinfo=JKT)),
        ("*/15 * * * *", datetime(2026, 11, 23, 10, 15, tzinfo=JKT)),
        ("@daily", datetime(2026, 11, 24, 0, 0, tzinfo=JKT)),
        ("@weekly", datetime(2026, 11, 29, 0, 0, tzinfo=JKT)),
        ("@hourly", datetime(2026, 11, 23, 11, 0, tzinfo=JKT)),
        ("@monthly", datetime(2026, 12, 1, 0, 0, tzinfo=JKT)),
    ],
)
def test_next_fire_times(expression, expected):
    assert next_fire(expression) == expected


def test_every_other_day_of_week_set():
    fires = []
    at = MONDAY
    for _ in range(4):
        at = next_fire("0 0 * * */2", at + timedelta(minutes=1))
        fires.append(at.strftime("%a"))
    assert fires == ["Tue", "Thu", "Sat", "Sun"]


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("0 2 * *", "expected 5 fields"),
        ("0 2 * * * *", "expected 5 fields"),
        ("0 2 * * 8", "day of week '8'"),
        ("0 2 * * 5-1", "runs backwards"),
        ("0 2 * * funday", "day of week 'funday'"),
        ("61 * * * *", "invalid cron expression"),
        ("0 25 * * *", "invalid cron expression"),
        ("0 0 32 * *", "invalid cron expression"),
        ("0 0 * 13 *", "invalid cron expression"),
    ],
)
def test_bad_expressions(expression, reason):
    with pytest.raises(ValueError, match=reason):
        crontab_trigger(expression, "UTC")
