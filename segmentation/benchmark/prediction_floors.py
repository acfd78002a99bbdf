"""The predictions' honest floor: what a run must read, compute and keep for every
customer's predictions, the cheapest known way, written apart from the product's own read
and scores.

What the product must produce, and so what the floor does: the purchase models count the
days a customer bought on in the business's time zone (a second order on the same day is
not a repeat purchase), leave refunds and archived or opted-out customers out, and every
customer's row holds the chance they are still a customer, the purchases expected in 30, 90
and 365 days, the order value, the next year's worth and the worth at risk, which Today
lists by an index. A first run keeps each customer's purchase-day figures, so the nightly
run reads them instead of every purchase again.

The previous floor (floors.predictions_floor, still timed for comparison) counted
transactions instead of days, scored one horizon, loaded four columns with no index and
did not time any read: less than the product must do.
"""

import itertools
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import connection, models, transaction
from django.utils import timezone
from scipy.optimize import minimize
from scipy.special import hyp2f1

from crm.models import Customer, Purchase
from segmentation import clv
from segmentation.benchmark.floors import (
    bgnbd_negative_ll,
    binary_copy_in,
    binary_copy_out,
    gamma_gamma_negative_ll,
    secondary_index_sql,
)
from segmentation.models import CustomerPrediction, CustomerPurchaseDays
from segmentation.selectors import day_start

DAY_COLUMNS = ("customer_id", "days", "first_day", "last_day", "total", "first_total")
HORIZONS = (30, 90, 365)  # days of the expected purchases the predictions store
# The figures the predictions store, as the model declares them.
_PREDICTION_FIGURES = tuple(
    f.column for f in CustomerPrediction._meta.concrete_fields if isinstance(f, models.FloatField)
)


@dataclass
class DayFigures:
    """Per profiled customer with a sale: the DAY_COLUMNS (days as datetime64[D])."""

    frame: pd.DataFrame
    seconds: float
    how: str
    feature_customers: int = 0  # customers whose feature figures the same read summed
    timed: dict | None = None  # each way's seconds, where several were timed


def business_today() -> date:
    return timezone.localdate()


def _day_end(day: date) -> datetime:
    """The first moment after ``day`` in the business's time zone."""
    return day_start(day + timedelta(days=1))


def _not_profiled_ids() -> np.ndarray:
    """Archived and opted-out customers: the models leave them out (a few per cent)."""
    ids = Customer.objects.filter(is_archived=True) | Customer.objects.filter(
        profiling_opt_out=True
    )
    # No order: in the customers' default order SQLite walks the creation index and looks up
    # every customer (2.8 s at 1M, against 0.35 s for one pass over the table).
    return np.fromiter(ids.order_by().values_list("id", flat=True), dtype=np.int64)


# One statement: each customer's local days (every purchase, for the features' count, sum,
# first and last moment), then per customer the days with a sale, their span and totals, the
# first sale day's total by a window over the customer's days. FILTER keeps refunds out of
# the sale days without a second pass.
_DAYS_SQL_POSTGRESQL = """
    SELECT w.customer_id, SUM(w.n)::int8, SUM(w.amount)::float8,
           date_part('epoch', MIN(w.first_at)), date_part('epoch', MAX(w.last_at)),
           (COUNT(*) FILTER (WHERE w.sales > 0))::int8,
           COALESCE(MIN(w.day) FILTER (WHERE w.sales > 0) - DATE '1970-01-01', -1)::int8,
           COALESCE(MAX(w.day) FILTER (WHERE w.sales > 0) - DATE '1970-01-01', -1)::int8,
           COALESCE(SUM(w.sales_amount), 0)::float8,
           COALESCE(SUM(w.sales_amount) FILTER (WHERE w.day = w.first_sale_day), 0)::float8
    FROM (
        SELECT d.*, MIN(d.day) FILTER (WHERE d.sales > 0)
                    OVER (PARTITION BY d.customer_id) AS first_sale_day
        FROM (
            SELECT customer_id, (purchased_at AT TIME ZONE %(tz)s)::date AS day,
                   COUNT(*) AS n, SUM(amount) AS amount,
                   MIN(purchased_at) AS first_at, MAX(purchased_at) AS last_at,
                   COUNT(*) FILTER (WHERE kind = 'sale') AS sales,
                   SUM(amount) FILTER (WHERE kind = 'sale') AS sales_amount
            FROM {purchase}
            WHERE purchased_at < %(end)s {restrict}
            GROUP BY 1, 2
        ) d
    ) w
    GROUP BY w.customer_id
    ORDER BY w.customer_id
"""
_DAYS_FIELDS = {
    "customer_id": ">i8",
    "n": ">i8",
    "amount": ">f8",
    "first_at": ">f8",
    "last_at": ">f8",
    "days": ">i8",
    "first_day": ">i8",
    "last_day": ">i8",
    "total": ">f8",
    "first_total": ">f8",
}


