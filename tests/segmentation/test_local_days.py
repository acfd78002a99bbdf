"""The local date of a UTC timestamp computed in SQLite's SQL alone equals Python's zone rules."""

import random
import sqlite3
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from segmentation.local_days import local_date_sql, offset_changes

UNTIL = datetime(2027, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "zone",
    [
        "UTC",
        "Europe/Paris",
        "America/New_York",
        "Australia/Lord_Howe",  # half an hour of daylight saving
        "Asia/Kolkata",
        "Pacific/Apia",  # skipped 30 December 2011 when it crossed the date line
    ],
)
def test_local_dates_in_sql_equal_the_zones_own_rules(zone):
    tz = ZoneInfo(zone)
    rng = random.Random(zone)
    instants = [
        datetime(1950, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(76 * 365 * 86_400))
        for _ in range(3_000)
    ]
    for at, _ in offset_changes(tz, until=UNTIL)[-40:]:  # either side of each recent change
        instants += [at + timedelta(seconds=s) for s in (-1, 0, 1)]
    stored = [  # as Django stores them: with and without a fraction of a second
        i.strftime("%Y-%m-%d %H:%M:%S.%f" if n % 2 else "%Y-%m-%d %H:%M:%S")
        for n, i in enumerate(instants)
    ]
    database = sqlite3.connect(":memory:")
    database.execute("CREATE TABLE p (purchased_at text)")
    database.executemany("INSERT INTO p VALUES (?)", [(s,) for s in stored])

    expression = local_date_sql("purchased_at", tz, until=UNTIL)
    in_sql = [row[0] for row in database.execute(f"SELECT {expression} FROM p")]

    assert in_sql == [i.astimezone(tz).date().isoformat() for i in instants]


def test_a_zone_without_changes_is_one_fixed_offset():
    assert offset_changes(ZoneInfo("UTC"), until=UNTIL) == ()
    assert local_date_sql("t", ZoneInfo("UTC"), until=UNTIL) == "date(t, '+0 seconds')"
