"""Customer predictions: the sales per local day, the refresh service and the page reads."""

import threading
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from django.db import connection
from django.utils import timezone

from crm.models import Customer, Purchase
from crm.services import customer_stats_refresh
from segmentation import clv, prediction_selectors, predictions, selectors, services
from segmentation.exports import PREDICTION_COLUMNS as prediction_columns
from segmentation.models import (
    CustomerPrediction,
    CustomerPurchaseDays,
    Membership,
    SegmentationRun,
)
from tests.factories import (
    CustomerFactory,
    FeedbackFactory,
    PurchaseFactory,
    SegmentationRunFactory,
    SegmentFactory,
)
from tests.segmentation.shops import shop_build

CDNOW = Path(__file__).resolve().parent.parent / "fixtures" / "cdnow_sample_purchases.csv"
AS_OF = date(1997, 9, 30)
CDNOW_LAST_DAY = date(1998, 6, 30)


def cdnow_shop(customers: int = 400, *, shift: timedelta = timedelta(0)) -> dict[str, int]:
    """The first ``customers`` CDNOW customers and their purchases, at local midnight
    (``shift`` later)."""
    frame = pd.read_csv(CDNOW)
    keep = frame["customer_id"].drop_duplicates().iloc[:customers]
    frame = frame[frame["customer_id"].isin(keep)]
    created = Customer.objects.bulk_create(
        Customer(name=c, external_source="cdnow", external_id=c) for c in keep
    )
    ids = {c.external_id: c.pk for c in created}
    tz = timezone.get_default_timezone()
    Purchase.objects.bulk_create(
        Purchase(
            customer_id=ids[row.customer_id],
            amount=Decimal(str(row.amount)),
            purchased_at=datetime.fromisoformat(row.purchased_at).replace(tzinfo=tz) + shift,
        )
        for row in frame.itertuples()
    )
    customer_stats_refresh(customer_ids=ids.values())
    return ids


def test_daily_sales_group_a_customers_sales_by_the_businesss_local_day(db, settings):
    settings.TIME_ZONE = "Europe/Berlin"
    customer = CustomerFactory()
    # 23:30 UTC on 1 March is 00:30 on 2 March in Berlin: the same local day as the noon sale.
    PurchaseFactory(customer=customer, amount=Decimal("10"), purchased_at=at(2024, 3, 1, 23, 30))
    PurchaseFactory(customer=customer, amount=Decimal("5"), purchased_at=at(2024, 3, 2, 11, 0))
    PurchaseFactory(
        customer=customer,
        amount=Decimal("99"),
        kind=Purchase.Kind.REFUND,
        purchased_at=at(2024, 3, 2, 12, 0),
    )
    # 22:30 UTC on 5 March is 23:30 on the as-of day in Berlin: it counts; 23:30 UTC does not.
    PurchaseFactory(customer=customer, amount=Decimal("7"), purchased_at=at(2024, 3, 5, 22, 30))
    PurchaseFactory(customer=customer, amount=Decimal("8"), purchased_at=at(2024, 3, 5, 23, 30))

    daily = prediction_selectors.customer_daily_sales(as_of=date(2024, 3, 5))

    assert daily["day"].astype(str).tolist() == ["2024-03-02", "2024-03-05"]
    assert daily["amount"].tolist() == [15.0, 7.0]
    assert set(daily["customer_id"]) == {customer.pk}


def test_daily_sales_leave_out_archived_and_opted_out_customers(db):
    PurchaseFactory(customer=CustomerFactory(is_archived=True))
    PurchaseFactory(customer=CustomerFactory(profiling_opt_out=True))
    kept = PurchaseFactory()
    daily = prediction_selectors.customer_daily_sales(as_of=timezone.localdate())
    assert daily["customer_id"].tolist() == [kept.customer_id]


