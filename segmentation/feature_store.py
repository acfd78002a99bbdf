"""The numbers behind a segment: each customer's figures as the last run saw them.

Written by every run (``customer_features_store``), read by the customer page
(``customer_features_get`` and ``segment_reason_words``) and the export
(``FeatureExportColumns``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from itertools import repeat
from typing import Any

import numpy as np
import pandas as pd
from django.db import connection, transaction

from crm.exports import ids_filter
from segmentation import features
from segmentation.models import CustomerFeatures, SegmentationRun
from segmentation.naming import days_ago, number, times
from segmentation.pg_copy import COPY_CHUNK, EPOCH, copy_binary

# The stored columns after the customer, in the table's order; the last two may be NULL.
_VALUE_COLUMNS = (
    "recency_days",
    "frequency",
    "monetary_total",
    "avg_order_value",
    "tenure_days",
    "satisfaction",
    "usual_gap_days",
)
_NULLABLE = ("satisfaction", "usual_gap_days")


def _row_dtype(present: tuple[bool, bool]) -> np.dtype:
    """Binary COPY row layout; a NULL is a length of -1 and no bytes, so each combination of
    NULLs has its own fixed layout."""
    fields = [
        ("fields", ">i2"),
        ("customer_len", ">i4"),
        ("customer", ">i8"),
        ("run_len", ">i4"),
        ("run", ">i8"),
        ("as_of_len", ">i4"),
        ("as_of", ">i8"),
    ]
    for name in _VALUE_COLUMNS:
        kind = ">i4" if name == "frequency" else ">f8"
        fields.append((f"{name}_len", ">i4"))
        if name not in _NULLABLE or present[_NULLABLE.index(name)]:
            fields.append((name, kind))
    return np.dtype(fields)


def _binary_rows(table: pd.DataFrame, *, run_id: int, as_of_us: int) -> Iterable[bytes]:
    known = {name: np.isfinite(table[name].to_numpy()) for name in _NULLABLE}
    for present in ((True, True), (True, False), (False, True), (False, False)):
        mask = (known[_NULLABLE[0]] == present[0]) & (known[_NULLABLE[1]] == present[1])
        part = table[mask]
        if not len(part):
            continue
        rows = np.empty(len(part), dtype=_row_dtype(present))
        rows["fields"] = 3 + len(_VALUE_COLUMNS)
        rows["customer_len"], rows["run_len"], rows["as_of_len"] = 8, 8, 8
        rows["customer"] = part["customer_id"].to_numpy()
        rows["run"] = run_id
        rows["as_of"] = as_of_us
        for name in _VALUE_COLUMNS:
            if name in _NULLABLE and not present[_NULLABLE.index(name)]:
                rows[f"{name}_len"] = -1
                continue
            rows[f"{name}_len"] = 4 if name == "frequency" else 8
            rows[name] = part[name].to_numpy()
        for start in range(0, len(rows), COPY_CHUNK):
            yield rows[start : start + COPY_CHUNK].tobytes()


def customer_features_store(*, run: SegmentationRun, frame: pd.DataFrame) -> int:
    """Replace every customer's stored figures with those of ``frame`` (the run's raw frame,
    features.RAW_COLUMNS), as of the run's reference time. Returns the rows written.

    One transaction: the table is emptied and refilled (TRUNCATE and a binary COPY on
    PostgreSQL; DELETE and one executemany on SQLite), so readers see the previous run's
    figures or this one's, never a mix. Customers the run did not segment have no row.
    """
    table = features.stored_features(frame)
    as_of = run.reference_time
    if as_of is None:
        raise ValueError("the run has no reference time")
    db_table = connection.ops.quote_name(CustomerFeatures._meta.db_table)
    columns = ("customer_id", "run_id", "as_of", *_VALUE_COLUMNS)
    with transaction.atomic(), connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute(f"TRUNCATE {db_table}")
            as_of_us = round((as_of - EPOCH).total_seconds() * 1_000_000)
            sql = f"COPY {db_table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT binary)"
            copy_binary(cur, sql, _binary_rows(table, run_id=run.pk, as_of_us=as_of_us))
        else:
            cur.execute(f"DELETE FROM {db_table}")
            stamp = connection.ops.adapt_datetimefield_value(as_of)
            # Column by column into Python values (a frame's rows one by one cost seconds
            # at a million); NaN is NULL.
            values = [table[column].to_numpy().tolist() for column in table.columns]
            for name in _NULLABLE:
                column = values[list(table.columns).index(name)]
                column[:] = [None if v != v else v for v in column]
            rows = zip(values[0], repeat(run.pk), repeat(stamp), *values[1:], strict=False)
            placeholders = ", ".join(["%s"] * len(columns))
            cur.executemany(
                f"INSERT INTO {db_table} ({', '.join(columns)}) VALUES ({placeholders})", rows
            )
    return len(table)


class FeatureExportColumns:
    """Export columns: the figures the last run segmented each customer on."""

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
        rows = CustomerFeatures.objects.filter(
            ids_filter("customer_id", list(customer_ids))
        ).values_list("customer_id", *self.columns)
        return {row[0]: dict(zip(self.columns, row[1:], strict=True)) for row in rows}


def customer_features_get(*, customer_id: int) -> CustomerFeatures | None:
    """The figures the last run segmented this customer on, or None."""
    return CustomerFeatures.objects.filter(customer_id=customer_id).first()


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
