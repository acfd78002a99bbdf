"""The numbers behind a segment: each customer's figures as the last run saw them.

Brought up to date by every run (``customer_features_store``, which writes only the rows
that changed), read by the customer page (``customer_features_get``, ``customer_figures``
and ``segment_reason_words``) and the export (``FeatureExportColumns``). Recency and tenure
are kept as the sales they count from and counted to the last run's reference time as they
are read (CustomerFeatures.objects.with_as_of()).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from django.db import connection, transaction
from django.utils import timezone

from crm.exports import ids_filter
from crm.money import money_text
from segmentation import features
from segmentation.models import CustomerFeatures, SegmentationRun, days_before, moment_us
from segmentation.naming import days_ago, number, times
from segmentation.pg_copy import COPY_CHUNK, copy_binary, copy_out, sqlite_insert_many
from segmentation.selectors import _binary_rows_frame, sqlite_int_rows

# The stored columns in the order every write and read below uses, with PostgreSQL's binary
# type of each; the last two may be NULL.
_COLUMNS = {
    "customer_id": ">i8",
    "last_purchase_us": ">i8",
    "first_purchase_us": ">i8",
    "frequency": ">i4",
    "monetary_total": ">f8",
    "avg_order_value": ">f8",
    "satisfaction": ">f8",
    "usual_gap_days": ">f8",
    "figures_key": ">i8",
}
_INTEGERS = ("customer_id", "last_purchase_us", "first_purchase_us", "frequency")
# The figures a key is made of (figures_keys): every stored column but the id and the key.
_FIGURES = tuple(name for name in _COLUMNS if name not in ("customer_id", "figures_key"))
_NULLABLE = ("satisfaction", "usual_gap_days")
# Past this share of the stored rows new, changed or gone, emptying the table and writing it
# whole is faster than replacing those rows. Measured at 100,000 customers: on PostgreSQL,
# deleting every row by id and copying them into the table costs four times a TRUNCATE and
# a COPY (break-even near a fifth of the rows); on SQLite, near four fifths.
_WHOLE_SHARE = {"postgresql": 0.2, "sqlite": 0.75}
# The figures as the customer page and the export read them (customer_figures).
FIGURES = (
    "recency_days",
    "frequency",
    "monetary_total",
    "avg_order_value",
    "tenure_days",
    "satisfaction",
    "usual_gap_days",
)


def _row_dtype(present: tuple[bool, bool]) -> np.dtype:
    """Binary COPY row layout; a NULL is a length of -1 and no bytes, so each combination of
    NULLs has its own fixed layout."""
    fields = [("fields", ">i2")]
    for name, kind in _COLUMNS.items():
        fields.append((f"{name}_len", ">i4"))
        if name not in _NULLABLE or present[_NULLABLE.index(name)]:
            fields.append((name, kind))
    return np.dtype(fields)


def _binary_rows(table: pd.DataFrame) -> Iterable[bytes]:
    known = {name: np.isfinite(table[name].to_numpy()) for name in _NULLABLE}
    for present in ((True, True), (True, False), (False, True), (False, False)):
        mask = (known[_NULLABLE[0]] == present[0]) & (known[_NULLABLE[1]] == present[1])
        part = table[mask]
        if not len(part):
            continue
        rows = np.empty(len(part), dtype=_row_dtype(present))
        rows["fields"] = len(_COLUMNS)
        for name, kind in _COLUMNS.items():
            if name in _NULLABLE and not present[_NULLABLE.index(name)]:
                rows[f"{name}_len"] = -1
                continue
            rows[f"{name}_len"] = np.dtype(kind).itemsize
            rows[name] = part[name].to_numpy()
        for start in range(0, len(rows), COPY_CHUNK):
            yield rows[start : start + COPY_CHUNK].tobytes()


def _stored_keys() -> pd.DataFrame:
    """Every stored row's customer id and figures key (0 for a row without one), sorted by
    customer id: one binary COPY that numpy decodes on PostgreSQL, one text that numpy parses
    on SQLite (selectors.sqlite_int_rows). Two columns, not the eight figures: on SQLite each
    value read is what costs."""
    db_table = connection.ops.quote_name(CustomerFeatures._meta.db_table)
    columns = ["customer_id", "figures_key"]
    sql = f"SELECT CAST(customer_id AS BIGINT), COALESCE(figures_key, 0) FROM {db_table}"
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            stored = _binary_rows_frame(copy_out(cur, sql), columns, int_columns=set(columns))
    else:
        matrix = sqlite_int_rows(sql, len(columns))
        stored = pd.DataFrame({c: matrix[:, i] for i, c in enumerate(columns)})
    ids = stored["customer_id"].to_numpy()
    if not (ids[1:] > ids[:-1]).all():  # rows come in the table's order, not the key's
        stored = stored.iloc[np.argsort(ids, kind="stable")].reset_index(drop=True)
    return stored


def figures_keys(table: pd.DataFrame) -> np.ndarray:
    """A 64-bit hash of each row's figures (_FIGURES), never 0: equal figures give equal
    keys, at every run, so a run compares the keys alone. NaN (NULL) hashes as one value and
    -0.0 as 0.0, as they compare. Two different rows share a key with a chance of one in
    2**64: their figures would stay unwritten until they change again."""
    key = np.zeros(len(table), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for name in _FIGURES:
            values = table[name].to_numpy()
            if name in _INTEGERS:
                bits = values.astype(np.int64).view(np.uint64)
            else:
                floats = values.astype(np.float64) + 0.0  # -0.0 becomes 0.0
                bits = np.where(np.isnan(floats), np.nan, floats).view(np.uint64)
            # One round of splitmix64 per figure: every bit of every figure reaches the key.
            z = key + bits + np.uint64(0x9E3779B97F4A7C15)
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            key = z ^ (z >> np.uint64(31))
    keys = key.view(np.int64)
    return np.where(keys == 0, 1, keys)


def _changes(table: pd.DataFrame, stored: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Which rows of ``table`` are new or differ from ``stored`` (a mask), and the ids in
    ``stored`` that ``table`` no longer has; both sorted by customer id. The figures compare
    by their keys (figures_keys): a figure computed again from the same purchases is the same
    float, so the same key."""
    ids, stored_ids = table["customer_id"].to_numpy(), stored["customer_id"].to_numpy()
    gone = stored_ids[~np.isin(stored_ids, ids)]
    if not len(stored_ids):
        return np.ones(len(ids), dtype=bool), gone
    at = np.minimum(np.searchsorted(stored_ids, ids), len(stored_ids) - 1)
    same = stored_ids[at] == ids
    same &= table["figures_key"].to_numpy() == stored["figures_key"].to_numpy()[at]
    return ~same, gone


