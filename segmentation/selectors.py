"""Reads for segmentation: the per-customer feature frame (one SQL aggregate) and small lookups."""

import itertools
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time

import numpy as np
import pandas as pd
from django.db import connection, transaction
from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone

from crm.metrics import NPS_DETRACTOR_MAX, NPS_PROMOTER_MIN
from crm.models import Customer, Feedback, Purchase
from segmentation.features import MICROSECONDS_PER_DAY, RAW_COLUMNS
from segmentation.matching import PreviousSegment
from segmentation.models import (
    Membership,
    Segment,
    SegmentationRun,
    SegmentMembershipChange,
    SegmentTransition,
    moment_us,
)
from segmentation.pg_copy import EPOCH, SIGNATURE, copy_out
from segmentation.wording import run_outcome_words, run_phase_words, run_words

# Columns the engine consumes, in its order (pure module: numpy and pandas only).
FEATURE_COLUMNS = list(RAW_COLUMNS)
# Extra columns the service needs for per-segment figures (NPS is promoters minus
# detractors); the frame also gets the first and last sale (MOMENT_COLUMNS), worked out
# from tenure and recency after the read.
EXTRA_COLUMNS = ["nps_promoters", "nps_detractors"]
# And when the customer's purchases last changed (microseconds since 1970 UTC, NaN for
# never): the run's predictions judge by it which kept purchase days still hold
# (prediction_selectors.RunBuyers), without reading every customer again.
CHANGED_COLUMN = "purchases_changed_us"
_INT_COLUMNS = ("customer_id", "frequency", "rating_count", "nps_count", *EXTRA_COLUMNS)
# The two reads of customer_features: the customers, then their feedback.
_CUSTOMER_COLUMNS = [
    "customer_id",
    "frequency",
    "monetary_total",
    "recency_days",
    "tenure_days",
    "age",
    "income",
    CHANGED_COLUMN,
]
_FEEDBACK_COLUMNS = [
    "customer_id",
    "rating_mean",
    "rating_count",
    "nps_mean",
    "nps_count",
    *EXTRA_COLUMNS,
]
_DAY_SECONDS = 86_400.0
# PostgreSQL's binary moments count microseconds from its epoch; -infinity is the least int8.
_PG_EPOCH_US = moment_us(EPOCH)
_PG_MINUS_INFINITY = np.iinfo(np.int64).min
# SQLite's julianday() of 1970-01-01 00:00 UTC: days since 1970 are julianday() less this.
SQLITE_JULIAN_1970 = 2440587.5


def sqlite_moment_us(column: str) -> str:
    """A SQLite expression: the stored moment ``column`` as float microseconds since 1970
    UTC (NULL stays NULL). SQLite's date functions keep a moment to the millisecond."""
    return f"(julianday({column}) - {SQLITE_JULIAN_1970}) * {MICROSECONDS_PER_DAY:.1f}"


@dataclass
class FeatureFrame:
    """The raw feature frame of one run and what it cost to get it."""

    frame: pd.DataFrame
    timings: dict[str, float] = field(default_factory=dict)