def at(year, month, day, hour, minute) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_refresh_stores_every_customers_prediction_as_the_pure_model_computes_it(db):
    ids = cdnow_shop()
    run = SegmentationRunFactory()

    record = predictions.predictions_refresh(run=run, as_of=AS_OF)

    assert record["status"] == "ok" and record["reason"] == ""
    assert record["customers"] == len(ids) == CustomerPrediction.objects.count()
    assert record["time_unit"] == "weeks"
    run.refresh_from_db()
    assert run.predictions["r"] == pytest.approx(record["r"])
    # The same figures as the pure module on the CSV itself.
    frame = pd.read_csv(CDNOW).rename(columns={"purchased_at": "date"})
    frame = frame[frame["customer_id"].isin(ids)]
    summary = clv.rfm_summary(frame, as_of=AS_OF, time_unit_days=7)
    model = clv.bgnbd_fit(summary["x"], summary["t_x"], summary["T"])
    assert record["r"] == pytest.approx(model.r, rel=1e-6)
    busiest = summary["x"].idxmax()
    row = CustomerPrediction.objects.get(customer_id=ids[busiest])
    alive = clv.bgnbd_p_alive(model, *(summary.loc[[busiest], c] for c in ("x", "t_x", "T")))
    assert row.p_alive == pytest.approx(alive[0], rel=1e-6)
    # The customer page's own read of what the figures rest on agrees with the pure module.
    basis = prediction_selectors.customer_purchase_summary(
        customer_id=ids[busiest], as_of=AS_OF, time_unit_days=7
    )
    assert (basis.x, basis.t_x, basis.T) == tuple(
        pytest.approx(summary.loc[busiest, c]) for c in ("x", "t_x", "T")
    )
    assert row.run_id == run.pk and row.as_of == AS_OF
    assert row.expected_purchases_30d < row.expected_purchases_90d < row.expected_purchases_365d
    assert row.value_at_risk == pytest.approx(row.value_12m / row.p_alive * (1 - row.p_alive))


def test_a_new_refresh_replaces_every_prediction(db):
    cdnow_shop()
    first = SegmentationRunFactory()
    predictions.predictions_refresh(run=first, as_of=AS_OF)
    second = SegmentationRunFactory()
    predictions.predictions_refresh(run=second, as_of=date(1997, 12, 31))
    assert set(CustomerPrediction.objects.values_list("run_id", "as_of")) == {
        (second.pk, date(1997, 12, 31))
    }