def customer_features_store(
    *, run: SegmentationRun, frame: pd.DataFrame, plain: pd.DataFrame | None = None
) -> int:
    """Bring the stored figures up to those of ``frame`` (the run's raw frame: the columns
    of features.RAW_COLUMNS and features.MOMENT_COLUMNS), as of the run's reference time.
    Returns the rows written: those of customers who are new or whose figures changed.
    ``plain``: the engine's cleaned features of the frame's rows, when at hand
    (features.stored_features).

    One transaction, so readers see the previous run's figures or this one's, never a mix:
    the stored rows' keys are read and compared with the new rows' in numpy, the rows of
    customers the run did not segment are deleted, and only new and changed rows are written
    (PostgreSQL: their old rows deleted by id, then a binary COPY; SQLite: one executemany
    of INSERT OR REPLACE). When the table is empty (a first run) or much of it changes (a
    run as of another day; _WHOLE_SHARE), it is emptied and written whole instead: TRUNCATE
    and a binary COPY on PostgreSQL, DELETE and one executemany on SQLite.
    """
    as_of = run.reference_time
    if as_of is None:
        raise ValueError("the run has no reference time")
    table = features.stored_features(frame, reference_us=moment_us(as_of), plain=plain)
    table["figures_key"] = figures_keys(table)
    db_table = connection.ops.quote_name(CustomerFeatures._meta.db_table)
    with transaction.atomic(), connection.cursor() as cur:
        stored = _stored_keys()
        changed, gone = _changes(table, stored)
        written = int(changed.sum())
        if written + len(gone) > _WHOLE_SHARE[connection.vendor] * len(stored):
            cur.execute(
                f"TRUNCATE {db_table}"
                if connection.vendor == "postgresql"
                else f"DELETE FROM {db_table}"
            )
            _rows_insert(cur, table)
            return len(table)
        if not written and not len(gone):
            return 0
        rows = table[changed]
        if connection.vendor == "postgresql":
            # A changed row is deleted with the customers who are gone and written again.
            ids = np.concatenate([rows["customer_id"].to_numpy(), gone])
            cur.execute(f"DELETE FROM {db_table} WHERE customer_id = ANY(%s)", [ids.tolist()])
            _rows_insert(cur, rows)
        else:
            cur.executemany(
                f"DELETE FROM {db_table} WHERE customer_id = %s", [(i,) for i in gone.tolist()]
            )
            _rows_insert(cur, rows, verb="INSERT OR REPLACE")
    return written


