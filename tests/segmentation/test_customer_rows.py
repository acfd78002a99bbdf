"""A customer deleted during a run gets no row afterwards; old runs' per-customer rows go."""

from datetime import timedelta

import pytest
from django.utils import timezone

from crm.models import Customer
from segmentation import customer_rows, predictions
from segmentation.models import (
    CustomerFeatures,
    CustomerPrediction,
    Membership,
    SegmentationRun,
    SegmentMembershipChange,
)
from segmentation.services import runs
from tests.factories import CustomerFactory, SegmentationRunFactory
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
    assert run.predictions["status"] == "ok", run.predictions
    assert CustomerPrediction.objects.exists()
    assert rows_of(gone) == no_rows()
    assert customer_rows.customer_orphans_count() == no_rows()


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


def stored_rows(run: SegmentationRun) -> None:
    customer = CustomerFactory()
    as_of = run.finished_at
    CustomerFeatures.objects.create(
        customer=customer, run=run, as_of=as_of, recency_days=1, frequency=1,
        monetary_total=1, avg_order_value=1, tenure_days=1,
    )  # fmt: skip
    CustomerPrediction.objects.create(
        customer=customer, run=run, as_of=as_of.date(), p_alive=0.5,
        expected_purchases_30d=0, expected_purchases_90d=0, expected_purchases_365d=0,
        expected_order_value=0, value_12m=0, value_at_risk=0, x=0, t_x=0, T=1,
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

    assert deleted["segmentation.customerfeatures"] == 2
    assert deleted["segmentation.customerprediction"] == 2
    kept = {previous.pk, latest.pk, recent_failed.pk}
    assert set(CustomerFeatures.objects.values_list("run_id", flat=True)) == kept
    assert set(CustomerPrediction.objects.values_list("run_id", flat=True)) == kept
    # The segment history the customer page shows is never cleaned up.
    assert SegmentMembershipChange.objects.count() == 5


@pytest.mark.django_db
def test_retention_always_keeps_the_latest_runs_rows_however_old(settings):
    settings.RUN_ROWS_KEEP_RUNS, settings.RUN_ROWS_KEEP_DAYS = 1, 0
    latest = succeeded_run(400)
    stored_rows(latest)

    customer_rows.run_rows_retention_delete()

    assert CustomerFeatures.objects.filter(run=latest).count() == 1
    assert CustomerPrediction.objects.filter(run=latest).count() == 1


@pytest.mark.django_db
def test_retention_is_scheduled_daily_and_the_task_runs_it():
    from django_celery_beat.models import PeriodicTask

    from segmentation.tasks import run_rows_retention

    task = PeriodicTask.objects.get(task="segmentation.tasks.run_rows_retention")
    assert task.enabled and task.crontab.hour == "3"
    assert run_rows_retention.apply().get() == no_rows()
