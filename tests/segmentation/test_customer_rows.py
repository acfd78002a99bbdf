"""A customer deleted during a run gets no row afterwards; old runs' per-customer rows go."""

import math
from datetime import timedelta

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from crm.models import Customer, Feedback, Purchase
from segmentation import customer_rows, predictions
from segmentation.models import (
    CustomerFeatures,
    CustomerPrediction,
    Membership,
    PurchaseDaysRead,
    SegmentationRun,
    SegmentMembershipChange,
)
from segmentation.services import runs
from tests.factories import (
    CustomerFactory,
    CustomerPurchaseDaysFactory,
    PurchaseDaysReadFactory,
    SegmentationRunFactory,
)
from tests.segmentation.shops import shop_build

Status = SegmentationRun.Status


def rows_of(ids: list[int]) -> dict[str, int]:
    return {
        model._meta.label_lower: model.objects.filter(customer_id__in=ids).count()
        for model in customer_rows.PER_CUSTOMER_MODELS
    }


def run_now() -> SegmentationRun:
    run = SegmentationRun.objects.create(trigger=SegmentationRun.Trigger.COMMAND)
    return runs.segmentation_run_execute(run=run)


def no_rows() -> dict[str, int]:
    return {model._meta.label_lower: 0 for model in customer_rows.PER_CUSTOMER_MODELS}


@pytest.mark.django_db
def test_customers_deleted_after_the_feature_read_get_no_segment_history_or_figures(
    monkeypatch,
):
    shop = shop_build(scale=2)
    gone = shop.groups["champions"][:3] + shop.groups["lost"][:2] + shop.prospects[:1]
    read = runs.selectors.customer_features

    def read_then_delete(**kwargs):
        frame = read(**kwargs)
        Customer.objects.filter(pk__in=gone).delete()
        return frame

    monkeypatch.setattr(runs.selectors, "customer_features", read_then_delete)

    run = run_now()

    assert run.status == Status.SUCCEEDED, run.error
    assert rows_of(gone) == no_rows()
    assert customer_rows.customer_orphans_count() == no_rows()
    # Everyone else was written as usual.
    assert Membership.objects.count() == Customer.objects.count()
    assert CustomerFeatures.objects.exists()
    assert SegmentMembershipChange.objects.filter(run=run).exists()


@pytest.mark.django_db
def test_customers_deleted_after_the_purchase_read_of_the_predictions_get_none(monkeypatch):
    shop = shop_build(scale=4)  # enough repeat buyers for the models to be fitted
    gone = shop.groups["champions"][:3]
    read = predictions.prediction_selectors.customer_purchase_totals_nightly

    def read_then_delete(**kwargs):
        totals = read(**kwargs)
        Customer.objects.filter(pk__in=gone).delete()
        return totals

    monkeypatch.setattr(
        predictions.prediction_selectors, "customer_purchase_totals_nightly", read_then_delete
    )

    run = run_now()

    assert run.status == Status.SUCCEEDED, run.error
    assert run.predictions["status"] == "ok", run.predictions["reason"]
    assert CustomerPrediction.objects.exists()
    assert rows_of(gone) == no_rows()
    assert customer_rows.customer_orphans_count() == no_rows()


def run_rows(counts: dict[str, int]) -> dict[str, int]:
    """Only the tables a run sweeps after itself: those whose rows carry the run that wrote
    them, and the stored figures."""
    return {
        m._meta.label_lower: counts[m._meta.label_lower] for m in customer_rows.RUN_SWEPT_MODELS
    }


@pytest.mark.django_db
def test_a_customer_deleted_while_the_run_writes_keeps_no_row_of_that_run(monkeypatch):
    shop = shop_build(scale=4)  # enough repeat buyers for the models to be fitted
    gone = shop.groups["champions"][0]
    store = runs.predictions_store
    written: dict[str, int] = {}

    def store_then_delete(**kwargs):
        record = store(**kwargs)
        written.update(rows_of([gone]))
        # As a deletion committing beside the run's writes leaves things: its cascade (here
        # by hand, their sales and feedback) did not see the run's rows, so only the sweep
        # can remove them.
        for model in (Purchase, Feedback, Customer):
            field = "pk" if model is Customer else "customer_id"
            model.objects.filter(**{field: gone})._raw_delete(model.objects.db)
        return record

    monkeypatch.setattr(runs, "predictions_store", store_then_delete)

    run = run_now()

    assert run.status == Status.SUCCEEDED, run.error
    assert run.predictions["status"] == "ok", run.predictions["reason"]
    # The run had written a row of each kind for them.
    assert set(run_rows(written).values()) == {1}, written
    assert set(run_rows(rows_of([gone])).values()) == {0}
    # A membership carries no run: the daily sweep takes it.
    assert customer_rows.customer_orphans_count() == {**no_rows(), "segmentation.membership": 1}


