"""Reads behind the predictions: each customer's sales per day, their predictions, and the
predictions' track record."""

import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
import pandas as pd
from django.db import connection, transaction
from django.db.models import Count, Exists, FloatField, OuterRef, Q, QuerySet, Sum
from django.db.models.functions import Cast, TruncDate
from django.utils import timezone
from psycopg import sql as psycopg_sql

from crm.models import Activity, Customer, Purchase
from segmentation import clv
from segmentation.features import MICROSECONDS_PER_DAY
from segmentation.local_days import LocalDays, local_date_sql
from segmentation.models import (
    UNIX_EPOCH,
    CustomerPrediction,
    CustomerPurchaseDays,
    PurchaseDaysRead,
    Segment,
    SegmentationRun,
    moment_us,
)
from segmentation.pg_copy import EPOCH_DATE, copy_out
from segmentation.selectors import (
    _PLANNER_SETTINGS,
    CHANGED_COLUMN,
    SQLITE_JULIAN_1970,
    _binary_rows_frame,
    _day_end,
    binary_fixed_rows,
    day_start,
    planner_settings_set,
    rows_matrix,
)

# "Likely gone": less than even odds of still being a customer, the line every page uses.
LIKELY_GONE_BELOW = 0.5


def customer_daily_sales(*, as_of: date) -> pd.DataFrame:
    """One row per profiled customer and day with a sale up to and including ``as_of``:
    customer_id, day (the business's local date, datetime64[D]) and amount (float), sorted by
    customer then day. One GROUP BY in the database. Refunds are left out: the purchase
    models count transactions, and a refund is not one."""
    tz = timezone.get_default_timezone()
    rows = (
        Purchase.objects.filter(
            kind=Purchase.Kind.SALE,
            purchased_at__lt=_day_end(as_of),
            customer__is_archived=False,
            customer__profiling_opt_out=False,
        )
        .annotate(day=TruncDate("purchased_at", tzinfo=tz))
        .values("customer_id", "day")
        .annotate(total=Cast(Sum("amount"), FloatField()))
        .order_by("customer_id", "day")
        .values_list("customer_id", "day", "total")
    )
    customers, days, amounts = [], [], []
    for customer_id, day, amount in rows.iterator(chunk_size=20_000):
        customers.append(customer_id)
        days.append(day)
        amounts.append(amount)
    return pd.DataFrame(
        {
            "customer_id": np.array(customers, dtype=np.int64),
            "day": np.array(days, dtype="datetime64[D]"),
            "amount": np.array(amounts, dtype=np.float64),
        }
    )


def customer_purchase_totals(*, as_of: date) -> pd.DataFrame:
    """Per profiled customer with a sale up to and including ``as_of``: the number of days
    with a purchase (the business's local days), the first and last of them, the total of
    all of them and of the first one — what the purchase models need, summed in the
    database (one row per customer, not per purchase day, comes back). Refunds are left
    out: the models count transactions, and a refund is not one."""
    tz = timezone.get_current_timezone_name()
    end = connection.ops.adapt_datetimefield_value(_day_end(as_of))
    if connection.vendor == "postgresql":
        return _purchase_totals_postgresql(tz=tz, end=end, until=_day_end(as_of))
    return _purchase_totals_sqlite_blocks(tz=tz, end=end, until=_day_end(as_of))


@dataclass(frozen=True)
class PurchaseDaysKeep:
    """What summed rows are kept with (CustomerPurchaseDays)."""

    time_zone: str
    as_of: date
    computed_at: datetime  # when the read started


@dataclass(frozen=True)
class PurchaseTotals:
    """customer_purchase_totals' frame, and which of its rows this read summed from the
    purchases (the others were read as kept in CustomerPurchaseDays)."""

    frame: pd.DataFrame
    summed: np.ndarray  # bool, one per row of frame
    # Every row was summed (nothing kept could be used): the kept rows are replaced whole.
    all_summed: bool
    # What the summed rows are kept with; None when they are not to be kept (a run as of
    # an earlier day).
    keep: PurchaseDaysKeep | None

    @property
    def kept(self) -> int:
        return int(len(self.summed) - self.summed.sum())


@dataclass(frozen=True)
class RunBuyers:
    """The profiled customers with a sale as a run's feature read found them, for its
    predictions: sorted ids, each one's last sale and the last change of their purchases
    (microseconds since 1970 UTC; NaN for never changed). With them the nightly read takes
    the kept purchase days alone and judges them here, instead of reading every customer
    again beside them (at a million customers 1.6 s in the database against 0.7 s)."""

    ids: np.ndarray
    last_purchase_us: np.ndarray
    purchases_changed_us: np.ndarray

    @classmethod
    def of_features(cls, frame: pd.DataFrame) -> "RunBuyers":
        """From a run's raw feature frame (selectors.customer_features)."""
        return cls(
            ids=frame["customer_id"].to_numpy(np.int64),
            last_purchase_us=frame["last_purchase_us"].to_numpy(np.int64),
            purchases_changed_us=frame[CHANGED_COLUMN].to_numpy(np.float64),
        )