def _feature_sql(
    *, reference_time: datetime, vendor: str, until: datetime | None = None
) -> tuple[str, str]:
    """The feature queries: the customers' purchase figures and attributes, then their
    feedback (customer_features puts them together). Sales count; refunds are subtracted
    from the total only.

    Today's run reads each customer's purchase figures as kept on the customer
    (crm.services.customer_stats_refresh runs after every write of purchases, with these
    very rules), so a nightly run does not add up every purchase again. A run as of a past
    day cannot use them and aggregates the purchases up to that day.

    The covering index on purchases (customer_id, purchased_at, amount) serves the GROUP BY
    without table lookups; it does not hold `kind`, so refunds (rare) are aggregated on
    their own through their partial index and taken off the all-purchases figures. Only
    when a customer's first or last purchase is a refund do we look their sales up again.
    """
    purchase = Purchase._meta.db_table
    feedback = Feedback._meta.db_table
    customer = Customer._meta.db_table
    refund = Purchase.Kind.REFUND
    ref_utc = reference_time.astimezone(UTC)
    # An as-of run sees purchases and feedback before ``until`` only (and nothing when None).
    before = ""
    if until is not None:
        until = until.replace(microsecond=0)
        until_utc = until.astimezone(UTC)
        before = (
            f"'{until_utc.isoformat()}'::timestamptz"
            if vendor == "postgresql"
            # As Django stores a whole second on SQLite (no fraction): text compares in order.
            else f"'{until_utc.strftime('%Y-%m-%d %H:%M:%S')}'"
        )

    def cut(column: str, joiner: str = "AND") -> str:
        return f" {joiner} {column} < {before}" if before else ""

    if vendor == "postgresql":
        ref = f"'{ref_utc.isoformat()}'::timestamptz"

        # date_part and float8 arithmetic: EXTRACT and these divisions would be numeric,
        # several times slower over a million rows.
        def days_since(column: str) -> str:
            return f"date_part('epoch', {ref} - {column}) / {_DAY_SECONDS}::float8"

        age = f"(({ref})::date - c.birth_date) / 365.25::float8"
        false = "FALSE"
        # As stored: 8 bytes of microseconds since 2000 (no conversion per row), never NULL.
        changed = "COALESCE(c.purchases_changed_at, '-infinity'::timestamptz)"
    else:
        ref = f"'{ref_utc.strftime('%Y-%m-%d %H:%M:%S.%f')}'"

        def days_since(column: str) -> str:
            return f"(julianday({ref}) - julianday({column}))"

        age = f"(julianday(date({ref})) - julianday(c.birth_date)) / 365.25"
        false = "0"
        changed = sqlite_moment_us("c.purchases_changed_at")

    def sale_bound(func: str, alias: str) -> str:
        # The all-purchases bound is a sale unless a refund sits exactly on or beyond it.
        op = "<=" if func == "MIN" else ">="
        return (
            f"(CASE WHEN r.{alias} IS NOT NULL AND r.{alias} {op} p.{alias} THEN "
            f"(SELECT {func}(s.purchased_at) FROM {purchase} s "
            f"WHERE s.customer_id = c.id AND s.kind <> '{refund}'{cut('s.purchased_at')}) "
            f"ELSE p.{alias} END)"
        )

    if vendor == "postgresql":
        # Every column a fixed-width, non-NULL float8 or int8 (NULL becomes NaN), so the
        # binary COPY rows have one size and numpy reads them without parsing.
        def real(expr: str) -> str:
            return f"COALESCE(({expr})::float8, 'NaN'::float8)"

        def count(expr: str) -> str:
            return f"({expr})::int8"
    else:

        def real(expr: str) -> str:
            return expr

        count = real

    if until is None:
        # The kept figures: sales only, refunds taken off the total, first and last sale.
        purchases = {
            "frequency": "c.purchase_count",
            "monetary_total": "c.total_spent",
            "recency_days": days_since("c.last_purchase_at"),
            "tenure_days": days_since("c.first_purchase_at"),
        }
        joins, bought = "", "c.purchase_count > 0"
    else:
        purchases = {
            "frequency": "p.n - COALESCE(r.n, 0)",
            "monetary_total": "p.total - 2 * COALESCE(r.total, 0)",
            "recency_days": days_since(sale_bound("MAX", "last_at")),
            "tenure_days": days_since(sale_bound("MIN", "first_at")),
        }
        joins = f"""
        JOIN (
            SELECT customer_id, COUNT(*) AS n, SUM(amount) AS total,
                   MIN(purchased_at) AS first_at, MAX(purchased_at) AS last_at
            FROM {purchase}{cut("purchased_at", "WHERE")} GROUP BY customer_id
        ) p ON p.customer_id = c.id
        LEFT JOIN (
            SELECT customer_id, COUNT(*) AS n, SUM(amount) AS total,
                   MIN(purchased_at) AS first_at, MAX(purchased_at) AS last_at
            FROM {purchase} WHERE kind = '{refund}'{cut("purchased_at")} GROUP BY customer_id
        ) r ON r.customer_id = c.id"""
        bought = "p.n > COALESCE(r.n, 0)"
    sql = f"""
        SELECT {count("c.id")} AS customer_id,
               {count(purchases["frequency"])} AS frequency,
               {real(purchases["monetary_total"])} AS monetary_total,
               {real(purchases["recency_days"])} AS recency_days,
               {real(purchases["tenure_days"])} AS tenure_days,
               {real(f"CASE WHEN c.birth_date IS NOT NULL THEN {age} ELSE c.age END")} AS age,
               {real("c.annual_income")} AS income,
               {changed} AS {CHANGED_COLUMN}
        FROM {customer} c{joins}
        WHERE c.is_archived = {false} AND c.profiling_opt_out = {false}
          AND {bought}
        ORDER BY c.id
    """
    # The feedback on its own: one customer in seven has any, so joining it to every row
    # sent six columns of NULLs and zeros for the others (on SQLite a third of the read).
    feedback_sql = f"""
        SELECT {count("customer_id")} AS customer_id,
               {real("AVG(rating * 1.0)")} AS rating_mean,
               {count("COUNT(rating)")} AS rating_count,
               {real("AVG(nps * 1.0)")} AS nps_mean,
               {count("COUNT(nps)")} AS nps_count,
               {count(f"SUM(CASE WHEN nps >= {NPS_PROMOTER_MIN:d} THEN 1 ELSE 0 END)")}
                   AS nps_promoters,
               {count(f"SUM(CASE WHEN nps <= {NPS_DETRACTOR_MAX:d} THEN 1 ELSE 0 END)")}
                   AS nps_detractors
        FROM {feedback}{cut("created_at", "WHERE")}
        GROUP BY customer_id
        ORDER BY customer_id
    """
    return sql, feedback_sql


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    for column in frame.columns:
        if column in _INT_COLUMNS:
            frame[column] = frame[column].astype(np.int64)
        else:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(np.float64)
    return frame