@pytest.mark.django_db
def test_a_run_where_nobody_was_deleted_sweeps_without_a_delete():
    shop_build()

    with CaptureQueriesContext(connection) as queries:
        run = run_now()

    assert run.status == Status.SUCCEEDED, run.error
    statements = [q["sql"] for q in queries]
    assert not [sql for sql in statements if sql.startswith("DELETE") and "run_id" in sql]


@pytest.mark.django_db
def test_the_run_sweep_reads_the_customer_ids_once_when_nobody_is_gone():
    customers = [CustomerFactory() for _ in range(3)]
    handed = np.array([c.pk for c in customers] * 2, dtype=np.int64)  # repeats, as a run's

    with CaptureQueriesContext(connection) as queries:
        deleted = customer_rows.run_orphans_delete(run_id=1, customer_ids=handed)

    assert set(deleted.values()) == {0}
    assert set(deleted) == {m._meta.label_lower for m in customer_rows.RUN_SWEPT_MODELS}
    assert len(queries) == 1
    assert "DELETE" not in queries[0]["sql"]


def history_rows(run: SegmentationRun, ids: list[int]) -> None:
    SegmentMembershipChange.objects.bulk_create(
        [SegmentMembershipChange(customer_id=pk, run=run) for pk in ids]
    )


def swept_ids(run: SegmentationRun) -> set[int]:
    history = SegmentMembershipChange.objects.filter(run=run)
    return set(history.values_list("customer_id", flat=True))


@pytest.mark.django_db
def test_the_run_sweep_counts_instead_of_reading_every_id_when_all_it_saw_are_there():
    customers = [CustomerFactory() for _ in range(3)]
    seen = np.array(sorted(c.pk for c in customers), dtype=np.int64)
    CustomerFactory()  # added after the run's read: a larger id, not one of the run's

    with CaptureQueriesContext(connection) as queries:
        deleted = customer_rows.run_orphans_delete(
            run_id=1, customer_ids=np.concatenate([seen, seen]), seen=seen
        )

    assert set(deleted.values()) == {0}
    assert len(queries) == 1
    assert "COUNT(*)" in queries[0]["sql"]


@pytest.mark.django_db
def test_the_run_sweep_looks_up_the_ids_its_read_did_not_see():
    run = SegmentationRunFactory()
    kept = CustomerFactory()
    seen = np.array([kept.pk], dtype=np.int64)
    gone_before_the_read = kept.pk + 1000  # read by the features, deleted before the staging
    added_since = CustomerFactory()  # read by a later read, still there
    handed = [kept.pk, gone_before_the_read, added_since.pk]
    history_rows(run, handed)

    deleted = customer_rows.run_orphans_delete(
        run_id=run.pk, customer_ids=np.array(handed, dtype=np.int64), seen=seen
    )

    assert deleted["segmentation.segmentmembershipchange"] == 1
    assert swept_ids(run) == {kept.pk, added_since.pk}


@pytest.mark.django_db
@pytest.mark.parametrize("added_with_a_smaller_id", [False, True])
def test_the_run_sweep_finds_a_customer_it_saw_who_is_gone(added_with_a_smaller_id):
    run = SegmentationRunFactory()
    gone, kept = CustomerFactory(pk=5), CustomerFactory(pk=10)
    seen = np.array([gone.pk, kept.pk], dtype=np.int64)
    history_rows(run, [gone.pk, kept.pk])
    # As a deletion committing beside the run's writes leaves things: no cascade.
    Customer.objects.filter(pk=gone.pk)._raw_delete(Customer.objects.db)
    if added_with_a_smaller_id:  # as many customers up to the largest id seen, not the same
        CustomerFactory(pk=7)

    deleted = customer_rows.run_orphans_delete(run_id=run.pk, customer_ids=seen.copy(), seen=seen)

    assert deleted["segmentation.segmentmembershipchange"] == 1
    assert swept_ids(run) == {kept.pk}


@pytest.mark.django_db
def test_the_run_sweep_deletes_that_runs_rows_of_the_customers_gone_and_no_others():
    kept = CustomerFactory()
    run, other = SegmentationRunFactory(), SegmentationRunFactory()
    gone = list(range(10**6, 10**6 + 2000))  # more ids than one SQLite statement takes
    SegmentMembershipChange.objects.bulk_create(
        [SegmentMembershipChange(customer_id=pk, run=run) for pk in [kept.pk, *gone]]
        + [SegmentMembershipChange(customer_id=pk, run=other) for pk in gone[:5]]
    )
    # The stored figures say no run: whichever wrote them, a customer who is gone loses them.
    CustomerFeatures.objects.bulk_create(
        [figures(customer_id=pk) for pk in [kept.pk, *gone[:3], *gone[-3:]]]
    )
    handed = np.array([*gone, kept.pk, *gone[:10]], dtype=np.int64)

    with CaptureQueriesContext(connection) as queries:
        deleted = customer_rows.run_orphans_delete(run_id=run.pk, customer_ids=handed)

    assert deleted["segmentation.segmentmembershipchange"] == 2000
    history = SegmentMembershipChange.objects
    assert list(history.filter(run=run).values_list("customer_id", flat=True)) == [kept.pk]
    # Another run's rows are the daily sweep's.
    assert history.filter(run=other).count() == 5
    assert deleted["segmentation.customerfeatures"] == 6
    assert list(CustomerFeatures.objects.values_list("customer_id", flat=True)) == [kept.pk]
    statements = 1
    if connection.vendor == "sqlite":
        statements = math.ceil(len(gone) / customer_rows.SQLITE_IDS_PER_DELETE)
    deletes = [q["sql"] for q in queries if q["sql"].startswith("DELETE")]
    assert len(deletes) == len(customer_rows.RUN_SWEPT_MODELS) * statements