def _days_from_columns(ids, days, first_day, last_day, total, first_total) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": np.asarray(ids, dtype=np.int64),
            "days": np.asarray(days, dtype=np.int64),
            "first_day": np.asarray(first_day).astype("datetime64[D]"),
            "last_day": np.asarray(last_day).astype("datetime64[D]"),
            "total": np.asarray(total, dtype=np.float64),
            "first_total": np.asarray(first_total, dtype=np.float64),
        }
    )


def _profiled_with_sales(frame: pd.DataFrame, not_profiled: np.ndarray) -> pd.DataFrame:
    keep = (frame["days"].to_numpy() > 0) & ~np.isin(frame["customer_id"].to_numpy(), not_profiled)
    return frame[keep].reset_index(drop=True)


def _purchase_days_postgresql(*, end: datetime, ids: list[int] | None) -> tuple[pd.DataFrame, int]:
    """The day figures of every customer (or of `ids`) and how many customers' feature
    figures (purchases, spend, first and last moment) the same statement summed."""
    restrict = "" if ids is None else "AND customer_id = ANY(%(ids)s)"
    sql = _DAYS_SQL_POSTGRESQL.format(purchase=Purchase._meta.db_table, restrict=restrict)
    params = {"tz": timezone.get_current_timezone_name(), "end": end, "ids": ids}
    rows = binary_copy_out(sql, params, _DAYS_FIELDS)
    return _days_from_columns(
        rows["customer_id"],
        rows["days"],
        rows["first_day"],
        rows["last_day"],
        rows["total"],
        rows["first_total"],
    ), len(rows)


