"""The nightly case: one day of new purchases on top of the data, then the run.

What happens each night in use: a few hundred to a few thousand customers bought since
yesterday; the run must place everyone again. The purchases are added the way the product
records them (then the customers' statistics refreshed, as every write path does), untimed;
`daily_purchases_remove` takes them out again so a reused dataset stays the generated one.
"""

import itertools
import os
import subprocess
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
from django.db import connection

from crm.models import Customer, Feedback, Purchase
from crm.services import customer_stats_refresh
from segmentation.benchmark.floors import binary_copy_out
from segmentation.benchmark.recluster import tables_vacuum

DAILY_SOURCE = "bench-daily"
DAILY_SHARE = 0.001  # of the customers buy on a given day
DAILY_MIN, DAILY_MAX = 300, 3000


def daily_customers(total: int) -> int:
    """How many customers buy in one bench day: 0.1 %, at least 300, at most 3,000."""
    return int(min(total, max(DAILY_MIN, min(DAILY_MAX, round(total * DAILY_SHARE)))))


def daily_purchases_add(*, total_customers: int, day: int, seed: int) -> list[int]:
    """One purchase today for daily_customers(total) customers picked at random; their ids."""
    rng = np.random.default_rng([seed, day])
    n = daily_customers(total_customers)
    ids = sorted(int(i) for i in rng.choice(np.arange(1, total_customers + 1), n, replace=False))
    amounts = np.round(np.exp(rng.normal(3.6, 0.6, n)), 2)
    now = datetime.now(UTC) - timedelta(minutes=1)
    Purchase.objects.bulk_create(
        [
            Purchase(
                customer_id=customer_id,
                amount=Decimal(str(amount)),
                purchased_at=now,
                external_source=DAILY_SOURCE,
                external_order_id=f"{day}-{customer_id}",
            )
            for customer_id, amount in zip(ids, amounts, strict=True)
        ],
        batch_size=1000,
    )
    customer_stats_refresh(customer_ids=ids)
    return ids


def daily_purchases_remove() -> int:
    """Delete the bench's daily purchases and refresh their customers; how many."""
    added = Purchase.objects.filter(external_source=DAILY_SOURCE)
    ids = sorted(set(added.values_list("customer_id", flat=True)))
    deleted, _ = added.delete()
    if ids:
        customer_stats_refresh(customer_ids=ids)
        # The aggregate floor reads the purchases by index only where the pages are marked
        # all-visible, which a delete undoes until the table is vacuumed.
        tables_vacuum(Purchase, Customer)
    return deleted


def changed_aggregate_floor(customer_ids: list[int]) -> dict:
    """Seconds of the bare aggregate over only the purchases of `customer_ids` (through the
    purchases' customer index): what a run that reuses everyone else's figures must read."""
    table = Purchase._meta.db_table
    placeholders = ", ".join(["%s"] * len(customer_ids))
    sql = (
        "SELECT count(*), sum(n), sum(total), max(first_at), max(last_at) FROM ("
        "SELECT customer_id, count(*) AS n, sum(amount) AS total, min(purchased_at) AS first_at,"
        f" max(purchased_at) AS last_at FROM {table} WHERE customer_id IN ({placeholders}) "
        "GROUP BY customer_id) AS per_customer"
    )
    with connection.cursor() as cur:
        cur.execute(sql, customer_ids)  # warm-up
        started = time.perf_counter()
        cur.execute(sql, customer_ids)
        cur.fetchone()
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "customers": len(customer_ids)}


# The stored figures as binary COPY rows (none is NULL for a customer with purchases).
_FIGURES = {"id": ">i8", "count": ">i8", "spent": ">f8", "first": ">f8", "last": ">f8"}
# With the attributes the features also take: birth date (days since 2000, the smallest int4
# for none), age (-1 for none), income (NaN for none).
_ATTRIBUTES = {"birth_days": ">i4", "age": ">i4", "income": ">f8"}
_NO_BIRTH_DATE = -(2**31)
_FEEDBACK = {"id": ">i8", "ratings": ">f8", "rated": ">i8", "scores": ">f8", "scored": ">i8"}


def _attributes_sql() -> tuple[str, str]:
    """The attributes' columns (as _ATTRIBUTES on PostgreSQL; NULL is NaN on SQLite) and the
    condition that keeps the profiled customers (neither archived nor opted out)."""
    if connection.vendor == "postgresql":
        return (
            f"COALESCE(birth_date - DATE '2000-01-01', {_NO_BIRTH_DATE}), COALESCE(age, -1), "
            "COALESCE(CAST(annual_income AS double precision), 'NaN')",
            "NOT is_archived AND NOT profiling_opt_out",
        )
    return (
        "julianday(birth_date), age, CAST(annual_income AS REAL)",
        "is_archived = 0 AND profiling_opt_out = 0",
    )


