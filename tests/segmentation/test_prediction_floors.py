"""The predictions' honest floor computes what the product's predictions must: the same
purchase days from the same sales, the same fitted figures, every row and index kept."""

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from django.db import connection
from django.utils import timezone

from crm.models import Purchase
from segmentation import clv, prediction_selectors, selectors
from segmentation.benchmark import prediction_floors
from segmentation.predictions import PurchaseDaysSummed, purchase_days_keep
from tests.factories import CustomerFactory, PurchaseFactory, SegmentationRunFactory

pytestmark = pytest.mark.django_db


def sale(customer, *, at: datetime, amount: str = "20", kind: str = Purchase.Kind.SALE):
    return PurchaseFactory(customer=customer, purchased_at=at, amount=Decimal(amount), kind=kind)


def own_read(as_of: date, ids: list[int] | None = None) -> pd.DataFrame:
    reader = (
        prediction_floors._purchase_days_postgresql
        if connection.vendor == "postgresql"
        else prediction_floors._purchase_days_rows
    )
    frame, _ = reader(end=prediction_floors._day_end(as_of), ids=ids)
    return prediction_floors._profiled_with_sales(frame, prediction_floors._not_profiled_ids())


def assert_same_days(floor: pd.DataFrame, product: pd.DataFrame) -> None:
    floor = floor.sort_values("customer_id").reset_index(drop=True)
    product = product.sort_values("customer_id").reset_index(drop=True)
    for column in ("customer_id", "days"):
        assert floor[column].tolist() == product[column].astype(np.int64).tolist(), column
    for column in ("first_day", "last_day"):
        assert floor[column].to_numpy().astype("datetime64[D]").tolist() == (
            product[column].to_numpy().astype("datetime64[D]").tolist()
        ), column
    for column in ("total", "first_total"):
        np.testing.assert_allclose(floor[column], product[column].astype(float), err_msg=column)


@pytest.fixture
def paris_shop(settings):
    """Customers whose sales fall either side of local midnight across daylight saving, two
    on one day, a refund that takes nothing off the days, and customers the models leave
    out (archived, opted out, refunds only)."""
    settings.TIME_ZONE = "Europe/Paris"
    paris = ZoneInfo("Europe/Paris")
    ann, bob, cy = CustomerFactory(), CustomerFactory(), CustomerFactory()
    for customer, moments in (
        (bob, [datetime(2026, 3, 1, 12, 0)]),
        (ann, [datetime(2026, 3, 1, 10, 0), datetime(2026, 3, 28, 23, 30),
               datetime(2026, 3, 29, 0, 30), datetime(2026, 3, 29, 9, 0)]),
        (cy, [datetime(2026, 3, 1, 10, 0), datetime(2026, 3, 29, 23, 59),
              datetime(2026, 3, 30, 0, 30)]),
    ):  # fmt: skip
        for i, moment in enumerate(moments):
            sale(customer, at=moment.replace(tzinfo=paris), amount=f"{10 + i}.25")
    sale(cy, at=datetime(2026, 3, 30, 8, 0, tzinfo=paris), amount="5", kind=Purchase.Kind.REFUND)
    refunds_only = CustomerFactory()
    sale(refunds_only, at=datetime(2026, 3, 2, 8, 0, tzinfo=paris), kind=Purchase.Kind.REFUND)
    for flags in ({"is_archived": True}, {"profiling_opt_out": True}):
        left_out = CustomerFactory(**flags)
        sale(left_out, at=datetime(2026, 3, 2, 8, 0, tzinfo=paris))
    return {"ann": ann, "bob": bob, "cy": cy}


def test_the_floors_own_read_finds_the_products_purchase_days(paris_shop):
    as_of = date(2026, 3, 31)
    floor = own_read(as_of)

    assert_same_days(floor, prediction_selectors.customer_purchase_totals(as_of=as_of))
    days = dict(zip(floor["customer_id"], floor["days"], strict=True))
    assert days == {paris_shop["ann"].pk: 3, paris_shop["bob"].pk: 1, paris_shop["cy"].pk: 3}