# For this one query on PostgreSQL: the planner underestimates the number of customers in the
# purchase table and picks a hash aggregate that spills to disk; a streaming GroupAggregate
# over the covering index (already in customer order, so the joins merge) is 2-3x faster
# here. No parallel workers: on a small machine they fight the web for the same cores, and
# no JIT: compiling costs more than it saves for a query this simple.
_PLANNER_SETTINGS = {
    "enable_hashagg": "off",
    "max_parallel_workers_per_gather": "0",
    "jit": "off",
    # Purchases are stored roughly in customer order, so the planner rates a plain scan of
    # the customer_id index (with a table lookup per purchase) cheaper than the index-only
    # scan of the covering index; on SSDs the lookups are not that cheap: 25 s against 6 s
    # at 10M purchases here. An SSD-like page cost lets it pick the covering index.
    "random_page_cost": "1.1",
    # The planner also underestimates the customers coming out of the aggregate (63,900
    # for 950,000 at 10M skewed purchases), so it hashes them, spills, then sorts again
    # for the feedback: 9.1 s against 5.7 s for merge joins over inputs already in
    # customer order.
    "enable_hashjoin": "off",
}


def planner_settings_set(cur, settings: dict[str, str]) -> dict[str, str]:
    """Set planner settings for the current transaction; returns the previous values."""
    previous = {}
    for name, value in settings.items():
        cur.execute("SELECT current_setting(%s), set_config(%s, %s, true)", [name, name, value])
        previous[name] = cur.fetchone()[0]
    return previous


def customer_features(*, reference_time: datetime, as_of: date | None = None) -> FeatureFrame:
    """One row per profiled customer (not archived, not opted out) with at least one sale.

    Columns FEATURE_COLUMNS (the engine's RAW_COLUMNS), EXTRA_COLUMNS and CHANGED_COLUMN,
    sorted by customer id. With ``as_of``, only purchases and feedback up to and including
    that day (the business's local date) count, aggregated from the purchases; without, the
    purchase figures kept on each customer are read (see _feature_sql). Two queries in the database,
    the customers and their feedback; PostgreSQL streams each with a binary COPY that numpy
    decodes, SQLite fetches their rows into numpy.
    """
    until = _day_end(as_of) if as_of else None
    started = time.perf_counter()
    sql, feedback_sql = _feature_sql(
        reference_time=reference_time, vendor=connection.vendor, until=until
    )
    # PostgreSQL: a transaction scopes the planner settings. Not SQLite: there BEGIN takes the
    # write lock (IMMEDIATE mode) and a read needs no transaction.
    scope = transaction.atomic() if connection.vendor == "postgresql" else nullcontext()
    with scope, connection.cursor() as cur:
        if connection.vendor == "postgresql":
            saved = planner_settings_set(cur, _PLANNER_SETTINGS)
            buffers = copy_out(cur, sql), copy_out(cur, feedback_sql)
            # Rows stream out as the aggregate produces them, so the queries are timed to
            # their last row; the transfer is what is left: decoding them.
            queried = time.perf_counter()
            planner_settings_set(cur, saved)
            frame = _binary_rows_frame(
                buffers[0], _CUSTOMER_COLUMNS, int_columns=(*_INT_COLUMNS, CHANGED_COLUMN)
            )
            frame[CHANGED_COLUMN] = _pg_moments_us(frame[CHANGED_COLUMN].to_numpy())
            feedback = _binary_rows_frame(buffers[1], _FEEDBACK_COLUMNS)
            del buffers
        else:
            cur.execute(feedback_sql)
            feedback = _float_rows_frame(cur.fetchall(), _FEEDBACK_COLUMNS)
            cur.execute(sql)
            queried = time.perf_counter()
            frame = _float_rows_frame(cur.fetchall(), _CUSTOMER_COLUMNS)
    frame = _with_feedback(frame, feedback)[FEATURE_COLUMNS + EXTRA_COLUMNS + [CHANGED_COLUMN]]
    frame = _with_moments(_typed(frame), reference_time=reference_time)
    done = time.perf_counter()
    return FeatureFrame(
        frame=frame, timings={"feature_query": queried - started, "transfer": done - queried}
    )


def _pg_moments_us(stored: np.ndarray) -> np.ndarray:
    """PostgreSQL's binary moments (int8 microseconds since 2000, -infinity for none) as
    float microseconds since 1970, NaN for none: exact to the microsecond until 2255."""
    moments = (stored + _PG_EPOCH_US).astype(np.float64)
    moments[stored == _PG_MINUS_INFINITY] = np.nan
    return moments