@pytest.mark.django_db
def test_orphan_sweep_deletes_rows_left_for_a_customer_who_is_gone():
    kept, gone = CustomerFactory(), CustomerFactory()
    run = SegmentationRunFactory(status=Status.SUCCEEDED, finished_at=timezone.now())
    for customer in (kept, gone):
        Membership.objects.create(customer=customer)
        SegmentMembershipChange.objects.create(customer=customer, run=run)
    gone_id = gone.pk
    # A raw delete, as a concurrent transaction would leave things: no cascade.
    Customer.objects.filter(pk=gone_id)._raw_delete(Customer.objects.db)

    deleted = customer_rows.customer_orphans_delete()

    assert deleted["segmentation.membership"] == 1
    assert deleted["segmentation.segmentmembershipchange"] == 1
    assert Membership.objects.filter(customer=kept).exists()
    assert customer_rows.customer_orphans_count() == no_rows()


def succeeded_run(days_ago: int) -> SegmentationRun:
    at = timezone.now() - timedelta(days=days_ago)
    return SegmentationRunFactory(status=Status.SUCCEEDED, created_at=at, finished_at=at)


def figures(**fields) -> CustomerFeatures:
    return CustomerFeatures(
        last_purchase_us=0, first_purchase_us=0, frequency=1, monetary_total=1,
        avg_order_value=1, **fields,
    )  # fmt: skip


def stored_rows(run: SegmentationRun) -> None:
    customer = CustomerFactory()
    as_of = run.finished_at
    figures(customer=customer).save()
    CustomerPrediction.objects.create(
        customer=customer, run=run, as_of=as_of.date(), p_alive=0.5,
        expected_purchases_30d=0, expected_purchases_90d=0, expected_purchases_365d=0,
        expected_order_value=0, value_12m=0, value_at_risk=0,
    )  # fmt: skip
    SegmentMembershipChange.objects.create(customer=customer, run=run)


@pytest.mark.django_db
def test_retention_keeps_the_last_runs_and_recent_days_and_drops_older_runs_rows(settings):
    settings.RUN_ROWS_KEEP_RUNS, settings.RUN_ROWS_KEEP_DAYS = 2, 10
    oldest, old, previous, latest = (succeeded_run(days) for days in (90, 60, 50, 20))
    recent_failed = SegmentationRunFactory(status=Status.FAILED, created_at=timezone.now())
    for run in (oldest, old, previous, latest, recent_failed):
        stored_rows(run)

    deleted = customer_rows.run_rows_retention_delete()

    assert deleted["segmentation.customerprediction"] == 2
    kept = {previous.pk, latest.pk, recent_failed.pk}
    assert set(CustomerPrediction.objects.values_list("run_id", flat=True)) == kept
    # The segment history the customer page shows is never cleaned up, nor the stored
    # figures: one row per customer, brought up to date by every run.
    assert SegmentMembershipChange.objects.count() == 5
    assert deleted["segmentation.customerfeatures"] == 0
    assert CustomerFeatures.objects.count() == 5


@pytest.mark.django_db
def test_retention_always_keeps_the_latest_runs_rows_however_old(settings):
    settings.RUN_ROWS_KEEP_RUNS, settings.RUN_ROWS_KEEP_DAYS = 1, 0
    latest = succeeded_run(400)
    stored_rows(latest)

    customer_rows.run_rows_retention_delete()

    assert CustomerFeatures.objects.count() == 1
    assert CustomerPrediction.objects.filter(run=latest).count() == 1


@pytest.mark.django_db
def test_retention_drops_the_purchase_day_reads_no_kept_row_points_to():
    summed_again = PurchaseDaysReadFactory()
    still_read = CustomerPurchaseDaysFactory().read

    deleted = customer_rows.run_rows_retention_delete()

    assert deleted["segmentation.purchasedaysread"] == 1
    assert list(PurchaseDaysRead.objects.all()) == [still_read]
    assert not PurchaseDaysRead.objects.filter(pk=summed_again.pk).exists()


@pytest.mark.django_db
def test_retention_is_scheduled_daily_and_the_task_runs_it():
    from django_celery_beat.models import PeriodicTask

    from segmentation.tasks import run_rows_retention

    task = PeriodicTask.objects.get(task="segmentation.tasks.run_rows_retention")
    assert task.enabled and task.crontab.hour == "3"
    assert run_rows_retention.apply().get() == {**no_rows(), "segmentation.purchasedaysread": 0}
