"""The nightly read of the purchase totals: kept purchase days that still hold are read as
they are, every other customer is summed, and the frame is the full aggregate's, exactly."""

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from django.db import connection
from django.forms.models import model_to_dict
from django.utils import timezone

from crm.models import Customer, Purchase
from crm.services import customer_stats_refresh
from segmentation import customer_rows, prediction_selectors, selectors
from segmentation.local_days import LocalDays
from segmentation.models import CustomerPurchaseDays
from segmentation.predictions import PurchaseDaysSummed, purchase_days_keep
from tests.factories import (
    CustomerFactory,
    PurchaseDaysReadFactory,
    PurchaseFactory,
    SegmentationRunFactory,
)

pytestmark = pytest.mark.django_db


def settled() -> None:
    """As if every purchase so far had been written days ago: a kept row is trusted only
    for purchases unchanged since a day before it was summed."""
    Customer.objects.update(purchases_changed_at=timezone.now() - timedelta(days=3))


def night(*, today: date | None = None) -> set[int]:
    """A run's nightly read as of ``today``, checked against the full aggregate, its summed
    rows kept as the run keeps them. Returns the customers it summed (the rest were read
    as kept).

    Read both ways: judging the kept rows beside every customer, and, as a run does, by the
    customers its feature read found (RunBuyers); both must sum the same customers."""
    today = today or timezone.localdate()
    totals = prediction_selectors.customer_purchase_totals_nightly(as_of=today, today=today)
    features = selectors.customer_features(reference_time=timezone.now()).frame
    by_buyers = prediction_selectors.customer_purchase_totals_nightly(
        as_of=today, today=today, buyers=prediction_selectors.RunBuyers.of_features(features)
    )
    full = prediction_selectors.customer_purchase_totals(as_of=today)
    pd.testing.assert_frame_equal(totals.frame, full)
    pd.testing.assert_frame_equal(by_buyers.frame, full)
    np.testing.assert_array_equal(by_buyers.summed, totals.summed)
    purchase_days_keep(summed=PurchaseDaysSummed.of(totals), run_id=SegmentationRunFactory().pk)
    return set(totals.frame["customer_id"][totals.summed].tolist())


def sale(customer, *, at: datetime, amount: str = "20", kind: str = Purchase.Kind.SALE):
    return PurchaseFactory(customer=customer, purchased_at=at, amount=Decimal(amount), kind=kind)


def days_ago(days: int, hour: int = 12) -> datetime:
    return selectors.day_start(timezone.localdate() - timedelta(days=days)) + timedelta(hours=hour)


@pytest.fixture
def shop() -> dict[str, Customer]:
    """Ann and Bob, who have bought on a few days; settled, then a first night keeps them."""
    customers = {name: CustomerFactory(name=name) for name in ("ann", "bob")}
    for customer in customers.values():
        for days, amount in ((60, "40"), (30, "25.10"), (10, "7.5")):
            sale(customer, at=days_ago(days), amount=amount)
    settled()
    assert night() == {c.pk for c in customers.values()}  # the first night sums everyone
    return customers


def test_the_first_night_sums_everyone_and_keeps_what_it_summed(shop):
    kept = CustomerPurchaseDays.objects.order_by("customer_id")
    full = prediction_selectors.customer_purchase_totals(as_of=timezone.localdate())
    assert [(k.customer_id, k.days, k.total, k.first_total) for k in kept] == list(
        full[["customer_id", "days", "total", "first_total"]].itertuples(index=False, name=None)
    )
    ann = kept.get(customer=shop["ann"])
    assert (ann.first_day, ann.last_day) == (
        timezone.localdate() - timedelta(days=60),
        timezone.localdate() - timedelta(days=10),
    )
    assert ann.read.as_of == timezone.localdate()
    assert ann.read.time_zone == timezone.get_current_timezone_name()


def test_unchanged_customers_are_read_as_kept(shop):
    ann = CustomerPurchaseDays.objects.get(customer=shop["ann"])

    assert night() == set()

    assert CustomerPurchaseDays.objects.get(customer=shop["ann"]).read_id == ann.read_id