def _float_rows_frame(rows: list[tuple], columns: list[str]) -> pd.DataFrame:
    # Every column is numeric: one float matrix (NULL becomes NaN) is the fastest way into
    # pandas; ids and counts are cast back to integers by _typed.
    return pd.DataFrame(rows_matrix(rows, len(columns), np.float64), columns=columns)


def rows_matrix(rows: list[tuple], width: int, dtype) -> np.ndarray:
    """Fetched rows of ``width`` numbers as one (rows, width) matrix: float NULL becomes
    NaN, an integer NULL is an error. The values are streamed into numpy one after
    another: np.array over the list of tuples took twice as long (1M rows of three ints
    0.16-0.28 s against 0.08-0.12 s; of eight floats 0.31-0.50 s against 0.18-0.30 s)."""
    values = itertools.chain.from_iterable(rows)
    return np.fromiter(values, dtype=dtype, count=len(rows) * width).reshape(len(rows), width)


def _with_feedback(frame: pd.DataFrame, feedback: pd.DataFrame) -> pd.DataFrame:
    """The customers' frame with their feedback figures beside them (``feedback`` keyed by
    customer id): customers without feedback get no means (NaN) and counts of 0."""
    absent = {c: np.nan if c.endswith("_mean") else 0.0 for c in _FEEDBACK_COLUMNS[1:]}
    ids = frame["customer_id"].to_numpy(np.int64)
    return frame.assign(**_by_customer_id(ids, feedback, "customer_id", absent))


def _with_moments(frame: pd.DataFrame, *, reference_time: datetime) -> pd.DataFrame:
    """The frame with the first and last sale (MOMENT_COLUMNS, microseconds since 1970 UTC)
    counted back from the reference time by tenure and recency, to the whole second: the
    same number at every run while the sale is the same (the days carry at most tens of
    microseconds of float error), with no date arithmetic per row in the database."""
    reference = reference_time.timestamp()
    for column, days in (
        ("first_purchase_us", "tenure_days"),
        ("last_purchase_us", "recency_days"),
    ):
        seconds = np.rint(reference - frame[days].to_numpy() * _DAY_SECONDS)
        frame[column] = seconds.astype(np.int64) * 1_000_000
    return frame


def _binary_rows_frame(
    buffer: bytearray, columns: list[str], int_columns=_INT_COLUMNS
) -> pd.DataFrame:
    """A query's binary COPY output as a frame, decoded by numpy in one pass.

    Every row has len(columns) non-NULL 8-byte fields (int8 for ``int_columns``, float8
    otherwise; see _feature_sql).
    """
    kinds = {name: ">i8" if name in int_columns else ">f8" for name in columns}
    rows = binary_fixed_rows(buffer, kinds)
    return pd.DataFrame({c: rows[c].astype(rows[c].dtype.newbyteorder("=")) for c in columns})