def test_the_floors_own_read_stops_at_the_end_of_the_as_of_day(paris_shop):
    floor = own_read(date(2026, 3, 29))

    assert_same_days(floor, prediction_selectors.customer_purchase_totals(as_of=date(2026, 3, 29)))
    assert dict(zip(floor["customer_id"], floor["days"], strict=True))[paris_shop["cy"].pk] == 2


def test_the_kept_read_takes_the_kept_days_and_sums_the_changed_customers_again(paris_shop):
    today = timezone.localdate()
    totals = prediction_selectors.customer_purchase_totals_nightly(as_of=today, today=today)
    purchase_days_keep(summed=PurchaseDaysSummed.of(totals), run_id=SegmentationRunFactory().pk)
    ann = paris_shop["ann"]
    sale(ann, at=selectors.day_start(today) + timedelta(hours=1))

    read = prediction_floors.purchase_days_read_kept(as_of=today, changed_ids=[ann.pk])

    assert_same_days(read.frame, prediction_selectors.customer_purchase_totals(as_of=today))
    assert read.frame.set_index("customer_id").loc[ann.pk, "days"] == 4


def shop_figures(customers: int, seed: int = 7) -> pd.DataFrame:
    """Purchase-day figures of a shop whose customers buy at their own rate until they
    leave, the way the models assume."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2024-01-01", "D")
    first = start + rng.integers(0, 300, customers).astype("timedelta64[D]")
    rate = rng.gamma(0.8, 1 / 40, customers)  # purchases a day
    life = rng.exponential(250, customers)
    end = np.datetime64("2025-06-30", "D")
    days, last, total, first_total = [], [], [], []
    for i in range(customers):
        span = min(life[i], float((end - first[i]).astype(int)))
        repeats = np.unique(np.ceil(np.cumsum(rng.exponential(1 / rate[i], 60))))
        repeats = repeats[repeats <= span]
        spend = np.round(rng.gamma(4, 8, len(repeats) + 1), 2)
        days.append(len(repeats) + 1)
        last.append(first[i] + (int(repeats[-1]) if len(repeats) else 0))
        total.append(spend.sum())
        first_total.append(spend[0])
    return pd.DataFrame(
        {
            "customer_id": np.arange(1, customers + 1),
            "days": days,
            "first_day": first,
            "last_day": np.array(last, dtype="datetime64[D]"),
            "total": total,
            "first_total": first_total,
        }
    )


def test_the_floors_scores_are_the_products_predictions():
    figures = shop_figures(600)
    as_of = date(2025, 6, 30)

    scores, timing = prediction_floors.scores_compute(figures, as_of=as_of)

    summary = clv.rfm_from_totals(figures, as_of=as_of, time_unit_days=7.0)
    bgnbd = clv.bgnbd_fit(summary["x"], summary["t_x"], summary["T"])
    gg = clv.gamma_gamma_fit(summary["x"], summary["monetary"])
    product = clv.prediction_scores(
        summary, bgnbd=bgnbd, gg=gg, time_unit_days=7.0, monthly_discount=0.01
    )
    assert timing["converged"]
    assert scores["customer_id"].tolist() == product.index.tolist()
    for column in product.columns:
        np.testing.assert_allclose(scores[column], product[column], rtol=2e-3, err_msg=column)


def test_the_floor_keeps_every_row_and_builds_the_predictions_indexes_then_rolls_back():
    figures = shop_figures(200)
    scores, _ = prediction_floors.scores_compute(figures, as_of=date(2025, 6, 30))

    written = prediction_floors.predictions_write(scores, as_of=date(2025, 6, 30))
    kept = prediction_floors.purchase_days_keep(figures, as_of=date(2025, 6, 30))

    assert (written["rows"], kept["rows"]) == (200, 200)
    assert written["indexes"] >= 1  # the risk index Today lists by
    tables = connection.introspection.table_names()
    assert "bench_floor_predictions" not in tables
    assert "bench_floor_purchase_days" not in tables
