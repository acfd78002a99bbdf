"""SQLite: the business's local date of a stored UTC timestamp, in SQL alone.

Django's TruncDate on SQLite calls a Python function for every row (the time zone rules live
in Python), which at ten million purchases costs a minute and holds the interpreter's lock
all the while. A zone's offset from UTC changes only at its transitions (daylight saving,
a change of law): for the years that matter they are a few dozen instants, found here once
per query, so the offset of every row is a CASE over text comparisons (the stored form
'YYYY-MM-DD HH:MM:SS[.ffffff]' sorts like time) and SQLite's own date() applies it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np

# Transitions are looked for in this span; before it a zone keeps its earliest offset found.
SPAN_START = datetime(1900, 1, 1, tzinfo=UTC)
SPAN_YEARS_AHEAD = 2


@lru_cache(maxsize=32)
def offset_changes(zone: ZoneInfo, *, until: datetime) -> tuple[tuple[datetime, int], ...]:
    """The instants (UTC) from which the zone's UTC offset changes between SPAN_START and
    ``until``, each with the new offset in seconds, in time order; empty for a fixed offset.
    A day-by-day walk, then a search to the second inside the day of each change.

    Kept per zone and ``until`` (the end of a day): the walk takes a tenth of a second, and
    a page that sums one customer's purchase days (the customer page) asks for the same
    day's again and again."""

    def offset(at: datetime) -> int:
        return int(at.astimezone(zone).utcoffset().total_seconds())

    changes: list[tuple[datetime, int]] = []
    day, step = SPAN_START, timedelta(days=1)
    current = offset(day)
    while day < until:
        following = day + step
        new = offset(following)
        if new != current:
            low, high = day, following  # offset(low) == current, offset(high) == new
            while (high - low) > timedelta(seconds=1):
                middle = low + (high - low) / 2
                middle = middle.replace(microsecond=0)
                if middle <= low:
                    break
                if offset(middle) == current:
                    low = middle
                else:
                    high = middle
            changes.append((high, new))
            current = new
        day = following
    return tuple(changes)


def local_date_sql(column: str, zone: ZoneInfo, *, until: datetime) -> str:
    """A SQLite expression: the date in ``zone`` of the UTC text timestamp ``column``, for
    timestamps before ``until`` (later ones take the last offset found)."""
    start = int(SPAN_START.astimezone(zone).utcoffset().total_seconds())
    changes = offset_changes(zone, until=until + timedelta(days=365 * SPAN_YEARS_AHEAD))
    if not changes:
        return f"date({column}, '{start:+d} seconds')"
    # Newest first: most purchases are recent, so most rows stop at the first comparisons.
    branches = " ".join(
        f"WHEN {column} >= '{at:%Y-%m-%d %H:%M:%S}' THEN '{seconds:+d} seconds'"
        for at, seconds in reversed(changes)
    )
    return f"date({column}, CASE {branches} ELSE '{start:+d} seconds' END)"


class LocalDays:
    """The local day (days since 1970-01-01) of UTC moments given as whole seconds since
    1970, in numpy: the offset of each moment looked up among the zone's changes, as
    local_date_sql does in SQL."""

    def __init__(self, zone: ZoneInfo, *, until: datetime):
        start = int(SPAN_START.astimezone(zone).utcoffset().total_seconds())
        changes = offset_changes(zone, until=until + timedelta(days=365 * SPAN_YEARS_AHEAD))
        self.instants = np.array([int(at.timestamp()) for at, _ in changes], dtype=np.int64)
        self.offsets = np.array([start, *(seconds for _, seconds in changes)], dtype=np.int64)

    def days(self, seconds: np.ndarray) -> np.ndarray:
        offsets = self.offsets[np.searchsorted(self.instants, seconds, side="right")]
        return (seconds + offsets) // 86_400