def _purchase_days_rows(*, end: datetime, ids: list[int] | None) -> tuple[pd.DataFrame, int]:
    """Every purchase in customer and time order, folded by numpy into each customer's
    feature figures and local sale days (SQLite has no time zones; pandas converts each
    moment by the zone's rules)."""
    table = Purchase._meta.db_table
    restrict, params = "", [connection.ops.adapt_datetimefield_value(end)]
    if ids is not None:
        restrict = f" AND customer_id IN ({', '.join(['%s'] * len(ids))})"
        params += list(ids)
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT customer_id, purchased_at, CAST(amount AS REAL), kind = 'sale' FROM {table} "
            f"WHERE purchased_at < %s{restrict} ORDER BY customer_id, purchased_at",
            params,
        )
        rows = cur.fetchall()
    if not rows:
        return _days_from_columns([], [], [], [], [], []), 0
    customer, moment, amount, sale = zip(*rows, strict=True)
    moments = pd.to_datetime(pd.Series(moment), utc=True, format="ISO8601")
    every_id, every_amount = np.asarray(customer, dtype=np.int64), np.asarray(amount, dtype=float)
    # The features' figures per customer: purchases, spend, first and last moment (in order).
    starts = np.flatnonzero(np.r_[True, every_id[1:] != every_id[:-1]])
    ends = np.r_[starts[1:], len(every_id)] - 1
    at = moments.to_numpy()
    feature_figures = (np.diff(np.r_[starts, len(every_id)]), np.add.reduceat(every_amount, starts))
    feature_figures += (at[starts], at[ends])
    local = moments.dt.tz_convert(timezone.get_current_timezone_name()).dt.tz_localize(None)
    sale = np.asarray(sale, dtype=bool)
    cid = every_id[sale]
    day = local.to_numpy().astype("datetime64[D]")[sale]
    money = every_amount[sale]
    if not len(cid):
        return _days_from_columns([], [], [], [], [], []), len(starts)
    day_start = np.flatnonzero(np.r_[True, (cid[1:] != cid[:-1]) | (day[1:] != day[:-1])])
    day_total = np.add.reduceat(money, day_start)
    day_customer, day_of = cid[day_start], day[day_start]
    first = np.flatnonzero(np.r_[True, day_customer[1:] != day_customer[:-1]])
    last = np.r_[first[1:], len(day_customer)] - 1
    return _days_from_columns(
        day_customer[first],
        last - first + 1,
        day_of[first],
        day_of[last],
        np.add.reduceat(day_total, first),
        day_total[first],
    ), len(feature_figures[0])


def purchase_days_read_cold(*, as_of: date, aggregate_seconds: float) -> DayFigures:
    """A first run's read: every purchase summed per customer (the features' figures) and
    per customer and local day (the models'), in one pass. Counted: the cheaper of that
    and `aggregate_seconds` (the features' aggregate floor) plus the product's own
    purchase-day read, timed beside it (as the fits' floor counts the engine's silhouettes
    when they are faster). The frame is the floor's own."""
    from segmentation import prediction_selectors  # the product's read, timed beside

    end = _day_end(as_of)
    started = time.perf_counter()
    reader = _purchase_days_postgresql if connection.vendor == "postgresql" else _purchase_days_rows
    frame, feature_customers = reader(end=end, ids=None)
    frame = _profiled_with_sales(frame, _not_profiled_ids())
    own = time.perf_counter() - started
    started = time.perf_counter()
    prediction_selectors.customer_purchase_totals(as_of=as_of)
    product = time.perf_counter() - started + aggregate_seconds
    how = "one pass" if own <= product else "aggregate and the product's day read"
    timed = {"one_pass": own, "aggregate_and_product_day_read": product}
    return DayFigures(frame, min(own, product), how, feature_customers, timed)


def purchase_days_read_kept(*, as_of: date, changed_ids: list[int]) -> DayFigures:
    """A nightly run's read: every customer's kept purchase-day figures, except those who
    bought since (the bench knows them: `changed_ids`), whose purchases are summed again."""
    table = CustomerPurchaseDays._meta.db_table
    started = time.perf_counter()
    if connection.vendor == "postgresql":
        fields = {
            "customer_id": ">i8",
            "days": ">i8",
            "first_day": ">i8",
            "last_day": ">i8",
            "total": ">f8",
            "first_total": ">f8",
        }
        sql = (
            f"SELECT customer_id::int8, days::int8, (first_day - DATE '1970-01-01')::int8, "
            f"(last_day - DATE '1970-01-01')::int8, total, first_total FROM {table}"
        )
        rows = binary_copy_out(sql, {}, fields)
        kept = _days_from_columns(*(rows[c] for c in fields))
    else:
        # Numbers only, into one float matrix, the days counted from 1970 by SQLite: read as
        # text and parsed here, a million dates cost 4 s more.
        with connection.cursor() as cur:
            cur.execute(
                "SELECT customer_id, days, julianday(first_day) - 2440587.5, "
                f"julianday(last_day) - 2440587.5, total, first_total FROM {table}"
            )
            fetched = cur.fetchall()
        # Streamed into numpy: np.array over the tuples takes twice as long.
        flat = itertools.chain.from_iterable(fetched)
        rows = np.fromiter(flat, dtype=np.float64, count=len(fetched) * 6).reshape(-1, 6)
        first, last = (np.rint(rows[:, i]).astype(np.int64) for i in (2, 3))
        kept = _days_from_columns(rows[:, 0], rows[:, 1], first, last, rows[:, 4], rows[:, 5])
    if changed_ids:
        kept = kept[~np.isin(kept["customer_id"].to_numpy(), changed_ids)]
        reader = (
            _purchase_days_postgresql if connection.vendor == "postgresql" else _purchase_days_rows
        )
        fresh, _ = reader(end=_day_end(as_of), ids=list(changed_ids))
        fresh = _profiled_with_sales(fresh, _not_profiled_ids())
        kept = pd.concat([kept, fresh], ignore_index=True)
    return DayFigures(kept.reset_index(drop=True), time.perf_counter() - started, "kept")