def test_a_new_sale_has_its_customer_summed_again(shop):
    sale(shop["ann"], at=days_ago(0, hour=1), amount="12")
    assert night() == {shop["ann"].pk}
    # Summed again the next night too: the sale was written less than a day before the
    # read that kept it (its transaction may not have been seen).
    assert night() == {shop["ann"].pk}


def test_a_deleted_sale_has_its_customer_summed_again(shop):
    shop["ann"].purchases.order_by("purchased_at").last().delete()
    customer_stats_refresh(customer_ids=[shop["ann"].pk])
    assert night() == {shop["ann"].pk}


def test_a_sale_moved_onto_another_sales_day_is_seen_though_the_customers_figures_are_not(
    shop,
):
    ann = shop["ann"]
    before = Customer.objects.values_list(
        "purchase_count", "total_spent", "first_purchase_at", "last_purchase_at"
    ).get(pk=ann.pk)
    # The sale of 30 days ago moves to the first day: one purchase day less and a bigger
    # first day, with the same count, total, first and last sale.
    moved = ann.purchases.get(purchased_at=days_ago(30))
    moved.purchased_at = days_ago(60, hour=15)
    moved.save()
    customer_stats_refresh(customer_ids=[ann.pk])
    assert (
        Customer.objects.values_list(
            "purchase_count", "total_spent", "first_purchase_at", "last_purchase_at"
        ).get(pk=ann.pk)
        == before
    )

    assert night() == {ann.pk}

    assert CustomerPurchaseDays.objects.values_list("days", "first_total").get(customer=ann) == (
        2,
        pytest.approx(65.10),
    )


def test_a_refund_has_its_customer_summed_again(shop):
    sale(shop["bob"], at=days_ago(10, hour=13), amount="7.5", kind=Purchase.Kind.REFUND)
    assert night() == {shop["bob"].pk}


def test_two_sales_on_one_local_day_make_one_purchase_day(shop):
    sale(shop["ann"], at=days_ago(0, hour=1), amount="3")
    sale(shop["ann"], at=days_ago(0, hour=2), amount="4")

    assert night() == {shop["ann"].pk}

    kept = CustomerPurchaseDays.objects.get(customer=shop["ann"])
    assert (kept.days, kept.last_day) == (4, timezone.localdate())


def test_sales_either_side_of_local_midnight_across_daylight_saving(settings):
    settings.TIME_ZONE = "Europe/Paris"
    paris = ZoneInfo("Europe/Paris")
    ann, bob, cy = CustomerFactory(), CustomerFactory(), CustomerFactory()
    for customer, locals_ in (
        (bob, [datetime(2026, 3, 1, 12, 0)]),
        # Winter time: 23:30 is 22:30 UTC on the 28th, and 00:30 on the 29th is 23:30 UTC
        # on the 28th still.
        (ann, [datetime(2026, 3, 1, 10, 0), datetime(2026, 3, 28, 23, 30),
               datetime(2026, 3, 29, 0, 30)]),
        # Summer time since 2:00 on the 29th: 23:59 is 21:59 UTC, and 00:30 on the 30th is
        # 22:30 UTC on the 29th.
        (cy, [datetime(2026, 3, 1, 10, 0), datetime(2026, 3, 29, 23, 59),
              datetime(2026, 3, 30, 0, 30)]),
    ):  # fmt: skip
        for local in locals_:
            sale(customer, at=local.replace(tzinfo=paris))
    settled()

    assert night(today=date(2026, 3, 28)) == {ann.pk, bob.pk, cy.pk}
    # Their last sales were already written, each on the local day after the kept one
    # (though not in UTC): summed again the night that day is in.
    assert night(today=date(2026, 3, 29)) == {ann.pk, cy.pk}
    assert night(today=date(2026, 3, 30)) == {cy.pk}
    assert night(today=date(2026, 3, 31)) == set()
    assert dict(CustomerPurchaseDays.objects.values_list("customer_id", "days")) == {
        ann.pk: 3,
        bob.pk: 1,
        cy.pk: 3,
    }