@pytest.mark.django_db(transaction=True)  # committed: the first refresh's lock is released
def test_a_refresh_does_not_queue_behind_a_long_reader_of_the_predictions(monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("only PostgreSQL empties the table at once (TRUNCATE waits for readers)")
    cdnow_shop()
    predictions.predictions_refresh(run=SegmentationRunFactory(), as_of=AS_OF)
    monkeypatch.setattr(predictions, "TRUNCATE_LOCK_WAIT", "50ms")
    table = CustomerPrediction._meta.db_table
    reader = connection.copy()  # an export still reading the predictions
    try:
        with reader.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute(f"LOCK TABLE {table} IN ACCESS SHARE MODE")
            second = SegmentationRunFactory()
            record = predictions.predictions_refresh(run=second, as_of=date(1997, 12, 31))
            cur.execute("ROLLBACK")
    finally:
        reader.close()
    assert record["status"] == "ok"
    assert set(CustomerPrediction.objects.values_list("run_id", "as_of")) == {
        (second.pk, date(1997, 12, 31))
    }


def test_too_few_repeat_customers_keep_the_previous_predictions_and_say_why(db, monkeypatch):
    cdnow_shop()
    previous = SegmentationRunFactory()
    predictions.predictions_refresh(run=previous, as_of=AS_OF)
    monkeypatch.setattr(clv, "MIN_REPEAT_CUSTOMERS", 1000)
    run = SegmentationRunFactory()

    record = predictions.predictions_refresh(run=run, as_of=AS_OF)

    assert record["status"] == "not_enough_data"
    assert "need at least 1000" in record["reason"]
    run.refresh_from_db()
    assert run.predictions["status"] == "not_enough_data"
    assert set(CustomerPrediction.objects.values_list("run_id", flat=True)) == {previous.pk}


def test_an_implausible_fit_keeps_the_previous_predictions(db, monkeypatch):
    cdnow_shop()
    previous = SegmentationRunFactory()
    predictions.predictions_refresh(run=previous, as_of=AS_OF)
    fit = clv.bgnbd_fit

    def runaway(*args, **kwargs):
        model = fit(*args, **kwargs)
        return clv.BgNbd(**{**model.__dict__, "at_bound": ("b",)})

    monkeypatch.setattr(clv, "bgnbd_fit", runaway)
    record = predictions.predictions_refresh(run=SegmentationRunFactory(), as_of=AS_OF)

    assert record["status"] == "implausible"
    assert "edge of its range (b)" in record["reason"]
    assert set(CustomerPrediction.objects.values_list("run_id", flat=True)) == {previous.pk}


def test_a_fit_that_fails_on_the_numbers_is_recorded_and_changes_nothing(db, monkeypatch):
    cdnow_shop()

    def broken(*args, **kwargs):
        raise FloatingPointError("overflow")

    monkeypatch.setattr(clv, "gamma_gamma_fit", broken)
    record = predictions.predictions_refresh(run=SegmentationRunFactory(), as_of=AS_OF)

    assert record["status"] == "implausible"
    assert "could not be fitted" in record["reason"] and "overflow" in record["reason"]
    assert not CustomerPrediction.objects.exists()


BGNBD_KEYS = ("r", "alpha", "a", "b")
GAMMA_GAMMA_KEYS = ("gg_p", "gg_q", "gg_gamma")


def fit_starts_seen(monkeypatch) -> dict:
    """The start each fit is given, as the refresh calls them."""
    seen = {}
    fits = {"bgnbd": clv.bgnbd_fit, "gamma_gamma": clv.gamma_gamma_fit}

    def watched(name):
        def fit(*args, start=None):
            seen[name] = start
            return fits[name](*args, start=start)

        return fit

    monkeypatch.setattr(clv, "bgnbd_fit", watched("bgnbd"))
    monkeypatch.setattr(clv, "gamma_gamma_fit", watched("gamma_gamma"))
    return seen


def test_a_refresh_starts_its_fits_from_the_last_fitted_runs_parameters(db, monkeypatch):
    cdnow_shop()
    first = predictions.predictions_refresh(run=SegmentationRunFactory(), as_of=AS_OF)
    assert (first["fit_start"], first["gg_fit_start"]) == ("zeros", "zeros")
    seen = fit_starts_seen(monkeypatch)

    record = predictions.predictions_refresh(run=SegmentationRunFactory(), as_of=AS_OF)

    assert seen["bgnbd"] == tuple(first[k] for k in BGNBD_KEYS)
    assert seen["gamma_gamma"] == tuple(first[k] for k in GAMMA_GAMMA_KEYS)
    assert (record["fit_start"], record["gg_fit_start"]) == ("previous run", "previous run")
    assert record["status"] == "ok"
    for key in BGNBD_KEYS + GAMMA_GAMMA_KEYS:
        assert record[key] == pytest.approx(first[key], rel=1e-4)
    assert record["fit_seconds"] >= 0 and record["gg_fit_seconds"] >= 0


def fitted_record(**changes) -> dict:
    """A run's record of fitted models, near what these customers give."""
    record = {"model": predictions.MODEL, "time_unit": "weeks", "status": "ok"}
    record.update(r=0.3, alpha=5.0, a=0.9, b=2.5, gg_p=6.0, gg_q=4.0, gg_gamma=15.0)
    return record | changes


def test_the_fits_start_from_the_last_finished_run_whose_predictions_were_fitted(db, monkeypatch):
    cdnow_shop()
    now = timezone.now()
    last_fitted = fitted_record(r=0.25)
    SegmentationRunFactory(finished_at=now - timedelta(days=2), predictions=last_fitted)
    # Created later but finished earlier; finished later but not fitted; failed.
    SegmentationRunFactory(finished_at=now - timedelta(days=3), predictions=fitted_record(r=0.5))
    SegmentationRunFactory(
        finished_at=now - timedelta(days=1),
        predictions=fitted_record(r=0.75, status="implausible"),
    )
    SegmentationRunFactory(
        status=SegmentationRun.Status.FAILED,
        finished_at=now - timedelta(hours=1),
        predictions=fitted_record(r=1.0),
    )
    seen = fit_starts_seen(monkeypatch)

    record = predictions.predictions_refresh(run=SegmentationRunFactory(), as_of=AS_OF)

    assert seen["bgnbd"] == tuple(float(last_fitted[k]) for k in BGNBD_KEYS)
    assert seen["gamma_gamma"] == tuple(float(last_fitted[k]) for k in GAMMA_GAMMA_KEYS)
    assert record["status"] == "ok" and record["fit_start"] == "previous run"


def test_a_last_fit_in_another_time_unit_starts_only_the_order_value_model(
    db, monkeypatch, settings
):
    cdnow_shop()
    SegmentationRunFactory(predictions=fitted_record())
    settings.PREDICTIONS_TIME_UNIT_DAYS = 1.0
    seen = fit_starts_seen(monkeypatch)

    record = predictions.predictions_refresh(run=SegmentationRunFactory(), as_of=AS_OF)

    assert seen["bgnbd"] is None and seen["gamma_gamma"] is not None
    assert (record["fit_start"], record["gg_fit_start"]) == ("zeros", "previous run")


def test_a_last_fit_that_leads_nowhere_gives_the_same_answer_as_none(db):
    cdnow_shop()
    cold = predictions.predictions_refresh(run=SegmentationRunFactory(), as_of=AS_OF)
    absurd = dict.fromkeys(BGNBD_KEYS + GAMMA_GAMMA_KEYS, 1e12)
    SegmentationRunFactory(predictions={**cold, **absurd})

    record = predictions.predictions_refresh(run=SegmentationRunFactory(), as_of=AS_OF)

    assert record["status"] == "ok"
    assert record["fit_start"] == record["gg_fit_start"] == "zeros after the previous run's"
    for key in BGNBD_KEYS + GAMMA_GAMMA_KEYS:
        assert record[key] == cold[key]


@pytest.fixture
def predicted(db) -> dict[str, int]:
    ids = cdnow_shop()
    predictions.predictions_refresh(run=SegmentationRunFactory(as_of=AS_OF), as_of=AS_OF)
    return ids


def test_segment_summary_counts_its_members_likely_gone_and_their_expected_value(predicted):
    segment = SegmentFactory()
    members = list(predicted.values())[:50]
    Membership.objects.bulk_create(Membership(customer_id=c, segment=segment) for c in members)
    rows = CustomerPrediction.objects.filter(customer_id__in=members)

    summary = prediction_selectors.segment_prediction_summary(segment=segment)

    assert summary["customers"] == 50
    assert summary["likely_gone"] == rows.filter(p_alive__lt=0.5).count() > 0
    assert summary["value_12m"] == pytest.approx(sum(r.value_12m for r in rows))


def test_customers_slipping_away_come_most_value_at_risk_first(
    predicted, django_assert_num_queries
):
    with django_assert_num_queries(2):  # the as-of day, then the list
        rows = list(prediction_selectors.customers_slipping_away(limit=5))
        names = [r.customer.name for r in rows]
    assert len(names) == 5
    risks = [r.value_at_risk for r in rows]
    assert risks == sorted(risks, reverse=True)
    assert risks[0] == max(CustomerPrediction.objects.values_list("value_at_risk", flat=True))
    assert all(r.p_alive < 1 for r in rows)


def test_prediction_get_returns_the_customers_row_or_none(predicted):
    some = next(iter(predicted.values()))
    assert prediction_selectors.customer_prediction_get(customer_id=some).customer_id == some
    assert prediction_selectors.customer_prediction_get(customer_id=CustomerFactory().pk) is None


def test_export_columns_read_a_batch_of_customers_in_one_query(
    predicted, django_assert_num_queries
):
    some = list(predicted.values())[:3]
    outsider = CustomerFactory().pk
    with django_assert_num_queries(1):
        values = prediction_columns.values([*some, outsider])
    assert set(values) == set(some)
    row = CustomerPrediction.objects.get(customer_id=some[0])
    assert values[some[0]] == {
        "p_alive": round(row.p_alive, 4),
        "expected_purchases_90d": round(row.expected_purchases_90d, 2),
        "value_12m": round(row.value_12m, 2),
    }
    assert tuple(values[some[0]]) == prediction_columns.columns


def test_features_as_of_a_day_count_purchases_and_feedback_up_to_that_day_only(db, settings):
    settings.TIME_ZONE = "Europe/Berlin"
    customer = CustomerFactory()
    tz = timezone.get_default_timezone()
    for day in (date(1998, 6, 1), date(1998, 6, 30), date(1998, 7, 2)):
        PurchaseFactory(
            customer=customer,
            amount=Decimal("10"),
            purchased_at=datetime(day.year, day.month, day.day, tzinfo=tz),
        )
    FeedbackFactory(customer=customer, rating=2, created_at=datetime(1998, 6, 5, tzinfo=tz))
    FeedbackFactory(customer=customer, rating=5, created_at=datetime(1998, 7, 2, tzinfo=tz))
    as_of = date(1998, 7, 1)

    frame = selectors.customer_features(
        reference_time=selectors.day_start(as_of), as_of=as_of
    ).frame

    row = frame.set_index("customer_id").loc[customer.pk]
    assert row["frequency"] == 2
    assert row["monetary_total"] == 20
    assert row["recency_days"] == pytest.approx(1.0)  # 30 June is 1 day old on 1 July
    assert row["tenure_days"] == pytest.approx(30.0)
    assert (row["rating_count"], row["rating_mean"]) == (1, 2.0)
    assert np.isfinite(row["recency_days"])


@pytest.mark.django_db
@pytest.mark.parametrize("alongside", [False, True], ids=["after", "alongside"])
def test_a_failing_prediction_keeps_the_new_segments_and_says_why(monkeypatch, settings, alongside):
    settings.PREDICTIONS_ALONGSIDE = alongside
    shop_build()

    def broken(**kwargs):
        raise FloatingPointError("overflow")

    monkeypatch.setattr("segmentation.services.runs.predictions_compute", broken)
    run = SegmentationRun.objects.create(trigger=SegmentationRun.Trigger.COMMAND)

    run = services.segmentation_run_execute(run=run)

    assert run.status == SegmentationRun.Status.SUCCEEDED
    assert run.predictions["status"] == "failed"
    assert "previous ones are kept" in run.predictions["reason"]


@pytest.mark.django_db(transaction=True)  # the second connection sees committed rows only
def test_predictions_computed_alongside_the_segments_equal_those_computed_after(
    settings, monkeypatch
):
    cdnow_shop()
    columns = [
        "customer_id", "as_of", "p_alive", "expected_purchases_90d", "value_12m",
        "expected_order_value",
    ]  # fmt: skip
    computed_in: list[str] = []
    compute = predictions.predictions_compute

    def compute_and_note_the_thread(**kwargs):
        computed_in.append(threading.current_thread().name)
        return compute(**kwargs)

    monkeypatch.setattr(
        "segmentation.services.runs.predictions_compute", compute_and_note_the_thread
    )

    def run_and_read(alongside: bool) -> list[tuple]:
        settings.PREDICTIONS_ALONGSIDE = alongside
        run = services.segmentation_run_execute(
            run=SegmentationRun.objects.create(trigger=SegmentationRun.Trigger.COMMAND)
        )
        assert run.status == SegmentationRun.Status.SUCCEEDED
        assert run.predictions["status"] == "ok", run.predictions
        assert not [t for t in threading.enumerate() if t.name == "run-predictions"]
        assert computed_in.pop() == ("run-predictions" if alongside else "MainThread")
        return list(CustomerPrediction.objects.order_by("customer_id").values_list(*columns))

    alongside = run_and_read(True)
    # Read on the thread's connection, kept by the run's own.
    assert CustomerPurchaseDays.objects.count() == len(alongside)
    assert alongside and alongside == run_and_read(False)


def test_purchase_totals_summed_in_the_database_give_the_same_summary_as_the_daily_sales(db):
    as_of = timezone.localdate()
    for _ in range(3):
        customer = CustomerFactory()
        for days_ago, amount in ((40, "10"), (40, "5"), (12, "30"), (3, "7.5")):
            PurchaseFactory(
                customer=customer,
                amount=Decimal(amount),
                purchased_at=timezone.now() - timedelta(days=days_ago),
            )
    PurchaseFactory(customer=customer, amount=Decimal("99"), kind="refund")
    # Just after the as-of day: never counted.
    PurchaseFactory(
        customer=customer,
        amount=Decimal("50"),
        purchased_at=selectors.day_start(as_of + timedelta(days=1)),
    )

    by_totals = clv.rfm_from_totals(
        prediction_selectors.customer_purchase_totals(as_of=as_of), as_of=as_of
    )
    by_days = clv.rfm_from_daily(
        prediction_selectors.customer_daily_sales(as_of=as_of), as_of=as_of
    )

    pd.testing.assert_frame_equal(by_totals, by_days, check_dtype=False)
    assert by_totals["x"].tolist() == [2, 2, 2]
    assert by_totals["monetary"].tolist() == pytest.approx([18.75] * 3)


def test_purchase_days_are_the_businesss_local_days_across_daylight_saving(db, settings):
    settings.TIME_ZONE = "Europe/Paris"
    paris = ZoneInfo("Europe/Paris")
    customer = CustomerFactory()
    for local in (
        datetime(2026, 3, 28, 23, 30),  # a Saturday night in winter time (22:30 UTC)
        datetime(2026, 3, 29, 0, 30),  # half an hour later, the next local day
        datetime(2026, 3, 29, 23, 59),  # summer time since 2:00: still the 29th (21:59 UTC)
        datetime(2026, 10, 25, 0, 30),  # the night clocks go back
        datetime(2026, 10, 25, 23, 30),
    ):
        PurchaseFactory(customer=customer, purchased_at=local.replace(tzinfo=paris))
    as_of = date(2026, 11, 1)

    totals = prediction_selectors.customer_purchase_totals(as_of=as_of)
    daily = prediction_selectors.customer_daily_sales(as_of=as_of)
    by_days = clv.rfm_from_daily(daily, as_of=as_of)

    assert totals["days"].tolist() == [3]  # 28 March, 29 March, 25 October
    pd.testing.assert_frame_equal(
        clv.rfm_from_totals(totals, as_of=as_of), by_days, check_dtype=False
    )


def test_a_refund_takes_its_amount_off_its_day_and_a_refund_alone_makes_no_purchase_day(db):
    as_of = timezone.localdate()
    noon = selectors.day_start(as_of - timedelta(days=20)) + timedelta(hours=12)
    customer = CustomerFactory()
    PurchaseFactory(customer=customer, amount=Decimal("40"), purchased_at=noon)
    # A sale and a refund on the same later day: one purchase day worth the sale.
    PurchaseFactory(
        customer=customer, amount=Decimal("25.10"), purchased_at=noon + timedelta(days=5)
    )
    PurchaseFactory(
        customer=customer,
        amount=Decimal("3.30"),
        kind="refund",
        purchased_at=noon + timedelta(days=5, hours=1),
    )
    # A day with a refund only: no purchase day.
    PurchaseFactory(
        customer=customer, amount=Decimal("9"), kind="refund", purchased_at=noon + timedelta(days=9)
    )

    totals = prediction_selectors.customer_purchase_totals(as_of=as_of)

    assert totals["days"].tolist() == [2]
    assert totals["total"].tolist() == [65.10]
    assert totals["first_total"].tolist() == [40.0]
    assert totals["last_day"].tolist() == [np.datetime64(as_of - timedelta(days=15), "D")]


def test_a_run_keeps_the_purchase_days_of_every_profiled_buyer(db):
    shop = shop_build()
    run = services.segmentation_run_execute(
        run=SegmentationRun.objects.create(trigger=SegmentationRun.Trigger.COMMAND)
    )

    assert run.status == SegmentationRun.Status.SUCCEEDED
    full = prediction_selectors.customer_purchase_totals(as_of=timezone.localdate())
    kept = CustomerPurchaseDays.objects.order_by("customer_id")
    assert list(kept.values_list("customer_id", flat=True)) == full["customer_id"].tolist()
    assert set(kept.values_list("run_id", flat=True)) == {run.pk}
    assert run.predictions["customers_summed"] == len(full)
    assert not kept.filter(customer_id__in=shop.opted_out).exists()


def test_a_second_night_sums_only_the_changed_customer_and_predicts_as_a_full_read(db):
    today = timezone.localdate()
    ids = cdnow_shop(shift=today - CDNOW_LAST_DAY)
    # Written days ago: a kept row is trusted for purchases unchanged since a day before.
    Customer.objects.update(purchases_changed_at=timezone.now() - timedelta(days=3))
    # Every figure the purchase summary (x, t_x, T) and the average order feed.
    columns = [
        "customer_id", "p_alive", "expected_purchases_90d", "expected_purchases_365d",
        "expected_order_value", "value_12m",
    ]  # fmt: skip

    def night() -> tuple[dict, list[tuple]]:
        record = predictions.predictions_refresh(run=SegmentationRunFactory(), as_of=today)
        assert record["status"] == "ok", record
        rows = CustomerPrediction.objects.order_by("customer_id").values_list(*columns)
        return record, list(rows)

    first, _ = night()
    assert (first["customers_summed"], first["customers_kept"]) == (len(ids), 0)
    assert CustomerPurchaseDays.objects.count() == len(ids)
    buyer = next(iter(ids.values()))
    PurchaseFactory(customer_id=buyer, purchased_at=timezone.now() - timedelta(hours=1))

    second, nightly = night()

    assert (second["customers_summed"], second["customers_kept"]) == (1, len(ids) - 1)
    CustomerPurchaseDays.objects.all().delete()  # nothing kept: the full read
    full, recomputed = night()
    assert full["customers_summed"] == len(ids)
    assert nightly == recomputed
    assert second["r"] == full["r"] and second["gg_q"] == full["gg_q"]


def test_a_runs_second_night_judges_the_kept_days_by_the_buyers_its_features_found(
    db, settings, monkeypatch
):
    """Through the run itself (predictions after the labels, on the run's thread): the
    kept purchase days are read alone and judged by the customers the feature read found;
    only the one who bought is summed, and the predictions equal a full read's."""
    settings.PREDICTIONS_ALONGSIDE = False
    today = timezone.localdate()
    ids = cdnow_shop(shift=today - CDNOW_LAST_DAY)
    Customer.objects.update(purchases_changed_at=timezone.now() - timedelta(days=3))
    given: list = []
    compute = predictions.predictions_compute

    def compute_and_note_the_buyers(**kwargs):
        given.append(kwargs.get("buyers"))
        return compute(**kwargs)

    monkeypatch.setattr(
        "segmentation.services.runs.predictions_compute", compute_and_note_the_buyers
    )
    columns = ["customer_id", "p_alive", "expected_purchases_90d", "value_12m"]

    def night() -> tuple[dict, list[tuple]]:
        run = services.segmentation_run_execute(
            run=SegmentationRun.objects.create(trigger=SegmentationRun.Trigger.COMMAND)
        )
        assert run.status == SegmentationRun.Status.SUCCEEDED, run.error
        assert run.predictions["status"] == "ok", run.predictions
        rows = CustomerPrediction.objects.order_by("customer_id").values_list(*columns)
        return run.predictions, list(rows)

    night()
    buyer = next(iter(ids.values()))
    PurchaseFactory(customer_id=buyer, purchased_at=timezone.now() - timedelta(hours=1))
    second, nightly = night()

    assert given[-1] is not None and buyer in given[-1].ids
    assert (second["customers_summed"], second["customers_kept"]) == (1, len(ids) - 1)
    CustomerPurchaseDays.objects.all().delete()  # nothing kept: the full read
    full = predictions.predictions_refresh(run=SegmentationRunFactory(), as_of=today)
    assert full["customers_summed"] == len(ids)
    assert nightly == list(CustomerPrediction.objects.order_by("customer_id").values_list(*columns))