def binary_fixed_rows(buffer: bytearray, kinds: dict[str, str]) -> np.ndarray:
    """A binary COPY whose rows are fixed-size records, as a numpy record array: each row a
    field count, then a length and a big-endian value per field, typed by ``kinds`` (column
    -> numpy type, ">i8", ">i4", ">f8"...). A NULL or a field of another width is refused."""
    fields = [("fields", ">i2")]
    for name, kind in kinds.items():
        fields += [(f"{name}__len", ">i4"), (name, kind)]
    row = np.dtype(fields)
    signature = SIGNATURE
    if not buffer.startswith(signature):
        raise ValueError("The query did not return PostgreSQL's binary COPY format.")
    extension = int.from_bytes(buffer[len(signature) + 4 : len(signature) + 8], "big")
    start = len(signature) + 8 + extension
    body = len(buffer) - start - 2  # the trailer: a field count of -1
    if body < 0 or body % row.itemsize:
        raise ValueError("The query returned rows of an unexpected size.")
    rows = np.frombuffer(buffer, dtype=row, count=body // row.itemsize, offset=start)
    if len(rows) and (
        (rows["fields"] != len(kinds)).any()
        or any(
            (rows[f"{name}__len"] != np.dtype(kind).itemsize).any() for name, kind in kinds.items()
        )
    ):
        raise ValueError("The query returned a NULL or a field of unexpected width.")
    return rows


def _int_columns(sql: str, columns: list[str]) -> dict[str, np.ndarray]:
    """A query of int8 columns (no NULL) as numpy arrays, in the order the query gives its
    rows: binary COPY on PostgreSQL, one text on SQLite (sqlite_int_rows)."""
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            frame = _binary_rows_frame(copy_out(cur, sql), columns, int_columns=set(columns))
            return {c: frame[c].to_numpy(np.int64) for c in columns}
    rows = sqlite_int_rows(sql, len(columns))
    return {c: np.ascontiguousarray(rows[:, i]) for i, c in enumerate(columns)}


def sqlite_int_rows(sql: str, width: int) -> np.ndarray:
    """A SQLite query of ``width`` integer columns as a (rows, width) matrix. SQLite writes
    every row into one text of comma-separated numbers that numpy parses: fetching a row
    costs a Python tuple and an object per value, three to four times as long (a million
    ids 0.09 s against 0.33 s; a million rows of two 0.24 s against 0.47 s). A NULL would
    drop its whole row from the text: the count read beside it tells, and it is an error.
    A text holds up to SQLite's limit of a billion bytes: some fifty million rows of two."""
    names = [f"c{i}" for i in range(width)]
    joined = " || ',' || ".join(names)
    with connection.cursor() as cur:
        cur.execute(
            f"WITH q({', '.join(names)}) AS ({sql}) SELECT group_concat({joined}), COUNT(*) FROM q"
        )
        text, count = cur.fetchone()
    values = np.fromstring(text or "", sep=",", dtype=np.int64)
    if len(values) != count * width:
        raise ValueError("The query returned a NULL or a value that is not a whole number.")
    return values.reshape(count, width)


# The staging read of the memberships on PostgreSQL: no JIT or parallel workers for a plain
# read on a small machine (_PLANNER_SETTINGS).
_STAGING_READ_SETTINGS = {
    "jit": "off",
    "max_parallel_workers_per_gather": "0",
}


def customer_ids() -> np.ndarray:
    """Every customer id, in id order: a read of the primary key's index alone. PostgreSQL
    sends them as one value, 8 bytes an id (a row each costs the client half a second per
    million)."""
    table = Customer._meta.db_table
    if connection.vendor != "postgresql":
        # Unordered, SQLite reads them from its narrowest index instead of the whole table,
        # and numpy sorts them (0.09 s at 1M).
        return np.sort(_int_columns(f"SELECT id FROM {table}", ["id"])["id"])
    with connection.cursor() as cur:
        cur.execute(
            "SELECT string_agg(int8send(id), ''::bytea) "
            f"FROM (SELECT id FROM {table} ORDER BY id) ids"
        )
        packed = cur.fetchone()[0]
    return np.frombuffer(packed or b"", dtype=">i8").astype(np.int64)


def customers_all_there(ids: np.ndarray) -> bool:
    """Whether every customer of ``ids`` (sorted, distinct: the ids one read found) still
    exists: as many customers up to the largest of them, with the same sum of ids. A
    customer added since gets a larger id (a smaller one, given by hand or committed late,
    makes the figures differ: then False). A deletion hides only behind additions of smaller
    ids with exactly the same count and sum; the daily sweep catches what that leaves."""
    if not len(ids):
        return True
    table = Customer._meta.db_table
    # On SQLite "+id" keeps the primary key out of the plan: counting along the narrowest
    # index took 0.08 s at 1M, along the table's own ids 0.14-0.19 s.
    column = "id" if connection.vendor == "postgresql" else "+id"
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT COUNT(*), COALESCE(SUM(id), 0) FROM {table} WHERE {column} <= %s",
            [int(ids[-1])],
        )
        count, total = cur.fetchone()
    return int(count) == len(ids) and int(total) == int(ids.sum())


# The archived and opted-out customers with their flags (0/1), as the label staging reads
# them: the condition is their partial index's, word for word, so that the index is used.
NOT_PROFILED_SQL = (
    "SELECT CAST(id AS BIGINT), "
    "CAST(CASE WHEN is_archived THEN 1 ELSE 0 END AS BIGINT), "
    "CAST(CASE WHEN profiling_opt_out THEN 1 ELSE 0 END AS BIGINT) "
    "FROM {customer} WHERE is_archived OR profiling_opt_out"
)
# The flags of a customer the staging's read of archived or opted-out customers did not find.
_NOT_FLAGGED = {"is_archived": 0, "profiling_opt_out": 0}