def test_a_change_of_time_zone_sums_everyone_again(shop, settings):
    # 23:30 UTC yesterday is today in Berlin: Ann's kept last day would be wrong there.
    yesterday = timezone.localdate() - timedelta(days=1)
    sale(shop["ann"], at=datetime.combine(yesterday, time(23, 30), tzinfo=UTC))
    night()

    settings.TIME_ZONE = "Europe/Berlin"
    today = timezone.localdate()
    totals = prediction_selectors.customer_purchase_totals_nightly(as_of=today, today=today)

    assert totals.all_summed and totals.summed.all()
    pd.testing.assert_frame_equal(
        totals.frame, prediction_selectors.customer_purchase_totals(as_of=today)
    )


@pytest.mark.parametrize(
    "change",
    [{"time_zone": "Europe/Berlin"}, {"as_of": timezone.localdate() + timedelta(days=1)}],
    ids=["another zone", "as of a later day"],
)
def test_a_kept_row_summed_in_another_zone_or_up_to_a_later_day_is_never_read(shop, change):
    # Wrong figures, which a read of the row would give away, from a read of their own.
    ann = CustomerPurchaseDays.objects.select_related("read").get(customer=shop["ann"])
    read = PurchaseDaysReadFactory(**{**model_to_dict(ann.read, exclude=["id"]), **change})
    CustomerPurchaseDays.objects.filter(customer=shop["ann"]).update(days=99, read=read)
    assert night() == {shop["ann"].pk}


@pytest.mark.parametrize("field", ["is_archived", "profiling_opt_out"])
def test_a_customer_no_longer_profiled_is_left_out_then_read_as_kept_again(shop, field):
    ann = shop["ann"]
    Customer.objects.filter(pk=ann.pk).update(**{field: True})
    assert night() == set()  # the full aggregate has no Ann either (checked)

    Customer.objects.filter(pk=ann.pk).update(**{field: False})
    assert night() == set()  # her purchases did not change: her kept days still hold


def test_a_deleted_customer_is_left_out_and_their_kept_row_swept(shop):
    ann_id = shop["ann"].pk
    # Raw deletes, as a concurrent transaction would leave things: no cascade.
    Purchase.objects.filter(customer_id=ann_id)._raw_delete(Purchase.objects.db)
    Customer.objects.filter(pk=ann_id)._raw_delete(Customer.objects.db)

    assert night() == set()

    assert customer_rows.customer_orphans_delete()["segmentation.customerpurchasedays"] == 1
    assert not CustomerPurchaseDays.objects.filter(customer_id=ann_id).exists()
    shop["bob"].delete()  # through the ORM: their kept row goes with them
    assert not CustomerPurchaseDays.objects.exists()


def test_a_sale_dated_ahead_is_summed_on_the_night_its_day_comes(shop):
    tomorrow = timezone.localdate() + timedelta(days=1)
    # The first moment of tomorrow (sales may be dated up to a day ahead).
    sale(shop["ann"], at=selectors.day_start(tomorrow), amount="99")
    settled()  # long written: her kept days as of today are right, they end before it
    # Kept as of today, without the sale: summed again each night until its day comes.
    assert night() == {shop["ann"].pk}
    assert night() == {shop["ann"].pk}

    assert night(today=tomorrow) == {shop["ann"].pk}
    assert CustomerPurchaseDays.objects.get(customer=shop["ann"]).last_day == tomorrow
    assert night(today=tomorrow) == set()


def test_a_run_as_of_an_earlier_day_sums_everyone_and_keeps_nothing(shop):
    earlier = timezone.localdate() - timedelta(days=20)
    totals = prediction_selectors.customer_purchase_totals_nightly(as_of=earlier)

    assert totals.summed.all() and totals.keep is None
    pd.testing.assert_frame_equal(
        totals.frame, prediction_selectors.customer_purchase_totals(as_of=earlier)
    )