def _timed_read(sql: str, kinds: dict[str, str]) -> tuple[float, int]:
    """Seconds to read a query's rows into numpy, and how many: a binary COPY decoded by
    numpy on PostgreSQL (``kinds``: its columns' types, none NULL), a fetch on SQLite."""
    started = time.perf_counter()
    if connection.vendor == "postgresql":
        rows = binary_copy_out(sql, None, kinds)
        values = np.column_stack([rows[name] for name in kinds])
    else:
        with connection.cursor() as cur:
            cur.execute(sql)
            rows = cur.fetchall()
        # Streamed into numpy (NULL becomes NaN): np.array over the tuples takes twice as long.
        flat = itertools.chain.from_iterable(rows)
        values = np.fromiter(flat, dtype=np.float64, count=len(rows) * len(kinds))
        values = values.reshape(len(rows), len(kinds))
    return time.perf_counter() - started, len(values)


def stored_figures_floor(*, attributes: bool = False) -> dict:
    """Seconds to read every customer's kept figures (purchases, spend, first and last
    purchase) into numpy: the cheapest source of the unchanged customers' features. On
    PostgreSQL a binary COPY decoded by numpy (about half the time of fetching tuples).

    With ``attributes``, the same read also brings each customer's birth date, age and income
    and leaves out the archived and opted-out customers, as a run's feature read must: the
    features are these figures and attributes."""

    table = Customer._meta.db_table
    if connection.vendor == "postgresql":
        epoch, real = "date_part('epoch', {})", "double precision"
    else:
        epoch, real = "((julianday({}) - 2440587.5) * 86400.0)", "REAL"
    columns, profiled = _attributes_sql()
    sql = (
        f"SELECT id, CAST(purchase_count AS bigint), CAST(total_spent AS {real}), "
        f"{epoch.format('first_purchase_at')}, {epoch.format('last_purchase_at')}"
        f"{', ' + columns if attributes else ''} FROM {table} WHERE purchase_count > 0"
        f"{' AND ' + profiled if attributes else ''} ORDER BY id"
    )
    seconds, rows = _timed_read(sql, {**_FIGURES, **_ATTRIBUTES} if attributes else _FIGURES)
    return {"seconds": seconds, "rows": rows}


def feedback_floor() -> dict:
    """Seconds to read every customer's feedback figures the satisfaction feature is made of:
    the sum and count of their ratings and of their recommendation scores, one row per
    customer with feedback (a binary COPY on PostgreSQL, a fetch on SQLite)."""
    nan = "'NaN'" if connection.vendor == "postgresql" else "NULL"
    real = "double precision" if connection.vendor == "postgresql" else "REAL"
    sql = (
        f"SELECT customer_id, COALESCE(CAST(sum(rating) AS {real}), {nan}), count(rating), "
        f"COALESCE(CAST(sum(nps) AS {real}), {nan}), count(nps) "
        f"FROM {Feedback._meta.db_table} GROUP BY customer_id"
    )
    seconds, rows = _timed_read(sql, _FEEDBACK)
    return {"seconds": seconds, "rows": rows}


def feature_inputs_floor() -> dict:
    """Seconds to read what a later run's features are made of: the kept figures with the
    attributes (one read), and the feedback figures."""
    figures, feedback = stored_figures_floor(attributes=True), feedback_floor()
    return {
        "seconds": figures["seconds"] + feedback["seconds"],
        "parts": {"figures_and_attributes": figures["seconds"], "feedback": feedback["seconds"]},
        "rows": figures["rows"],
    }


def attributes_floor() -> dict:
    """Seconds to read the features' attributes and feedback on a first run, whose figures
    come from the purchases: every profiled buyer's birth date, age and income, and the
    feedback figures (feedback_floor)."""
    columns, profiled = _attributes_sql()
    sql = (
        f"SELECT id, {columns} FROM {Customer._meta.db_table} "
        f"WHERE purchase_count > 0 AND {profiled} ORDER BY id"
    )
    seconds, rows = _timed_read(sql, {"id": ">i8", **_ATTRIBUTES})
    feedback = feedback_floor()
    return {
        "seconds": seconds + feedback["seconds"],
        "parts": {"attributes": seconds, "feedback": feedback["seconds"]},
        "rows": rows,
    }


def caches_drop() -> dict:
    """Empty the operating system's page cache and restart a local PostgreSQL (its shared
    buffers), so the next run reads from disk. Needs root; says why when it cannot."""
    if os.geteuid() != 0:
        return {"dropped": False, "why": "needs root to drop the page cache"}
    connection.close()
    restarted = False
    if connection.vendor == "postgresql" and Path("/etc/postgresql").is_dir():
        (version,) = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1:]
        done = subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
            capture_output=True,
            text=True,
            check=False,
        )
        restarted = done.returncode == 0
        if not restarted:
            return {"dropped": False, "why": f"PostgreSQL restart failed: {done.stderr[-300:]}"}
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as error:
        return {"dropped": False, "why": f"cannot drop the page cache: {error}"}
    for _ in range(60):  # the server takes a moment to accept connections again
        try:
            connection.ensure_connection()
            break
        except Exception:  # any connection error: wait and retry
            connection.close()
            time.sleep(0.5)
    return {"dropped": True, "postgresql_restarted": restarted}