def customer_flags_and_memberships(*, reasons_table: str) -> dict[str, np.ndarray]:
    """Every customer, sorted by id, with what a run's label staging compares: is_archived
    and profiling_opt_out (0/1); has_membership (0/1), whether they have an unpinned
    membership (a pinned one reads as none: runs leave it alone); its segment (-1 for none)
    and its reason as a number of ``reasons_table`` (id, reason; one row per text), -1000
    when not there or without a membership.

    The few archived or opted-out customers are read on their own, from their partial index
    (crm's customer_not_profiled_idx: 0.004 s at 1M on SQLite, where a scan of the customers
    took 0.12 s): merged in the database, the customers' table was read whole for two flags
    that are almost always false.
    Then every customer id (an index alone) and the unpinned memberships apart, put
    together by id in numpy (_memberships_by_customer). Read alone at 1M on PostgreSQL,
    1.8-2.3 s against 1.2-1.5 s for both in one join; on SQLite the same either way
    (1.38-1.42 s against 1.41-1.43 s: the values fetched are the cost). The reads need no
    common snapshot: a customer added or deleted between them is judged as the staging
    always did (a membership without its customer is left out; a customer read without one
    is staged).
    """
    customer = Customer._meta.db_table
    membership = Membership._meta.db_table
    flagged = _int_columns(
        NOT_PROFILED_SQL.format(customer=customer), ["id", "is_archived", "profiling_opt_out"]
    )
    ids = customer_ids()
    # The memberships in the table's own order; numpy puts them in customer order
    # (_by_customer_id).
    if connection.vendor != "postgresql":
        # SQLite matches each reason to the run's sentences by its text in the scan (0.19 s
        # of its 0.62 s at 1M).
        placed = _int_columns(
            "SELECT m.customer_id, COALESCE(m.segment_id, -1), COALESCE(r.id, -1000) "
            f"FROM {membership} m LEFT JOIN {reasons_table} r ON r.reason = m.reason "
            "WHERE NOT m.pinned",
            ["customer_id", "segment_id", "reason_id"],
        )
        return _memberships_by_customer(ids, flagged, placed)
    # PostgreSQL reads each reason as a 64-bit hash of its text that numpy looks up among the
    # hashes of the run's sentences (_reason_numbers). At a million, walking the primary key
    # in order took 0.82-1.48 s (more as nightly updates move rows), a plain scan
    # 0.75-0.82 s, sorting included; joining the sentences' table by text cost the database
    # 0.30 s of it, the hash 0.22 s.
    memberships_sql = (
        "SELECT CAST(customer_id AS BIGINT), CAST(COALESCE(segment_id, -1) AS BIGINT), "
        f"hashtextextended(reason, 0) FROM {membership} WHERE NOT pinned"
    )
    # A transaction scopes the planner settings (see customer_features).
    with transaction.atomic(), connection.cursor() as cur:
        saved = planner_settings_set(cur, _STAGING_READ_SETTINGS)
        placed = _int_columns(memberships_sql, ["customer_id", "segment_id", "reason_hash"])
        planner_settings_set(cur, saved)
        sentences = _int_columns(
            f"SELECT CAST(id AS BIGINT), hashtextextended(reason, 0) FROM {reasons_table}",
            ["id", "reason_hash"],
        )
    placed["reason_id"] = _reason_numbers(placed.pop("reason_hash"), sentences)
    return _memberships_by_customer(ids, flagged, placed)


def _reason_numbers(hashes: np.ndarray, sentences: dict[str, np.ndarray]) -> np.ndarray:
    """The number of the run's sentence each reason hash stands for, -1000 for none.

    Two different texts share a 64-bit hash with a chance of one in 2**64 a pair: a
    customer's old reason taken for one of the run's few sentences would keep its old text
    until it next changes. Two of the run's own sentences sharing one are matched to
    neither, so their customers are written again."""
    keys = pd.Index(sentences["reason_hash"])
    shared = keys.duplicated(keep=False)
    keys, ids = keys[~shared], sentences["id"][~shared]
    # -1, "not there", picks the -1000 put after the numbers.
    return np.append(ids, -1000).astype(np.int64)[keys.get_indexer(hashes)]