def sql_totals(*, as_of: date) -> pd.DataFrame:
    """The same totals grouped by local day in SQL (the nightly read's statement for the
    customers it sums; on PostgreSQL, with its own zone rules)."""
    until = selectors._day_end(as_of)
    end = connection.ops.adapt_datetimefield_value(until)
    tz = timezone.get_current_timezone_name()
    if connection.vendor == "postgresql":
        sql = prediction_selectors._totals_sql_postgresql()
        return prediction_selectors._frame_from_copy(
            prediction_selectors._copy_out(sql, tz=tz, end=end)
        )
    with connection.cursor() as cur:
        cur.execute(
            prediction_selectors._totals_sql_sqlite(tz=tz, until=until),
            {"sale": Purchase.Kind.SALE, "end": end},
        )
        return prediction_selectors._frame_from_rows(cur.fetchall())


@pytest.mark.parametrize("zone", ["Europe/London", "America/Santiago"])
def test_the_full_read_in_blocks_is_the_databases_own_aggregate(settings, monkeypatch, zone):
    """The full read takes every purchase in blocks of customers and sums the local days
    in numpy: blocks with a gap, a refund or a customer no longer profiled, and Santiago's
    clock going back from 24:00 to 23:00 (a later sale at an earlier hour of the same
    day) give the totals a GROUP BY in the database does, to the cent."""
    settings.TIME_ZONE = zone
    monkeypatch.setattr(prediction_selectors, "_BLOCK_CUSTOMERS", 2)
    local = ZoneInfo(zone)
    customers = [CustomerFactory() for _ in range(7)]
    customers[2].delete()  # a block with a gap
    at = datetime(2026, 4, 4, 23, 40, tzinfo=local)  # Santiago: 40 minutes before 24:00
    for n, customer in enumerate(customers[:2] + customers[3:]):
        sale(customer, at=at - timedelta(days=40 + n), amount="10.05")
        sale(customer, at=at, amount="0.10")
        sale(customer, at=at + timedelta(minutes=30), amount="0.20")  # Santiago: 23:10
        sale(customer, at=at + timedelta(minutes=90), amount="3.33")  # Santiago: 00:10, 5th
    sale(customers[3], at=at - timedelta(days=2), amount="7", kind=Purchase.Kind.REFUND)
    sale(customers[4], at=at, amount="0.30", kind=Purchase.Kind.REFUND)
    Customer.objects.filter(pk=customers[5].pk).update(profiling_opt_out=True)
    as_of = date(2026, 4, 10)

    blocks = prediction_selectors.customer_purchase_totals(as_of=as_of)

    pd.testing.assert_frame_equal(blocks, sql_totals(as_of=as_of), check_exact=True)
    assert len(blocks) == 5  # the deleted and the opted-out customers are left out
    assert blocks["days"].tolist() == [3] * 5  # 40 days before, the 4th and the 5th


def test_purchases_out_of_time_order_are_grouped_by_customer_and_day_all_the_same():
    """The block read relies on the index's order only when it holds (a zone whose clock
    goes back over midnight, or another plan, breaks it): it sorts otherwise."""
    zone = LocalDays(ZoneInfo("UTC"), until=datetime(2026, 1, 1, tzinfo=UTC))
    day = 86_400
    ids = np.array([7, 7, 5, 7, 5])
    seconds = np.array([3 * day + 5, 1 * day, 2 * day, 3 * day + 9, 2 * day + 1])
    amounts = np.array([1.10, 2.00, 0.05, 0.90, 4.00])

    groups = prediction_selectors._day_groups(ids, seconds, amounts, zone)

    assert [g.tolist() for g in groups] == [[5, 7, 7], [2, 1, 3], [2, 1, 2], [405, 200, 200]]


def test_when_most_customers_changed_the_night_sums_every_purchase_once(shop, monkeypatch):
    monkeypatch.setattr(prediction_selectors, "_FULL_READ_MIN_STALE", 0)
    for customer in shop.values():
        sale(customer, at=days_ago(0, hour=1), amount="3")
    today = timezone.localdate()

    totals = prediction_selectors.customer_purchase_totals_nightly(as_of=today, today=today)

    assert totals.all_summed and totals.summed.all()
    pd.testing.assert_frame_equal(
        totals.frame, prediction_selectors.customer_purchase_totals(as_of=today)
    )