def customer_purchase_totals_nightly(
    *, as_of: date, today: date | None = None, buyers: RunBuyers | None = None
) -> PurchaseTotals:
    """customer_purchase_totals, the same frame, for a run as of today: the customers whose
    kept purchase days still hold (_KEPT_VALID) are read as kept (_kept_rows), only the
    others are summed from their purchases (_stale_totals). A run as of an earlier day, one
    that finds nothing kept in the business's time zone (the first run, a change of zone),
    or one that finds most of a large shop changed, sums everyone as
    customer_purchase_totals does. Given the ``buyers`` a run's feature read found, the
    customers are those and the kept rows are judged by their figures (_kept_rows_of)."""
    computed_at = timezone.now()  # before the read: see _KEPT_VALID
    tz = timezone.get_current_timezone_name()
    if as_of != (today or timezone.localdate()):
        frame = customer_purchase_totals(as_of=as_of)
        return PurchaseTotals(frame, np.ones(len(frame), dtype=bool), True, keep=None)
    keep = PurchaseDaysKeep(time_zone=tz, as_of=as_of, computed_at=computed_at)
    if not (
        PurchaseDaysRead.objects.filter(time_zone=tz, as_of__lte=as_of).exists()
        and CustomerPurchaseDays.objects.exists()
    ):
        frame = customer_purchase_totals(as_of=as_of)
        return PurchaseTotals(frame, np.ones(len(frame), dtype=bool), True, keep=keep)
    until = _day_end(as_of)
    end = connection.ops.adapt_datetimefield_value(until)
    if buyers is None:
        kept = _kept_rows(tz=tz, as_of=as_of, until=until)
    else:
        kept = _kept_rows_of(buyers, tz=tz, as_of=as_of)
    holds = kept.pop("holds").to_numpy().astype(bool)
    stale = kept["customer_id"].to_numpy()[~holds]
    if len(stale) > max(_FULL_READ_MIN_STALE, len(kept) // 2):
        # Most of a large shop changed (a restore, an import of old sales): one pass over
        # every purchase is cheaper than looking that many customers up one by one.
        frame = customer_purchase_totals(as_of=as_of)
        return PurchaseTotals(frame, np.ones(len(frame), dtype=bool), True, keep=keep)
    summed = _stale_totals(stale, tz=tz, end=end, until=until) if len(stale) else kept[:0]
    frame = pd.concat([kept[holds], summed], ignore_index=True)
    flags = np.concatenate([np.zeros(int(holds.sum()), dtype=bool), np.ones(len(summed), bool)])
    order = np.argsort(frame["customer_id"].to_numpy(), kind="stable")
    frame = frame.take(order).reset_index(drop=True)
    return PurchaseTotals(frame, flags[order], False, keep=keep)


# Customers whose kept days no longer hold above which, when they are also more than half,
# the nightly read sums every purchase instead.
_FULL_READ_MIN_STALE = 20_000


_COLUMNS = ["customer_id", "days", "first_day", "last_day", "total", "first_total"]
_DAYS = {"first_day", "last_day"}

# A kept row k of customer c (both tables joined, with k's read r) holds, and is read
# instead of summing c's purchases, when r summed in today's zone up to a day no later than
# the run's, c has no sale after that day (a sale dated ahead when it was summed), and c's
# purchases have not changed since a day before r started. A day, not the moment itself: a
# write takes its moment before it commits (crm.services.customer_stats_refresh), so a write
# stamped just before the read started may commit after it, unseen by the read yet stamped
# earlier. A day covers any write transaction we have. Customers without a sale
# (last_purchase_at NULL) never match.
_KEPT_VALID = {
    "postgresql": """
        r.time_zone = %(tz)s AND r.as_of <= %(as_of)s
        AND (c.last_purchase_at AT TIME ZONE %(tz)s)::date <= r.as_of
        AND (c.purchases_changed_at IS NULL
             OR c.purchases_changed_at < r.computed_at - INTERVAL '1 day')
    """,
    # Moments are UTC text; datetime() drops the fraction of a second, which only makes the
    # day a little longer.
    "sqlite": """
        r.time_zone = %(tz)s AND r.as_of <= %(as_of)s
        AND {last_day} <= r.as_of
        AND (c.purchases_changed_at IS NULL
             OR c.purchases_changed_at < datetime(r.computed_at, '-1 day'))
    """,
}


def _kept_rows(*, tz: str, as_of: date, until: datetime) -> pd.DataFrame:
    """Every profiled customer with a sale, with their kept purchase days (zeros where none)
    and whether those still hold (_KEPT_VALID): one merge of both tables' primary keys, in
    customer order. Columns _COLUMNS then ``holds`` (0/1).

    Why not one statement that also sums the others: the database then reads the customers
    twice (once to find who must be summed, once to join the kept rows), 2.4 s instead of
    1.0 at 1M. The two statements need no common snapshot: a sale recorded between them
    stamps its customer (purchases_changed_at), so the next run sums them again whichever
    statement saw it."""
    customer = Customer._meta.db_table
    kept = CustomerPurchaseDays._meta.db_table
    reads = PurchaseDaysRead._meta.db_table
    vendor = connection.vendor
    valid = _KEPT_VALID[vendor]
    false = "FALSE" if vendor == "postgresql" else "0"
    if vendor == "postgresql":
        epoch = "DATE '1970-01-01'"
        read = (
            "c.id::int8, COALESCE(k.days, 0)::int8, "
            f"COALESCE(k.first_day - {epoch}, 0)::int8, COALESCE(k.last_day - {epoch}, 0)::int8, "
            "COALESCE(k.total, 0)::float8, COALESCE(k.first_total, 0)::float8"
        )
        holds = f"(CASE WHEN k.customer_id IS NOT NULL AND {valid} THEN 1 ELSE 0 END)::int8"
    else:
        last_day = local_date_sql("c.last_purchase_at", zoneinfo.ZoneInfo(tz), until=until)
        valid = valid.replace("{last_day}", last_day)
        # Days as a count since 1970-01-01, as on PostgreSQL: numbers only, one float
        # matrix.
        read = (
            "c.id, COALESCE(k.days, 0), "
            f"COALESCE(julianday(k.first_day) - {SQLITE_JULIAN_1970}, 0), "
            f"COALESCE(julianday(k.last_day) - {SQLITE_JULIAN_1970}, 0), "
            "COALESCE(k.total, 0), COALESCE(k.first_total, 0)"
        )
        holds = f"CASE WHEN k.customer_id IS NOT NULL AND {valid} THEN 1 ELSE 0 END"
    # Customers with a sale have last_purchase_at (kept in step by every write of purchases).
    sql = f"""
        SELECT {read}, {holds}
        FROM {customer} c LEFT JOIN {kept} k ON k.customer_id = c.id
            LEFT JOIN {reads} r ON r.id = k.read_id
        WHERE c.is_archived = {false} AND c.profiling_opt_out = {false}
          AND c.last_purchase_at IS NOT NULL
        ORDER BY c.id
    """
    columns = [*_COLUMNS, "holds"]
    values = {"tz": tz, "as_of": as_of.isoformat()}
    if vendor == "postgresql":
        return _frame_from_copy(_copy_out(sql, **values), extra=["holds"])
    with connection.cursor() as cur:
        cur.execute(sql, values)
        matrix = rows_matrix(cur.fetchall(), len(columns), np.float64)
    frame = pd.DataFrame(
        {
            name: matrix[:, i].astype(np.int64)
            if name not in ("total", "first_total")
            else matrix[:, i]
            for i, name in enumerate(columns)
        }
    )
    for column in _DAYS:
        frame[column] = frame[column].to_numpy().astype("datetime64[D]")
    return frame


# _KEPT_VALID's "a day before it was summed", and two milliseconds more: the SQL form of the
# rule (_kept_rows) reads moments with SQLite's date functions, which keep a moment to the
# millisecond, and both forms must judge a change that close to the line alike (summed
# again rather than trusted).
_CHANGED_BEFORE_US = MICROSECONDS_PER_DAY + 2_000
# The kept rows alone, as stored: ids, counts, dates (days since 2000 on PostgreSQL), totals
# and the read that summed them.
_KEPT_ALONE = {
    "customer_id": ">i8",
    "days": ">i4",
    "first_day": ">i4",
    "last_day": ">i4",
    "total": ">f8",
    "first_total": ">f8",
    "read_id": ">i8",
}
_PG_EPOCH_DAYS = (EPOCH_DATE - UNIX_EPOCH.date()).days  # since 1970


def _kept_rows_of(buyers: RunBuyers, *, tz: str, as_of: date) -> pd.DataFrame:
    """_kept_rows for the run's ``buyers``: the kept rows summed in ``tz`` up to ``as_of``,
    read alone (_kept_alone), and judged by _KEPT_VALID's rules with the buyers' figures. A
    row holds when its customer's last sale falls before the end of its read's day in the
    business's zone, and their purchases have not changed since a day before that read
    started. A buyer the features saw with an older sale than the purchases now hold was
    stamped by that sale: the next run sums them, as _kept_rows' snapshot would. The
    features carry the last sale rounded to the whole second: one in the last half second
    of a day reads as the next day's first moment (days end on a whole second) and is
    summed again rather than trusted."""
    kept = _kept_alone(tz=tz, as_of=as_of)
    ids = kept["customer_id"]
    position = np.searchsorted(ids, buyers.ids)
    found = position < len(ids)
    found[found] = ids[position[found]] == buyers.ids[found]
    row = position[found]  # each found buyer's kept row
    holds = found.copy()
    holds[found] = (buyers.last_purchase_us[found] < kept["day_end_us"][row]) & ~(
        buyers.purchases_changed_us[found] >= kept["computed_us"][row] - _CHANGED_BEFORE_US
    )
    frame = {"customer_id": buyers.ids}
    for column in _COLUMNS[1:]:
        values = np.zeros(len(buyers.ids), dtype=kept[column].dtype)
        values[found] = kept[column][row]
        frame[column] = values
    frame["holds"] = holds.astype(np.int64)
    frame = pd.DataFrame(frame)
    for column in _DAYS:
        frame[column] = frame[column].to_numpy().astype("datetime64[D]")
    return frame


def _kept_alone(*, tz: str, as_of: date) -> dict[str, np.ndarray]:
    """The kept purchase days whose read summed them in ``tz`` up to ``as_of``, sorted by
    customer: the few reads looked up first, then one seek-free pass over the rows, every
    column a number as stored (PostgreSQL: binary COPY, no conversion per row). Days as
    counts since 1970; per row, the end of its read's day and the moment that read started
    (``day_end_us``, ``computed_us``: microseconds since 1970)."""
    reads = list(
        PurchaseDaysRead.objects.filter(time_zone=tz, as_of__lte=as_of).values_list(
            "pk", "as_of", "computed_at"
        )
    )
    table = CustomerPurchaseDays._meta.db_table
    if connection.vendor == "postgresql":
        sql = (
            "SELECT customer_id, days, first_day, last_day, total, first_total, read_id "
            f"FROM {table}"
        )
        rows = binary_fixed_rows(_copy_out(sql), _KEPT_ALONE)
        kept = {name: rows[name].astype(rows[name].dtype.newbyteorder("=")) for name in _KEPT_ALONE}
        for column in _DAYS:
            kept[column] = kept[column].astype(np.int64) + _PG_EPOCH_DAYS
        kept["days"] = kept["days"].astype(np.int64)
    else:
        day = f"CAST(julianday({{}}) - {SQLITE_JULIAN_1970} AS INTEGER)"
        sql = (
            f"SELECT customer_id, days, {day.format('first_day')}, {day.format('last_day')}, "
            f"total, first_total, read_id FROM {table}"
        )
        with connection.cursor() as cur:
            cur.execute(sql)
            matrix = rows_matrix(cur.fetchall(), len(_KEPT_ALONE), np.float64)
        kept = {
            name: matrix[:, i]
            if name in ("total", "first_total")
            else matrix[:, i].astype(np.int64)
            for i, name in enumerate(_KEPT_ALONE)
        }
    # Each row's read among those (read ids are few and small: a lookup table of them);
    # rows of other reads (another zone, a later day) are not read as kept.
    read_ids = np.array([pk for pk, _, _ in reads], dtype=np.int64)
    slot = np.full(max(read_ids.max(initial=0), kept["read_id"].max(initial=0)) + 1, -1)
    slot[read_ids] = np.arange(len(reads))
    of_row = slot[kept["read_id"]]
    if not (of_row >= 0).all():
        mine = of_row >= 0
        kept = {name: values[mine] for name, values in kept.items()}
        of_row = of_row[mine]
    day_end = np.array([moment_us(_day_end(day)) for _, day, _ in reads], dtype=np.int64)
    started = np.array([moment_us(at) for _, _, at in reads], dtype=np.int64)
    kept["day_end_us"], kept["computed_us"] = day_end[of_row], started[of_row]
    if not (np.diff(kept["customer_id"]) > 0).all():  # the table's order, mostly theirs
        order = np.argsort(kept["customer_id"], kind="stable")
        kept = {name: values[order] for name, values in kept.items()}
    return kept


def _stale_totals(ids: np.ndarray, *, tz: str, end, until: datetime) -> pd.DataFrame:
    """The totals of the customers ``ids`` (sorted, at least one), summed from their
    purchases alone: a lookup of each in the purchases' index, a few thousand a night."""
    listed = "{" + ",".join(str(int(i)) for i in ids) + "}"
    if connection.vendor == "postgresql":
        restrict = " AND p.customer_id = ANY(%(ids)s::int8[])"
        return _frame_from_copy(
            _copy_out(_totals_sql_postgresql(restrict), tz=tz, end=end, ids=listed)
        )
    restrict = " AND p.customer_id IN (SELECT value FROM json_each(%(ids)s))"
    sql = _totals_sql_sqlite(tz=tz, until=until, restrict=restrict)
    with connection.cursor() as cur:
        params = {"sale": Purchase.Kind.SALE, "end": end, "ids": "[" + listed[1:-1] + "]"}
        cur.execute(sql, params)
        return _frame_from_rows(cur.fetchall())


def _frame_from_copy(buffer: bytearray, *, extra: tuple | list = ()) -> pd.DataFrame:
    """The totals' binary COPY as their frame, sorted by customer."""
    columns = _COLUMNS + list(extra)
    ints = {"customer_id", "days", *_DAYS, *extra}
    frame = _binary_rows_frame(buffer, columns, int_columns=ints)
    frame = _by_customer(frame)
    for column in _DAYS:
        frame[column] = frame[column].to_numpy().astype("datetime64[D]")
    return frame


def _frame_from_rows(rows: list[tuple], *, extra: tuple | list = ()) -> pd.DataFrame:
    frame = _by_customer(pd.DataFrame(rows, columns=_COLUMNS + list(extra)))
    for column in _DAYS:
        frame[column] = pd.to_datetime(frame[column]).to_numpy().astype("datetime64[D]")
    return frame


def _by_customer(frame: pd.DataFrame) -> pd.DataFrame:
    """Sorted by customer id. The summed totals come sorted; kept and summed rows come one
    part after the other, two sorted runs that a stable sort merges in one pass."""
    ids = frame["customer_id"].to_numpy()
    if len(ids) < 2 or (ids[1:] > ids[:-1]).all():
        return frame
    return frame.take(np.argsort(ids, kind="stable")).reset_index(drop=True)


# Per customer, from their purchase days (customer_id, day, total): the figures above.
_FIRST_DAY_TOTAL = "SUM(CASE WHEN day = first_day THEN total ELSE 0 END)"
# ``customers``: the purchases' restriction (if any) put on the customers too, so that the
# join looks up those few by primary key. Without it PostgreSQL merges them with every
# customer: 0.44-1.43 s instead of 0.11-0.13 s for 3,000 customers of a million.
_TOTALS_OVER_DAYS = """
    SELECT {columns}
    FROM (
        SELECT customer_id, day, total, MIN(day) OVER (PARTITION BY customer_id) AS first_day
        FROM ({days}) d
        JOIN {customer} c ON c.id = d.customer_id
        WHERE c.is_archived = {false} AND c.profiling_opt_out = {false}{customers}
    ) w
    GROUP BY customer_id
    ORDER BY customer_id
"""


def _totals_sql_postgresql(restrict: str = "") -> str:
    """The covering index (customer_id, purchased_at, amount) has no `kind`, so, as in the
    feature aggregate, every purchase day is summed from that index alone (no table lookup
    per purchase) and the few refunds, summed through their partial index, are taken off
    day by day: a day is a purchase day while it has more purchases than refunds. The
    sums are taken in numeric and turned into floats once, so the totals are exactly the
    sales' own (the same floats as _purchase_totals_postgresql's whole cents). Days as a
    count since 1970-01-01, for the binary COPY (_copy_out). ``restrict``: a condition on
    the purchases ``p`` to add (the customers to sum)."""
    purchase = Purchase._meta.db_table

    def per_day(kind: str) -> str:
        return f"""
            SELECT p.customer_id, (p.purchased_at AT TIME ZONE %(tz)s)::date AS day,
                   COUNT(*) AS n, SUM(p.amount) AS total
            FROM {purchase} p
            WHERE p.purchased_at < %(end)s{kind}{restrict}
            GROUP BY 1, 2
        """

    days = f"""
        SELECT a.customer_id, a.day, a.total - COALESCE(r.total, 0) AS total
        FROM ({per_day("")}) a
        LEFT JOIN ({per_day(" AND p.kind = %(refund)s")}) r
          ON r.customer_id = a.customer_id AND r.day = a.day
        WHERE a.n > COALESCE(r.n, 0)
    """
    epoch = "DATE '1970-01-01'"
    return _TOTALS_OVER_DAYS.format(
        columns=f"customer_id::int8, COUNT(*)::int8, (MIN(day) - {epoch})::int8, "
        f"(MAX(day) - {epoch})::int8, SUM(total)::float8, {_FIRST_DAY_TOTAL}::float8",
        days=days,
        customer=Customer._meta.db_table,
        false="FALSE",
        customers=restrict.replace("p.customer_id", "c.id"),
    )


def _copy_out(sql: str, **values) -> bytearray:
    """Run a totals query with the planner settings of the feature aggregate (streaming
    aggregates and merge joins over inputs already in customer order), for the same
    reasons, and stream it out as a binary COPY of fixed-width fields that numpy decodes: a
    million rows of tuples and date objects cost seconds of Python."""
    values.setdefault("refund", Purchase.Kind.REFUND.value)
    # A transaction scopes the planner settings.
    with transaction.atomic(), connection.cursor() as cur:
        saved = planner_settings_set(cur, _PLANNER_SETTINGS)
        # COPY takes no parameters: the values go in as literals, quoted by the driver.
        for name, value in values.items():
            literal = psycopg_sql.Literal(value).as_string(cur.cursor.connection)
            sql = sql.replace(f"%({name})s", literal)
        buffer = copy_out(cur, sql)
        planner_settings_set(cur, saved)
    return buffer


# Customers per block of the full read below: a block's purchases (about ten each) come
# back as byte strings of a few megabytes each.
_BLOCK_CUSTOMERS = 65_536


def _purchase_totals_postgresql(*, tz: str, end, until: datetime) -> pd.DataFrame:
    """customer_purchase_totals on PostgreSQL: every purchase up to ``end`` read once in
    customer blocks, summed by local day in numpy.

    Why not GROUP BY the local day in SQL: the database then converts ten million moments
    to the zone's dates and sorts them within each customer (11 s at 10M purchases), where
    the covering index already yields each customer's purchases in time order, and a
    local day only ever follows the one before. So each block of customers comes back as
    packed columns (customer, whole seconds since 1970, amount; one string_agg each, not a
    message per purchase) through the covering index, the refunds the same way through
    their partial index, and the profiled customers' ids; one statement, one snapshot.
    Amounts are summed in whole cents, so the totals are exact. Local days follow the
    zone's rules as local_days.offset_changes finds them (the same rules the SQLite read
    uses)."""
    purchase = Purchase._meta.db_table
    customer = Customer._meta.db_table

    def packed(kind: str) -> str:
        return f"""
            SELECT string_agg(int8send(q.customer_id), ''::bytea) AS ids,
                   string_agg(int8send(floor(date_part('epoch', q.purchased_at))::int8),
                              ''::bytea) AS seconds,
                   string_agg(float8send(q.amount::float8), ''::bytea) AS amounts
            FROM {purchase} q
            WHERE q.customer_id >= b.lo AND q.customer_id < b.lo + %(step)s
              AND q.purchased_at < %(end)s{kind}
        """

    sql = f"""
        SELECT a.ids, a.seconds, a.amounts, r.ids, r.seconds, r.amounts, c.ids
        FROM generate_series((SELECT MIN(id) FROM {customer}), (SELECT MAX(id) FROM {customer}),
                             %(step)s) AS b(lo)
        CROSS JOIN LATERAL ({packed("")}) a
        CROSS JOIN LATERAL ({packed(" AND q.kind = %(refund)s")}) r
        CROSS JOIN LATERAL (
            SELECT string_agg(int8send(c.id), ''::bytea) AS ids FROM {customer} c
            WHERE c.id >= b.lo AND c.id < b.lo + %(step)s
              AND NOT c.is_archived AND NOT c.profiling_opt_out
        ) c
        ORDER BY b.lo
    """
    zone = LocalDays(zoneinfo.ZoneInfo(tz), until=until)
    params = {"step": _BLOCK_CUSTOMERS, "end": end, "refund": Purchase.Kind.REFUND.value}
    parts: list[dict[str, np.ndarray]] = []
    # A server-side cursor holds one block in memory at a time; a transaction holds it and
    # scopes the planner settings.
    with transaction.atomic():
        with connection.cursor() as cur:
            planner_settings_set(cur, {"jit": "off", "max_parallel_workers_per_gather": "0"})
        # psycopg's own server-side cursor (Django's gives a plain one where server-side
        # cursors are disabled for a pooler), inside this transaction, with binary
        # results: as text, each byte string would travel hex-encoded, twice its size.
        with connection.connection.cursor(name="purchase_day_blocks", binary=True) as cur:
            cur.execute(sql, params)
            while rows := cur.fetchmany(4):
                for row in rows:
                    a_ids, a_seconds, a_amounts, r_ids, r_seconds, r_amounts, profiled = row
                    parts.append(
                        _block_purchase_days(
                            (_int8s(a_ids), _int8s(a_seconds), _float8s(a_amounts)),
                            (_int8s(r_ids), _int8s(r_seconds), _float8s(r_amounts)),
                            _int8s(profiled),
                            zone,
                        )
                    )
    return _purchase_days_frame(parts)


def _purchase_totals_sqlite_blocks(*, tz: str, end, until: datetime) -> pd.DataFrame:
    """customer_purchase_totals on SQLite, as _purchase_totals_postgresql does it: each
    block of customers' purchases comes back as one text of "customer,seconds,amount"
    triples (a correlated subquery per block walks the covering index in order: no sort
    of ten million rows by a computed day, no table lookup for the kind), the refunds the
    same way through their partial index, and the profiled customers' ids. One statement,
    so one snapshot; numpy parses the texts and sums the local days."""
    purchase = Purchase._meta.db_table
    customer = Customer._meta.db_table
    # unixepoch() is SQLite 3.38's; strftime('%s') does the same, a third slower.
    if connection.Database.sqlite_version_info >= (3, 38):
        seconds = "unixepoch(q.purchased_at)"
    else:  # pragma: no cover - older SQLite libraries
        seconds = "CAST(strftime('%%s', q.purchased_at) AS INTEGER)"

    def packed(kind: str) -> str:
        return f"""(
            SELECT group_concat(q.customer_id || ',' || {seconds} || ',' || q.amount)
            FROM {purchase} q
            WHERE q.customer_id >= b.lo AND q.customer_id < b.lo + %(step)s
              AND q.purchased_at < %(end)s{kind}
        )"""

    sql = f"""
        WITH RECURSIVE b(lo) AS (
            SELECT (SELECT MIN(id) FROM {customer})
            UNION ALL
            SELECT lo + %(step)s FROM b WHERE lo + %(step)s <= (SELECT MAX(id) FROM {customer})
        )
        SELECT {packed("")}, {packed(" AND q.kind = %(refund)s")}, (
            SELECT group_concat(c.id) FROM {customer} c
            WHERE c.id >= b.lo AND c.id < b.lo + %(step)s
              AND NOT c.is_archived AND NOT c.profiling_opt_out
        )
        FROM b WHERE b.lo IS NOT NULL ORDER BY b.lo
    """
    zone = LocalDays(zoneinfo.ZoneInfo(tz), until=until)
    params = {"step": _BLOCK_CUSTOMERS, "end": end, "refund": Purchase.Kind.REFUND.value}
    parts: list[dict[str, np.ndarray]] = []
    with connection.cursor() as cur:
        cur.execute(sql, params)
        while rows := cur.fetchmany(4):
            for purchases, refunds, profiled in rows:
                parts.append(
                    _block_purchase_days(
                        _triples(purchases), _triples(refunds), _integers(profiled), zone
                    )
                )
    return _purchase_days_frame(parts)


def _triples(text: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ "customer,seconds,amount,..." as three arrays (customer and seconds are whole
    numbers well within a float's exact range)."""
    values = np.fromstring(text or "", sep=",").reshape(-1, 3)
    return values[:, 0].astype(np.int64), values[:, 1].astype(np.int64), values[:, 2]


def _integers(text: str | None) -> np.ndarray:
    return np.fromstring(text or "", sep=",").astype(np.int64)


def _int8s(packed: bytes | None) -> np.ndarray:
    return np.frombuffer(packed or b"", dtype=">i8").astype(np.int64)


def _float8s(packed: bytes | None) -> np.ndarray:
    return np.frombuffer(packed or b"", dtype=">f8").astype(np.float64)


def _day_groups(
    ids: np.ndarray, seconds: np.ndarray, amounts: np.ndarray, zone: LocalDays
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One row per customer and local day: the customer, the day, the purchases, their
    whole cents; in customer then day order."""
    days = zone.days(seconds)
    cents = np.rint(amounts * 100).astype(np.int64)
    if len(ids) > 1:
        ordered = (ids[1:] > ids[:-1]) | ((ids[1:] == ids[:-1]) & (days[1:] >= days[:-1]))
        if not ordered.all():  # time order but not day order: a zone whose clock went back
            order = np.lexsort((days, ids))  # over midnight (or a plan in another order)
            ids, days, cents = ids[order], days[order], cents[order]
    if not len(ids):
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty, empty
    starts = np.flatnonzero(np.r_[True, (ids[1:] != ids[:-1]) | (days[1:] != days[:-1])])
    counts = np.diff(np.r_[starts, len(ids)])
    return ids[starts], days[starts], counts, np.add.reduceat(cents, starts)


# Customer and day in one sortable number (days since 1970 shifted to be positive).
_DAY_SPAN = 1 << 22
_DAY_SHIFT = 1 << 21


def _block_purchase_days(
    purchases: tuple[np.ndarray, np.ndarray, np.ndarray],
    refunds: tuple[np.ndarray, np.ndarray, np.ndarray],
    profiled: np.ndarray,
    zone: LocalDays,
) -> dict[str, np.ndarray]:
    """One block of the full read (purchases and refunds as customer, seconds since 1970,
    amount): its profiled customers' purchase days, first and last day, and the totals in
    cents of every sales day and of the first one."""
    ids, days, counts, cents = _day_groups(*purchases, zone)
    refund_ids, refund_days, refund_counts, refund_cents = _day_groups(*refunds, zone)
    # Refunds are purchases too: each refund's day is one of the purchase days above. Take
    # them off their day; a day stays a purchase day while it has a sale.
    key = ids * _DAY_SPAN + (days + _DAY_SHIFT)
    at = np.searchsorted(key, refund_ids * _DAY_SPAN + (refund_days + _DAY_SHIFT))
    counts, cents = counts.copy(), cents.copy()
    counts[at] -= refund_counts
    cents[at] -= refund_cents
    keep = counts > 0
    keep &= np.isin(ids, profiled)
    ids, days, cents = ids[keep], days[keep], cents[keep]
    if not len(ids):
        return {}
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    number = np.diff(np.r_[starts, len(ids)])
    return {
        "customer_id": ids[starts],
        "days": number,
        "first_day": days[starts],
        "last_day": days[starts + number - 1],
        "total": np.add.reduceat(cents, starts),
        "first_total": cents[starts],
    }


def _purchase_days_frame(parts: list[dict[str, np.ndarray]]) -> pd.DataFrame:
    """The blocks as customer_purchase_totals' frame (the totals back from cents)."""
    parts = [part for part in parts if part]
    columns = {
        name: np.concatenate([part[name] for part in parts])
        if parts
        else np.empty(0, dtype=np.int64)
        for name in _COLUMNS
    }
    frame = pd.DataFrame({name: columns[name] for name in ("customer_id", "days")})
    for name in _DAYS:
        frame[name] = columns[name].astype("datetime64[D]")
    for name in ("total", "first_total"):
        frame[name] = columns[name] / 100
    return frame[_COLUMNS]


def _totals_sql_sqlite(*, tz: str, until: datetime, restrict: str = "") -> str:
    purchase = Purchase._meta.db_table
    # The local date in SQL alone (segmentation.local_days), not Django's Python function
    # behind TruncDate called for every purchase: the same dates, a minute less at 10M.
    day = local_date_sql("p.purchased_at", zoneinfo.ZoneInfo(tz), until=until)
    # Summed in whole cents, then divided once: exactly the block read's totals.
    days = f"""
        SELECT p.customer_id, {day} AS day,
               SUM(CAST(round(p.amount * 100) AS INTEGER)) AS total
        FROM {purchase} p
        WHERE p.kind = %(sale)s AND p.purchased_at < %(end)s{restrict}
        GROUP BY 1, 2
    """
    return _TOTALS_OVER_DAYS.format(
        columns="customer_id, COUNT(*), MIN(day), MAX(day), SUM(total) / 100.0, "
        f"{_FIRST_DAY_TOTAL} / 100.0",
        days=days,
        customer=Customer._meta.db_table,
        false="0",
        customers=restrict.replace("p.customer_id", "c.id"),
    )


def customer_prediction_get(*, customer_id: int) -> CustomerPrediction | None:
    """The customer's current prediction, if the last fit covered them."""
    return CustomerPrediction.objects.filter(customer_id=customer_id).first()


@dataclass(frozen=True)
class PurchaseSummary:
    """What a customer's prediction rests on, in the purchase models' terms (time in units
    of ``time_unit_days``): repeat purchase days, from the first to the last, from the first
    to the as-of day."""

    x: int
    t_x: float
    T: float


def customer_purchase_summary(
    *, customer_id: int, as_of: date, time_unit_days: float
) -> PurchaseSummary | None:
    """One customer's purchase summary up to ``as_of``, summed from their purchases as the
    nightly read sums a changed customer's (None without a sale by then, or when they are
    not profiled)."""
    until = _day_end(as_of)
    end = connection.ops.adapt_datetimefield_value(until)
    tz = timezone.get_current_timezone_name()
    totals = _stale_totals(np.array([customer_id]), tz=tz, end=end, until=until)
    if totals.empty:
        return None
    row = clv.rfm_from_totals(totals, as_of=as_of, time_unit_days=time_unit_days).iloc[0]
    return PurchaseSummary(x=int(row["x"]), t_x=float(row["t_x"]), T=float(row["T"]))


def segment_prediction_summary(*, segment: Segment) -> dict[str, float | int]:
    """A segment's members' expected value over the next 12 months, how many of them have a
    prediction, and how many are likely gone (less than even odds of still being customers)."""
    figures = CustomerPrediction.objects.filter(customer__membership__segment=segment).aggregate(
        customers=Count("pk"),
        value_12m=Sum("value_12m"),
        likely_gone=Count("pk", filter=Q(p_alive__lt=LIKELY_GONE_BELOW)),
        expected_purchases_90d=Sum("expected_purchases_90d"),
    )
    return {
        "customers": figures["customers"],
        "value_12m": float(figures["value_12m"] or 0),
        "likely_gone": figures["likely_gone"],
        "expected_purchases_90d": float(figures["expected_purchases_90d"] or 0),
    }


def predictions_exist() -> bool:
    """Whether a run has made predictions yet (it needs enough customers who bought twice)."""
    return CustomerPrediction.objects.exists()


def customers_slipping_away(*, limit: int = 20) -> QuerySet[CustomerPrediction]:
    """Customers with the most value at risk first: what their next 12 months would be worth
    if they are still customers, times the chance they are not (see CustomerPrediction).
    Customers the owner has been in touch with since the predictions were made (an activity
    since their as-of day) are left out: they are being handled."""
    as_of = CustomerPrediction.objects.values_list("as_of", flat=True).first()
    predictions = CustomerPrediction.objects.filter(value_at_risk__gt=0)
    if as_of is not None:
        handled = Activity.objects.filter(
            customer_id=OuterRef("customer_id"), happened_at__gte=day_start(as_of)
        )
        predictions = predictions.exclude(Exists(handled))
    return predictions.select_related("customer").order_by("-value_at_risk", "customer_id")[:limit]


def predictions_last_fit() -> dict | None:
    """The predictions record (SegmentationRun.predictions) of the last finished run whose
    models were fitted, for the next fits to start from; None before the first."""
    return (
        SegmentationRun.objects.predictions_fitted()
        .order_by("-finished_at", "-id")
        .values_list("predictions", flat=True)
        .first()
    )


# How many runs the predictions' track record looks back over, and the window it checks.
TRACK_RECORD_RUNS = 12
TRACK_RECORD_DAYS = 30


def repeat_purchase_days(*, after: date, until: date) -> int:
    """Purchase days (a customer's sales on one local day count once, as in the model) in
    (after, until], of customers who had bought by ``after``."""
    return (
        Purchase.objects.filter(
            kind=Purchase.Kind.SALE,
            purchased_at__gte=_day_end(after),
            purchased_at__lt=_day_end(until),
            customer__first_purchase_at__lt=_day_end(after),
        )
        .annotate(day=TruncDate("purchased_at", tzinfo=timezone.get_default_timezone()))
        .values("customer_id", "day")
        .distinct()
        .count()
    )


def predictions_track_record(*, runs: int = TRACK_RECORD_RUNS) -> list[dict]:
    """Predicted against actual repeat purchases, run by run: for each of the last runs whose
    predictions were fitted, the purchases expected in the 30 days after its as-of day and,
    once those days have passed, the purchase days that came (recorded on the run by
    segmentation.predictions; None while the window is still open). No aggregate here."""
    fitted = (
        SegmentationRun.objects.predictions_fitted()
        .filter(predictions__has_key="expected_purchases_30d_total")
        .order_by("-finished_at", "-id")
        .values_list("predictions", flat=True)[:runs]
    )
    return [
        {
            "as_of": record["as_of"],
            "predicted": record["expected_purchases_30d_total"],
            "actual": record.get("actual_purchases_30d"),
        }
        for record in reversed(list(fitted))
    ]