def _memberships_by_customer(
    ids: np.ndarray, flagged: dict[str, np.ndarray], placed: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """customer_flags_and_memberships' columns along the sorted ``ids``, from the flagged
    customers and the unpinned memberships (``placed``) in whatever order they were read."""
    placed = {**placed, "has_membership": np.ones(len(placed["customer_id"]), dtype=np.int64)}
    return {
        "id": ids,
        **_by_customer_id(ids, flagged, "id", _NOT_FLAGGED),
        **_by_customer_id(
            ids, placed, "customer_id", {"has_membership": 0, "segment_id": -1, "reason_id": -1000}
        ),
    }


def _by_customer_id(ids: np.ndarray, rows, key: str, absent: dict) -> dict[str, np.ndarray]:
    """The columns ``absent`` names of ``rows`` (arrays or a frame, keyed by their column
    ``key``) laid out along the sorted ``ids``; an id without a row gets the column's value
    in ``absent`` (whose type the column takes), a row whose id is not among ``ids`` is
    left out."""
    # Sorted already, unless a plan did not keep the order.
    order = np.argsort(np.asarray(rows[key]), kind="stable")
    keys = np.asarray(rows[key]).astype(np.int64)[order]
    position = np.searchsorted(ids, keys)
    found = position < len(ids)
    found[found] = ids[position[found]] == keys[found]
    laid_out = {}
    for column, default in absent.items():
        values = np.full(len(ids), default)
        values[position[found]] = np.asarray(rows[column])[order][found]
        laid_out[column] = values
    return laid_out


@dataclass(frozen=True)
class CustomerCounts:
    total: int  # not archived
    opted_out: int
    pinned: int

    @classmethod
    def of_flags(
        cls, is_archived: np.ndarray, profiling_opt_out: np.ndarray, *, pinned: int
    ) -> "CustomerCounts":
        """The counts of customer_counts() from every customer's two flags (0 or 1), read
        already by the caller (the label staging)."""
        active = is_archived == 0
        return cls(
            total=int(active.sum()),
            opted_out=int((active & (profiling_opt_out == 1)).sum()),
            pinned=pinned,
        )


def customer_counts(*, pinned: int) -> CustomerCounts:
    """Counts the run records besides the clustered customers (one query); ``pinned`` is
    the number of the run's pinned_segments(), which the run reads anyway."""
    figures = Customer.objects.active().aggregate(
        total=Count("id"), opted_out=Count("id", filter=Q(profiling_opt_out=True))
    )
    return CustomerCounts(**figures, pinned=pinned)


def pinned_segments() -> dict[int, int | None]:
    """Pinned (not archived) customers and the segment they are pinned to.

    Read from the pinned memberships' own index, the archived customers left out by a
    list of them (a few). Joined to the customers instead, SQLite walked every customer
    and looked each one's membership up: 0.22-0.28 s at 100,000 customers, every run, for
    no pinned customer at all; this takes a millisecond."""
    archived = Customer.objects.filter(is_archived=True).values("id")
    pinned = Membership.objects.filter(pinned=True).exclude(customer_id__in=archived)
    return dict(pinned.values_list("customer_id", "segment_id"))


def previous_tree_thresholds() -> dict[str, list[float]]:
    """The split values of the last succeeded run's reason tree, per column (none before)."""
    last = SegmentationRun.objects.succeeded().order_by("-finished_at", "-id").first()
    thresholds = (last.params or {}).get("tree_thresholds") if last else None
    if not isinstance(thresholds, dict):
        return {}
    return {
        str(column): [float(v) for v in values]
        for column, values in thresholds.items()
        if isinstance(values, list)
    }


def previous_segments() -> list:
    """The active clustered segments as the engine's PreviousSegment, for stable identities."""
    out = []
    for seg in Segment.objects.active().filter(kind=Segment.Kind.CLUSTER).order_by("id"):
        if isinstance(seg.centroid, dict) and seg.centroid:
            centroid = {str(k): float(v) for k, v in seg.centroid.items()}
            out.append(
                PreviousSegment(
                    segment_id=seg.pk, name=seg.auto_name or seg.name, centroid=centroid
                )
            )
    return out


def segmentation_run_active() -> SegmentationRun | None:
    """The run holding the one-run-at-a-time slot, if any."""
    return SegmentationRun.objects.filter(active_slot__isnull=False).first()


def segmentation_run_last_finished() -> SegmentationRun | None:
    """The last run that finished (succeeded, failed or rejected), for the admin status line."""
    return (
        SegmentationRun.objects.filter(finished_at__isnull=False)
        .exclude(status=SegmentationRun.Status.SKIPPED)
        .order_by("-finished_at", "-id")
        .first()
    )


def segment_transitions(*, run: SegmentationRun) -> QuerySet[SegmentTransition]:
    """What moved in a run, largest flows first."""
    return run.transitions.select_related("from_segment", "to_segment").order_by("-count", "id")


def customer_membership(*, customer: Customer) -> Membership | None:
    """The customer's current segment membership (segment, reason, pin), or None.

    No query when the customer was read with select_related("membership__segment").
    """
    try:
        return customer.membership
    except Membership.DoesNotExist:
        return None


def customer_segment_history(
    *, customer: Customer, limit: int = 20
) -> QuerySet[SegmentMembershipChange]:
    """The customer's latest segment changes, newest first, with their segments and run."""
    return (
        SegmentMembershipChange.objects.filter(customer=customer)
        .select_related("from_segment", "to_segment", "run")
        .order_by("-changed_at", "-id")[:limit]
    )


def segment_movers(
    *, run: SegmentationRun, from_segment_id: int | None, to_segment_id: int, limit: int
) -> QuerySet[SegmentMembershipChange]:
    """A few customers a run moved from one segment to another, with the customer.

    Unordered, through the (run, to_segment) index, so the query stops at the first matches.
    """
    return (
        SegmentMembershipChange.objects.filter(
            run=run, from_segment_id=from_segment_id, to_segment_id=to_segment_id
        )
        .select_related("customer")
        .order_by()[:limit]
    )


def segment_arrivals(
    *, run: SegmentationRun, segment_ids: list[int]
) -> QuerySet[SegmentMembershipChange]:
    """Customers the run moved into one of these segments from another segment (a first
    assignment is not a move), still there and not archived, biggest spenders first.

    Read through the (run, to_segment) index: the cost follows how many customers the run
    moved into those segments, not the number of customers.
    """
    return (
        SegmentMembershipChange.objects.filter(
            run=run,
            to_segment_id__in=segment_ids,
            customer__membership__segment_id=F("to_segment_id"),
        )
        .exclude(from_segment_id__in=segment_ids)
        .exclude(from_segment__isnull=True)
        .filter(customer__is_archived=False)
        .select_related("customer", "customer__membership__segment", "from_segment")
        .order_by("-customer__total_spent", "-customer_id")
    )


def run_latest() -> SegmentationRun | None:
    """The last succeeded run: the one whose segments the pages show."""
    return SegmentationRun.objects.latest_succeeded()


def run_previous(*, run: SegmentationRun | None) -> SegmentationRun | None:
    """The succeeded run before ``run``."""
    if run is None:
        return None
    return (
        SegmentationRun.objects.succeeded()
        .filter(Q(finished_at__lt=run.finished_at) | Q(finished_at=run.finished_at, pk__lt=run.pk))
        .order_by("-finished_at", "-id")
        .first()
    )


# --- Customer predictions -------------------------------------------------------------------


def day_start(day: date) -> datetime:
    """The first moment of ``day`` in the business's time zone (settings.TIME_ZONE)."""
    return timezone.make_aware(datetime.combine(day, dt_time.min), timezone.get_default_timezone())


def _day_end(day: date) -> datetime:
    """The first moment after ``day`` in the business's time zone."""
    return day_start(day + timedelta(days=1))


def run_owner_words(*, run: SegmentationRun | None) -> list[str]:
    """The owner's sentences about a run: how confident it is and how distinct its groups
    are (the technical figures stay on the run's admin page)."""
    if run is None or not run.confidence:
        return []
    return run_words(
        n_customers=run.n_clustered,
        silhouette=run.silhouette,
        confidence=run.confidence,
        scoring=run.method == SegmentationRun.Method.RFM,
    )


@dataclass(frozen=True)
class RunProgress:
    """Where a run stands, for the pages that watch it: a percent and one sentence."""

    run_id: int
    title: str  # "Run #5", or "Run #5 as of 9 Dec 2011"
    status: str
    active: bool
    percent: int
    words: str

    def as_json(self) -> dict:
        return {
            "run": self.run_id,
            "title": self.title,
            "status": self.status,
            "active": self.active,
            "percent": self.percent,
            "words": self.words,
        }


def run_progress(*, run: SegmentationRun) -> RunProgress:
    """A run's progress while it is pending or running, its outcome once it has ended."""
    active = run.status in (SegmentationRun.Status.PENDING, SegmentationRun.Status.RUNNING)
    if active:
        percent = max(0, min(100, run.progress))
        words = run_phase_words(phase=run.phase, percent=percent)
    else:
        percent = 100 if run.status == SegmentationRun.Status.SUCCEEDED else run.progress
        words = run_outcome_words(
            status=run.status,
            error=run.error,
            n_clustered=run.n_clustered,
            k=run.k,
            n_moved=run.n_moved,
            first=run.status == SegmentationRun.Status.SUCCEEDED
            and run.finished_at is not None
            and run_previous(run=run) is None,
        )
    title = f"Run #{run.pk}"
    if run.as_of:
        title += f" as of {run.as_of.day} {run.as_of:%b %Y}"
    return RunProgress(
        run_id=run.pk, title=title, status=run.status, active=active, percent=percent, words=words
    )


def run_watched(*, run_id: int | None) -> SegmentationRun | None:
    """The run a page follows: the one in progress, else the one just started from this
    session (which may have ended before the page was drawn)."""
    active = segmentation_run_active()
    if active is not None:
        return active
    if run_id is None:
        return None
    return SegmentationRun.objects.filter(pk=run_id).first()


def segments_empty_words() -> str:
    """What the segment list says while it has no segment: what will fill it."""
    if segmentation_run_active() is not None:
        return "A segmentation run is grouping your customers: segments appear when it ends."
    if not Customer.objects.exists():
        return "No segments yet: import customers, then run a segmentation from the dashboard."
    return "No segments yet: run a segmentation from the dashboard."


def run_failed_since(*, run: SegmentationRun | None) -> SegmentationRun | None:
    """The last run, when it ended without new segments after ``run`` (the one the pages
    show): pages say so instead of only "segments last updated…"."""
    last = segmentation_run_last_finished()
    if last is None or last.status == SegmentationRun.Status.SUCCEEDED:
        return None
    if run is not None and (last.finished_at, last.pk) < (run.finished_at, run.pk):
        return None
    return last
