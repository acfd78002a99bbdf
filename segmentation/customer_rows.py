"""Per-customer rows a run writes: no row for a customer who is gone, none kept past retention.

The run's per-customer tables have no database foreign key (see Membership), so nothing in
the database stops a run from writing a row for a customer deleted while it computed. The
memberships and the history join the customer table as they are written; the stored figures,
predictions and kept purchase days are written in bulk from what the run read. Right after
the run, ``run_orphans_delete`` checks the customers it wrote rows for against those that
exist and removes the rows of any who are gone (cheaper than checking every row of the
COPY, and than an anti-join over every table). The daily clean-up sweeps every table with
``customer_orphans_delete``, for a deletion that commits while either sweep runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.db import connection, models, transaction
from django.utils import timezone

from crm.models import Customer
from segmentation import selectors
from segmentation.models import (
    CustomerFeatures,
    CustomerPrediction,
    CustomerPurchaseDays,
    Membership,
    PurchaseDaysRead,
    SegmentationRun,
    SegmentMembershipChange,
)

# Every table a run writes with one row per customer, without a database foreign key.
PER_CUSTOMER_MODELS: tuple[type[models.Model], ...] = (
    Membership,
    SegmentMembershipChange,
    CustomerFeatures,
    CustomerPrediction,
    CustomerPurchaseDays,
)
# Rows that belong to one run and are only worth its figures: retention may drop them once
# the run is old. The segment history (SegmentMembershipChange) is the customer's page and
# memberships are the present: never. Nor the stored figures (one row per customer, kept up
# to date by every run) or the kept purchase days: an unchanged customer's row outlives the
# run that wrote it, on purpose.
PER_RUN_MODELS: tuple[type[models.Model], ...] = (CustomerPrediction,)
# The per-customer tables whose rows say which run wrote them.
RUN_ROW_MODELS: tuple[type[models.Model], ...] = (
    SegmentMembershipChange,
    CustomerPrediction,
    CustomerPurchaseDays,
)
# What a run sweeps after itself: the rows it wrote, and the stored figures, which say no run
# (any row of a customer who is gone is an orphan).
RUN_SWEPT_MODELS: tuple[type[models.Model], ...] = (*RUN_ROW_MODELS, CustomerFeatures)
# Ids per DELETE on SQLite: with the run id, 900 parameters, within the 999 older builds allow.
SQLITE_IDS_PER_DELETE = 899


def _orphans_where(model: type[models.Model]) -> str:
    table = connection.ops.quote_name(model._meta.db_table)
    customers = connection.ops.quote_name(Customer._meta.db_table)
    return (
        f"FROM {table} WHERE NOT EXISTS "
        f"(SELECT 1 FROM {customers} c WHERE c.id = {table}.customer_id)"
    )


def customer_orphans_delete(
    *, among: tuple[type[models.Model], ...] = PER_CUSTOMER_MODELS
) -> dict[str, int]:
    """Delete the per-customer rows whose customer no longer exists, in the tables ``among``
    (one anti-join per table). Returns rows deleted per table."""
    deleted: dict[str, int] = {}
    with transaction.atomic(), connection.cursor() as cur:
        for model in among:
            cur.execute(f"DELETE {_orphans_where(model)}")
            deleted[model._meta.label_lower] = max(cur.rowcount, 0)
    return deleted


def run_orphans_delete(
    *, run_id: int, customer_ids: np.ndarray, seen: np.ndarray | None = None
) -> dict[str, int]:
    """Delete the rows run ``run_id`` wrote for customers who no longer exist, given every
    customer it wrote a row for (``customer_ids``: any order, repeats allowed) and, when
    known, every customer id one read of the run found (``seen``, sorted: the label
    staging's).

    Only those customers can have an orphan row of this run: a customer deleted once its
    writes committed takes their rows along (Django's cascade). _customers_gone tells which
    are gone; a DELETE of those ids' rows of this run, per table (RUN_SWEPT_MODELS; any of
    their stored figures), is issued only when some are. Memberships carry no run and are
    left to the daily sweep. Returns rows deleted per table.
    """
    gone = _customers_gone(customer_ids, seen=seen)
    deleted = {model._meta.label_lower: 0 for model in RUN_SWEPT_MODELS}
    if not len(gone):
        return deleted
    with transaction.atomic(), connection.cursor() as cur:
        for model in RUN_SWEPT_MODELS:
            table = connection.ops.quote_name(model._meta.db_table)
            for condition, params in _customer_id_among(gone):
                if model in RUN_ROW_MODELS:
                    condition, params = f"run_id = %s AND {condition}", [run_id, *params]
                cur.execute(f"DELETE FROM {table} WHERE {condition}", params)
                deleted[model._meta.label_lower] += max(cur.rowcount, 0)
    return deleted


def _customers_gone(customer_ids: np.ndarray, *, seen: np.ndarray | None) -> np.ndarray:
    """The distinct ``customer_ids`` without a customer now. When every customer ``seen``
    still exists (selectors.customers_all_there: a count and a sum, 0.08 s at 1M on SQLite),
    only the ids that read did not find are looked up; otherwise every customer id is read
    and the ids handed over are looked up among them (0.15 s for the read alone on
    PostgreSQL at 1M; on SQLite 0.09 s, and 0.38 s before it was read as one text)."""
    if seen is not None and selectors.customers_all_there(seen):
        unseen = np.unique(customer_ids[~np.isin(customer_ids, seen)])
        return unseen[~np.isin(unseen, _existing_customer_ids(unseen))]
    # Not np.setdiff1d: it first makes the ids handed over unique (1-3 s for the three
    # million of a run at a million customers); looking each up among the existing is linear.
    return np.unique(customer_ids[~np.isin(customer_ids, selectors.customer_ids())])


def _existing_customer_ids(ids: np.ndarray) -> np.ndarray:
    """The ids among ``ids`` (a few, distinct) that have a customer."""
    if not len(ids):
        return np.empty(0, dtype=np.int64)
    customers = connection.ops.quote_name(Customer._meta.db_table)
    found = [np.empty(0, dtype=np.int64)]
    with connection.cursor() as cur:
        for condition, params in _customer_id_among(ids, column="id"):
            cur.execute(f"SELECT id FROM {customers} WHERE {condition}", params)
            found.append(np.array([row[0] for row in cur.fetchall()], dtype=np.int64))
    return np.concatenate(found)


def _customer_id_among(
    ids: np.ndarray, *, column: str = "customer_id"
) -> Iterator[tuple[str, list]]:
    """``column`` among ``ids`` as SQL conditions with their parameters: one array on
    PostgreSQL, batches of SQLITE_IDS_PER_DELETE on SQLite."""
    if connection.vendor == "postgresql":
        yield f"{column} = ANY(%s)", [ids.tolist()]
        return
    for start in range(0, len(ids), SQLITE_IDS_PER_DELETE):
        batch = ids[start : start + SQLITE_IDS_PER_DELETE].tolist()
        yield f"{column} IN ({', '.join(['%s'] * len(batch))})", batch


def customer_orphans_count() -> dict[str, int]:
    """Per-customer rows whose customer no longer exists, per table (zero everywhere when
    all is well)."""
    counts = {}
    with connection.cursor() as cur:
        for model in PER_CUSTOMER_MODELS:
            cur.execute(f"SELECT COUNT(*) {_orphans_where(model)}")
            counts[model._meta.label_lower] = cur.fetchone()[0]
    return counts


def run_rows_retention_delete(*, now=None) -> dict[str, int]:
    """Delete the per-run, per-customer rows (predictions) of runs that are
    neither among the last RUN_ROWS_KEEP_RUNS succeeded runs nor younger than
    RUN_ROWS_KEEP_DAYS; the latest succeeded run's rows are always kept, as are the segment
    history and the memberships. Orphans are swept too, and the purchase-day reads no kept
    row points to any more. Returns rows deleted per table."""
    now = now or timezone.now()
    succeeded = SegmentationRun.objects.succeeded().order_by("-finished_at", "-id")
    keep = set(succeeded.values_list("pk", flat=True)[: max(1, settings.RUN_ROWS_KEEP_RUNS)])
    cutoff = now - timedelta(days=settings.RUN_ROWS_KEEP_DAYS)
    keep |= set(SegmentationRun.objects.filter(created_at__gte=cutoff).values_list("pk", flat=True))
    deleted = customer_orphans_delete()
    with transaction.atomic():
        for model in PER_RUN_MODELS:
            # A row whose run is gone (NULL) belongs to no run worth keeping.
            count, _ = model.objects.exclude(run_id__in=keep).delete()
            label = model._meta.label_lower
            deleted[label] = deleted.get(label, 0) + count
        # The reads that no kept purchase days point to any more: each of their customers
        # has been summed again since.
        unused = PurchaseDaysRead.objects.exclude(
            pk__in=CustomerPurchaseDays.objects.values("read_id")
        )
        deleted[PurchaseDaysRead._meta.label_lower], _ = unused.delete()
    return deleted
