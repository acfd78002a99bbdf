"""The numbers behind a segment: each customer's figures as the last run saw them.

Written by every run (``customer_features_store``), read by the customer page
(``customer_features_get``, ``customer_figures`` and ``segment_reason_words``) and the
export (``FeatureExportColumns``). Recency and tenure are kept as the sales they count from
and counted to the last run's reference time as they are read
(CustomerFeatures.objects.with_as_of()).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
from django.db import connection, transaction

from crm.exports import ids_filter
from segmentation import features
from segmentation.models import CustomerFeatures, SegmentationRun, days_before, moment_us
from segmentation.naming import days_ago, number, times
from segmentation.pg_copy import COPY_CHUNK, copy_binary

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
}
_NULLABLE = ("satisfaction", "usual_gap_days")
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


def customer_features_store(*, run: SegmentationRun, frame: pd.DataFrame) -> int:
    """Replace every customer's stored figures with those of ``frame`` (the run's raw frame:
    the columns of features.RAW_COLUMNS and features.MOMENT_COLUMNS), as of the run's
    reference time. Returns the rows written.

    One transaction: the table is emptied and refilled (TRUNCATE and a binary COPY on
    PostgreSQL; DELETE and one executemany on SQLite), so readers see the previous run's
    figures or this one's, never a mix. Customers the run did not segment have no row.
    """
    as_of = run.reference_time
    if as_of is None:
        raise ValueError("the run has no reference time")
    table = features.stored_features(frame, reference_us=moment_us(as_of))
    db_table = connection.ops.quote_name(CustomerFeatures._meta.db_table)
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            f"TRUNCATE {db_table}"
            if connection.vendor == "postgresql"
            else f"DELETE FROM {db_table}"
        )
        _rows_insert(cur, table)
    return len(table)


def _rows_insert(cur, rows: pd.DataFrame) -> None:
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
    cur.executemany(
        f"INSERT INTO {db_table} ({columns}) VALUES ({placeholders})", zip(*values, strict=True)
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


def segment_reason_words(
    *,
    figures: dict[str, Any],
    typical: dict[str, float],
    rhythm_days: float | None,
) -> list[str]:
    """Why this segment, in words and numbers: the customer's own figures beside the
    segment's typical customer (``typical``: the segment's profile_values), recency against
    the business's rhythm (median days between a regular's purchases) when known. Pure."""
    out = []
    recency = figures.get("recency_days")
    if recency is not None:
        text = f"Last bought {days_ago(recency)}"
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
        text = f"Bought {times(frequency)}, {number(figures.get('monetary_total', 0))} in total"
        if "frequency" in typical and "monetary_total" in typical:
            text += (
                f" (typical in this segment: {times(typical['frequency'])}, "
                f"{number(typical['monetary_total'])})"
            )
        out.append(text + ".")
    tenure = figures.get("tenure_days")
    if tenure is not None:
        out.append(f"First bought {days_ago(tenure)}.")
    satisfaction = figures.get("satisfaction")
    if satisfaction is not None and math.isfinite(satisfaction):
        out.append(f"Satisfaction {satisfaction * 100:.0f} of 100 from their ratings and answers.")
    return out
