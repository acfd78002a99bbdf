"""Per-customer rows a run writes: no row for a customer who is gone, none kept past retention.

The run's per-customer tables have no database foreign key (see Membership), so nothing in
the database stops a run from writing a row for a customer deleted while it computed. The
memberships and the history join the customer table as they are written; the stored figures,
predictions and kept purchase days are written in bulk from what the run read, and
``customer_orphans_delete`` removes those of deleted customers right after the run (one
anti-join per table, cheaper than checking every row of the COPY). The daily clean-up sweeps
every table again, for a deletion that commits while that sweep runs.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import connection, models, transaction
from django.utils import timezone

from crm.models import Customer
from segmentation.models import (
    CustomerFeatures,
    CustomerPrediction,
    CustomerPurchaseDays,
    Membership,
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
# memberships are the present: never. Nor the kept purchase days: an unchanged customer's
# row outlives the run that summed it, on purpose.
PER_RUN_MODELS: tuple[type[models.Model], ...] = (CustomerFeatures, CustomerPrediction)


def _orphans_where(model: type[models.Model]) -> str:
    table = connection.ops.quote_name(model._meta.db_table)
    customers = connection.ops.quote_name(Customer._meta.db_table)
    return (
        f"FROM {table} WHERE NOT EXISTS "
        f"(SELECT 1 FROM {customers} c WHERE c.id = {table}.customer_id)"
    )


def customer_orphans_delete(
    *, run_id: int | None = None, among: tuple[type[models.Model], ...] = PER_CUSTOMER_MODELS
) -> dict[str, int]:
    """Delete the per-customer rows whose customer no longer exists, in the tables ``among``;
    with ``run_id``, only that run's rows (memberships carry no run and are then left out).
    Returns rows deleted per table."""
    deleted: dict[str, int] = {}
    with transaction.atomic(), connection.cursor() as cur:
        for model in among:
            sql = f"DELETE {_orphans_where(model)}"
            params: list[object] = []
            if run_id is not None:
                if model is Membership:
                    continue
                if connection.vendor == "postgresql":
                    # The run has just rewritten these rows in bulk: with last night's
                    # statistics the planner expects a few of them and looks every customer
                    # up one by one (1 s a table at a million); a fresh sample (~0.1 s)
                    # lets it hash the customers once, and serves the pages' plans too.
                    cur.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")
                sql += " AND run_id = %s"
                params.append(run_id)
            cur.execute(sql, params)
            deleted[model._meta.label_lower] = max(cur.rowcount, 0)
    return deleted


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
    """Delete the per-run, per-customer rows (stored features, predictions) of runs that are
    neither among the last RUN_ROWS_KEEP_RUNS succeeded runs nor younger than
    RUN_ROWS_KEEP_DAYS; the latest succeeded run's rows are always kept, as are the segment
    history and the memberships. Orphans are swept too. Returns rows deleted per table."""
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
    return deleted