# --- fits, scores, write ---------------------------------------------------------------------


def _distinct(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """The distinct rows of `frame` and, per original row, the position of its distinct row."""
    codes = frame.groupby(list(frame.columns), sort=False).ngroup().to_numpy()
    first = np.unique(codes, return_index=True)[1]
    return frame.iloc[first].reset_index(drop=True), codes


def scores_compute(figures: pd.DataFrame, *, as_of: date) -> tuple[pd.DataFrame, dict]:
    """Fit both models on the distinct (x, t_x, T) and (x, value) rows, then every
    customer's figures, each hypergeometric term once per distinct (x, T)."""
    unit = settings.PREDICTIONS_TIME_UNIT_DAYS
    discount = settings.PREDICTIONS_MONTHLY_DISCOUNT
    started = time.perf_counter()
    first = figures["first_day"].to_numpy().astype("datetime64[D]")
    last = figures["last_day"].to_numpy().astype("datetime64[D]")
    x = figures["days"].to_numpy(np.float64) - 1
    t_x = (last - first).astype(np.int64) / unit
    big_t = (np.datetime64(as_of, "D") - first).astype(np.int64) / unit
    repeat_value = figures["total"].to_numpy(np.float64) - figures["first_total"].to_numpy(
        np.float64
    )
    monetary = np.divide(repeat_value, x, out=np.zeros(len(x)), where=x > 0)
    rows, codes = _distinct(pd.DataFrame({"x": x, "t_x": t_x, "T": big_t}))
    counts = np.bincount(codes, minlength=len(rows)).astype(np.float64)
    ux, utx, ut = (rows[c].to_numpy() for c in ("x", "t_x", "T"))
    bg = minimize(bgnbd_negative_ll, np.zeros(4), args=(ux, utx, ut, counts), method="L-BFGS-B")
    repeat = x > 0
    pairs, pair_codes = _distinct(pd.DataFrame({"x": x[repeat], "m": monetary[repeat]}))
    pair_counts = np.bincount(pair_codes, minlength=len(pairs)).astype(np.float64)
    gg = minimize(
        gamma_gamma_negative_ll,
        np.zeros(3),
        args=(pairs["x"].to_numpy(), np.maximum(pairs["m"].to_numpy(), 0.01), pair_counts),
        method="L-BFGS-B",
    )
    fits = time.perf_counter() - started
    r, alpha, a, b = np.exp(bg.x)
    p, q, v = np.exp(gg.x)
    # The product's fits (from zeros, as a first run) on the same figures: when faster, the
    # floor counts them.
    product_started = time.perf_counter()
    clv.bgnbd_fit(x, t_x, big_t)
    clv.gamma_gamma_fit(x, monetary)
    product_fits = time.perf_counter() - product_started

    started = time.perf_counter()
    old = np.seterr(all="ignore")  # a few extreme rows overflow: NaN, as in any scorer
    log_odds = np.log(a) - np.log(np.maximum(b + ux - 1, 1e-300))
    log_odds = log_odds + (r + ux) * (np.log(alpha + ut) - np.log(alpha + utx))
    alive_rows = np.where(ux > 0, 1 / (1 + np.exp(np.minimum(log_odds, 700))), 1.0)
    xt, xt_codes = _distinct(pd.DataFrame({"x": ux, "T": ut}))
    px, pt = xt["x"].to_numpy(), xt["T"].to_numpy()

    def expected(days: float) -> np.ndarray:
        t = days / unit
        hyp = hyp2f1(r + px, b + px, a + b + px - 1, t / (alpha + pt + t))
        body = 1 - ((alpha + pt) / (alpha + pt + t)) ** (r + px) * hyp
        return ((a + b + px - 1) / (a - 1) * body)[xt_codes] * alive_rows

    columns = {"p_alive": alive_rows}
    for days in HORIZONS:
        columns[f"expected_purchases_{days}d"] = expected(days)
    discounted, previous = 0.0, 0.0
    for month in range(1, 13):
        cumulative = expected(month * clv.DAYS_PER_MONTH)
        discounted = discounted + (cumulative - previous) / (1 + discount) ** month
        previous = cumulative
    scores = pd.DataFrame({name: values[codes] for name, values in columns.items()})
    order_value = p * (v + x * monetary) / (p * x + q - 1)
    scores["expected_order_value"] = order_value
    alive = scores["p_alive"].to_numpy()
    value = discounted[codes] * order_value
    scores["value_12m"] = value
    scores["value_at_risk"] = np.divide(
        value * (1 - alive), alive, out=np.zeros_like(value), where=alive > 0
    )
    np.seterr(**old)
    scoring = time.perf_counter() - started
    scores.insert(0, "customer_id", figures["customer_id"].to_numpy(np.int64))
    return scores, {
        "fits": min(fits, product_fits),
        "fits_textbook": fits,
        "fits_product": product_fits,
        "scores": scoring,
        "distinct_rows": len(rows),
        "converged": bool(bg.success and gg.success),
    }


def _load(table: str, ddl: str, columns: dict[str, tuple[str, object]], indexes: list[str]):
    """Create `table`, load the columns (PostgreSQL: one binary COPY; SQLite: executemany
    in the transaction) and build `indexes`, timed; then count the rows it holds and roll
    it all back. Returns (seconds, rows)."""
    with transaction.atomic(), connection.cursor() as cur:
        started = time.perf_counter()
        cur.execute(ddl)
        if connection.vendor == "postgresql":
            binary_copy_in(cur, table, columns)
        else:
            values = [v.tolist() if kind != "date" else v for kind, v in columns.values()]
            placeholders = ", ".join(["?"] * len(columns))
            connection.connection.executemany(
                f"INSERT INTO {table} VALUES ({placeholders})", zip(*values, strict=True)
            )
        for sql in indexes:
            cur.execute(sql)
        seconds = time.perf_counter() - started
        cur.execute(f"SELECT count(*) FROM {table}")
        (rows,) = cur.fetchone()
        transaction.set_rollback(True)
    return seconds, rows


def _date_column(days: np.ndarray | date, n: int) -> tuple[str, np.ndarray]:
    """A date column: PostgreSQL's int4 days since 2000-01-01, SQLite's ISO text."""
    if isinstance(days, date):
        days = np.full(n, np.datetime64(days, "D"))
    days = np.asarray(days).astype("datetime64[D]")
    if connection.vendor == "postgresql":
        return ">i4", (days - np.datetime64("2000-01-01", "D")).astype(np.int32)
    return "date", np.datetime_as_string(days, unit="D").tolist()


def predictions_write(scores: pd.DataFrame, *, as_of: date) -> dict:
    """Every customer's row loaded into an empty table of the predictions' columns with its
    primary key, then the predictions' secondary indexes built (risk first, for Today).
    Rolled back."""
    copy = "bench_floor_predictions"
    table = CustomerPrediction._meta.db_table
    real = "double precision" if connection.vendor == "postgresql" else "REAL"
    n = len(scores)
    columns = {
        "customer_id": (">i8", scores["customer_id"].to_numpy(np.int64)),
        "run_id": (">i8", np.ones(n, dtype=np.int64)),
        "as_of": _date_column(as_of, n),
        **{c: (">f8", scores[c].to_numpy(np.float64)) for c in _PREDICTION_FIGURES},
    }
    ddl = (
        f"CREATE TABLE {copy} (customer_id bigint PRIMARY KEY, run_id bigint, as_of date NOT "
        "NULL, " + ", ".join(f"{c} {real} NOT NULL" for c in _PREDICTION_FIGURES) + ")"
    )
    indexes = secondary_index_sql(table, copy)
    seconds, rows = _load(copy, ddl, columns, indexes)
    return {"seconds": seconds, "rows": rows, "indexes": len(indexes)}


def purchase_days_keep(figures: pd.DataFrame, *, as_of: date) -> dict:
    """A first run keeps every customer's purchase-day figures for the nightly runs: loaded
    into an empty table with its primary key and the day they hold to. Rolled back."""
    copy = "bench_floor_purchase_days"
    n = len(figures)
    real = "double precision" if connection.vendor == "postgresql" else "REAL"
    columns = {
        "customer_id": (">i8", figures["customer_id"].to_numpy(np.int64)),
        "days": (">i4", figures["days"].to_numpy(np.int32)),
        "first_day": _date_column(figures["first_day"].to_numpy(), n),
        "last_day": _date_column(figures["last_day"].to_numpy(), n),
        "total": (">f8", figures["total"].to_numpy(np.float64)),
        "first_total": (">f8", figures["first_total"].to_numpy(np.float64)),
        "as_of": _date_column(as_of, n),
    }
    ddl = (
        f"CREATE TABLE {copy} (customer_id bigint PRIMARY KEY, days integer NOT NULL, "
        f"first_day date NOT NULL, last_day date NOT NULL, total {real} NOT NULL, "
        f"first_total {real} NOT NULL, as_of date NOT NULL)"
    )
    seconds, rows = _load(copy, ddl, columns, [])
    return {"seconds": seconds, "rows": rows}


def predictions_floor_honest(
    *, case: str, changed_ids: list[int] | None = None, aggregate_seconds: float = 0.0
) -> dict:
    """The predictions' floor of `case` ("cold", "warm" or "daily"): the purchase-day read
    (a first run: every purchase; later runs: the kept figures and the changed customers'
    purchases), the fits, every customer's scores and their write; a first run also keeps
    the day figures. Seconds and each part."""
    as_of = business_today()
    if case == "cold":
        read = purchase_days_read_cold(as_of=as_of, aggregate_seconds=aggregate_seconds)
    else:
        read = purchase_days_read_kept(as_of=as_of, changed_ids=list(changed_ids or []))
    scores, timing = scores_compute(read.frame, as_of=as_of)
    write = predictions_write(scores, as_of=as_of)
    parts = {
        "read": read.seconds,
        "fits": timing["fits"],
        "scores": timing["scores"],
        "write": write["seconds"],
    }
    if case == "cold":
        parts["keep_days"] = purchase_days_keep(read.frame, as_of=as_of)["seconds"]
    return {
        "seconds": sum(parts.values()),
        "parts": parts,
        "read_how": read.how,
        "read_timed": read.timed,
        "feature_customers": read.feature_customers,
        "customers": len(read.frame),
        "repeat_customers": int((read.frame["days"] > 1).sum()),
        **{k: timing[k] for k in ("fits_textbook", "fits_product", "distinct_rows", "converged")},
        "indexes": write["indexes"],
    }