def _rows_insert(cur, rows: pd.DataFrame, *, verb: str = "INSERT") -> None:
    """Write ``rows`` (the columns of _COLUMNS): a binary COPY on PostgreSQL, one
    executemany on SQLite."""
    db_table = connection.ops.quote_name(CustomerFeatures._meta.db_table)
    columns = ", ".join(_COLUMNS)
    if connection.vendor == "postgresql":
        sql = f"COPY {db_table} ({columns}) FROM STDIN WITH (FORMAT binary)"
        copy_binary(cur, sql, _binary_rows(rows))
        return
    # Column by column into Python values (a frame's rows one by one cost seconds at a
    # million); NaN is NULL.
    values = [rows[name].to_numpy().tolist() for name in _COLUMNS]
    for name in _NULLABLE:
        column = values[list(_COLUMNS).index(name)]
        column[:] = [None if v != v else v for v in column]
    placeholders = ", ".join(["%s"] * len(_COLUMNS))
    sqlite_insert_many(
        f"{verb} INTO {db_table} ({columns}) VALUES ({placeholders})", zip(*values, strict=True)
    )


class FeatureExportColumns:
    """Export columns: the figures the last run segmented each customer on, recency and
    tenure in days as of that run."""

    columns = (
        "as_of",
        "recency_days",
        "frequency",
        "monetary_total",
        "avg_order_value",
        "tenure_days",
        "satisfaction",
    )

    def values(self, customer_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        """customer id -> column -> value, in one query; customers without figures absent."""
        rows = (
            CustomerFeatures.objects.with_as_of()
            .filter(ids_filter("customer_id", list(customer_ids)))
            .values_list(
                "customer_id",
                "as_of",
                "last_purchase_us",
                "first_purchase_us",
                "frequency",
                "monetary_total",
                "avg_order_value",
                "satisfaction",
            )
        )
        return {
            customer_id: {
                "as_of": as_of,
                "recency_days": days_before(as_of, last),
                "frequency": frequency,
                "monetary_total": total,
                "avg_order_value": average,
                "tenure_days": days_before(as_of, first),
                "satisfaction": satisfaction,
            }
            for customer_id, as_of, last, first, frequency, total, average, satisfaction in rows
        }


def customer_features_get(*, customer_id: int) -> CustomerFeatures | None:
    """The figures the last run segmented this customer on (read with_as_of), or None."""
    return CustomerFeatures.objects.with_as_of().filter(customer_id=customer_id).first()


def customer_figures(features: CustomerFeatures) -> dict[str, Any]:
    """A row read with_as_of() as the run saw it: ``as_of`` and FIGURES, recency and tenure
    in days to as_of (None when no run has succeeded)."""
    return {"as_of": features.as_of, **{name: getattr(features, name) for name in FIGURES}}


def _days_ago_words(days: float, sale: datetime | None, as_of: datetime | None) -> str:
    """How long before ``as_of`` the ``sale`` was, as the owner counts it: the business's
    calendar days (a sale the day before yesterday at 16:00 is 2 days ago at 02:00, not the
    1.4 days that round to 1), as the predictions' words and the pages' days_ago filter
    count them. ``days`` rounded when either moment is unknown."""
    if sale is None or as_of is None:
        return days_ago(days)
    return days_ago((timezone.localtime(as_of).date() - timezone.localtime(sale).date()).days)


def segment_reason_words(
    *,
    figures: dict[str, Any],
    typical: dict[str, float],
    rhythm_days: float | None,
    currency: str,
    as_of: datetime | None = None,
    last_sale: datetime | None = None,
    first_sale: datetime | None = None,
) -> list[str]:
    """Why this segment, in words and numbers: the customer's own figures beside the
    segment's typical customer (``typical``: the segment's profile_values), recency against
    the business's rhythm (median days between a regular's purchases) when known. Given the
    moment the figures were counted to (``as_of``) and the sales' own moments, the last
    and first sale are said in the business's calendar days."""
    out = []
    recency = figures.get("recency_days")
    if recency is not None:
        text = f"Last bought {_days_ago_words(recency, last_sale, as_of)}"
        if rhythm_days:
            ratio = recency / rhythm_days
            if ratio <= 1:
                text += f", within the shop's usual {rhythm_days:.0f}-day rhythm"
            else:
                text += f", {ratio:.1f}\u00d7 the shop's usual {rhythm_days:.0f}-day rhythm"
        gap = figures.get("usual_gap_days")
        if gap is not None and math.isfinite(gap) and gap > 0:
            text += f"; they usually buy every {number(gap)} days"
        out.append(text + ".")
    frequency = figures.get("frequency")
    if frequency is not None:
        spent = money_text(figures.get("monetary_total", 0), currency, places=0)
        text = f"Bought {times(frequency)}, {spent} in total"
        if "frequency" in typical and "monetary_total" in typical:
            text += (
                f" (typical in this segment: {times(typical['frequency'])}, "
                f"{money_text(typical['monetary_total'], currency, places=0)})"
            )
        out.append(text + ".")
    tenure = figures.get("tenure_days")
    if tenure is not None:
        out.append(f"First bought {_days_ago_words(tenure, first_sale, as_of)}.")
    satisfaction = figures.get("satisfaction")
    if satisfaction is not None and math.isfinite(satisfaction):
        out.append(f"Satisfaction {satisfaction * 100:.0f} of 100 from their ratings and answers.")
    return out
