"""The owner sees the predictions in words: customer page, segment page, Today, dashboard."""

from datetime import datetime, time, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from crm.models import Purchase
from crm.services import activity_log
from pages.today import today_overview
from segmentation import clv_words, prediction_selectors, predictions, selectors
from segmentation.models import CustomerFeatures, Membership, SegmentationRun, moment_us
from tests.factories import (
    CustomerFactory,
    CustomerPredictionFactory,
    PurchaseFactory,
    SegmentationRunFactory,
    SegmentFactory,
)

pytestmark = pytest.mark.django_db


def test_the_customer_page_says_in_words_what_the_customer_will_likely_do(staff_client):
    customer = CustomerFactory()
    as_of = timezone.localdate() - timedelta(days=2)
    # 6 purchase days over 40 weeks, the last one 3 weeks before the predictions' day; a
    # second sale on a day already counted, a refund and a sale after that day count for
    # nothing.
    for weeks in (43, 35, 27, 19, 11, 3):
        PurchaseFactory(customer=customer, purchased_at=moment(as_of - timedelta(weeks=weeks)))
    PurchaseFactory(customer=customer, purchased_at=moment(as_of - timedelta(weeks=3)))
    PurchaseFactory(
        customer=customer,
        purchased_at=moment(as_of - timedelta(weeks=1)),
        kind=Purchase.Kind.REFUND,
    )
    PurchaseFactory(customer=customer, purchased_at=moment(as_of + timedelta(days=1)))
    CustomerPredictionFactory(
        customer=customer, as_of=as_of, p_alive=0.95, expected_purchases_90d=2.1
    )

    page = staff_client.get(reverse("pages:customer_detail", args=[customer.pk])).content.decode()

    assert "Very likely still a customer" in page
    assert "about 2 purchases expected in the next 90 days" in page
    assert "worth about 340\u00a0EUR over the next year" in page
    assert "Bought on 6 different days over 9 months; the last time 3 weeks ago." in page


def test_a_prediction_whose_sales_are_gone_keeps_its_figures_without_a_basis(staff_client):
    customer = CustomerFactory()
    CustomerPredictionFactory(customer=customer, p_alive=0.95, expected_purchases_90d=2.1)

    page = staff_client.get(reverse("pages:customer_detail", args=[customer.pk])).content.decode()

    assert "Very likely still a customer" in page
    assert "Bought on" not in page


def moment(day):
    """Noon of ``day`` in the business's time zone."""
    return timezone.make_aware(datetime.combine(day, time(12)))


def test_without_a_prediction_the_customer_page_says_why_instead_of_a_number(staff_client):
    customer = CustomerFactory(purchase_count=1)
    SegmentationRunFactory(
        predictions={
            "status": "not_enough_data",
            "reason": "Only 12 customers have bought more than once; predictions need 150.",
        }
    )

    page = staff_client.get(reverse("pages:customer_detail", args=[customer.pk])).content.decode()

    assert "Not enough data yet" in page
    assert "predictions need 150" in page
    assert "Still a customer" not in page


def test_the_segment_page_shows_the_expected_year_and_who_is_likely_gone(staff_client):
    segment = SegmentFactory()
    for p_alive, value in ((0.9, 300.0), (0.3, 50.0), (0.2, 10.0)):
        CustomerPredictionFactory(
            customer=CustomerFactory(segment=segment), p_alive=p_alive, value_12m=value
        )

    page = staff_client.get(reverse("pages:segment_detail", args=[segment.pk])).content.decode()

    assert "expected from 3 members; 2 likely gone" in page
    assert "360.00" in page


def test_today_lists_valuable_customers_slipping_away_most_value_at_risk_first():
    steady = CustomerPredictionFactory(p_alive=0.95, value_12m=950.0)  # at risk: 50
    drifting = CustomerPredictionFactory(p_alive=0.25, value_12m=250.0)  # at risk: 750
    fading = CustomerPredictionFactory(p_alive=0.5, value_12m=200.0)  # at risk: 200

    slipping = today_overview().slipping

    assert [item.customer.pk for item in slipping] == [
        drifting.customer_id,
        fading.customer_id,
        steady.customer_id,
    ]
    assert slipping[0].headline == (
        "Worth about 1,000\u00a0EUR over the next year if still a customer, and a 75% chance "
        "they have already gone."
    )


def test_a_run_records_what_really_came_once_its_thirty_days_have_passed():
    as_of = timezone.localdate() - timedelta(days=40)
    run = SegmentationRunFactory(
        predictions={
            "status": "ok",
            "as_of": as_of.isoformat(),
            "expected_purchases_30d_total": 2.5,
        }
    )
    regular, newcomer = CustomerFactory(), CustomerFactory()
    PurchaseFactory(customer=regular, purchased_at=timezone.now() - timedelta(days=300))
    for customer, days_after in ((regular, 5), (regular, 5), (regular, 12), (newcomer, 6)):
        PurchaseFactory(
            customer=customer,
            amount=Decimal("20"),
            purchased_at=selectors.day_start(as_of + timedelta(days=days_after))
            + timedelta(hours=10),
        )
    PurchaseFactory(
        customer=regular,
        amount=Decimal("9"),
        kind=Purchase.Kind.REFUND,
        purchased_at=selectors.day_start(as_of + timedelta(days=8)),
    )

    assert predictions.predictions_track_record_fill() == 1
    assert predictions.predictions_track_record_fill() == 0  # counted once

    run.refresh_from_db()
    # Two purchase days of a customer who had bought before the run; the newcomer and the
    # refund do not count, two purchases on one day count once.
    assert run.predictions["actual_purchases_30d"] == 2
    assert prediction_selectors.predictions_track_record() == [
        {"as_of": as_of.isoformat(), "predicted": 2.5, "actual": 2}
    ]


def test_a_run_whose_thirty_days_are_still_running_has_no_actual_figure_yet():
    as_of = timezone.localdate() - timedelta(days=3)
    SegmentationRunFactory(
        predictions={
            "status": "ok",
            "as_of": as_of.isoformat(),
            "expected_purchases_30d_total": 4.0,
        }
    )
    SegmentationRunFactory(predictions={"status": "not_enough_data", "reason": "few"})

    assert predictions.predictions_track_record_fill() == 0
    assert prediction_selectors.predictions_track_record() == [
        {"as_of": as_of.isoformat(), "predicted": 4.0, "actual": None}
    ]


def test_the_dashboard_carries_the_track_record_for_its_chart(staff_client):
    SegmentationRunFactory(
        predictions={"status": "ok", "as_of": "2026-01-01", "expected_purchases_30d_total": 4.0}
    )

    response = staff_client.get(reverse("pages:dashboard"))

    assert response.context["charts"]["predictions"][0]["predicted"] == 4.0
    assert 'id="chart-predictions"' in response.content.decode()


@pytest.mark.parametrize(
    ("x", "t_x", "T", "expected"),
    [
        (0, 0.0, 2.0, "Bought once, 2 weeks ago."),
        (0, 0.0, 0.01, "Bought once, today."),
        (3, 20.0, 20.0, "Bought on 4 different days over 5 months; the last time today."),
        (1, 2.0, 60.0, "Bought on 2 different days over 2 weeks; the last time 13 months ago."),
    ],
)
def test_what_a_prediction_rests_on_is_said_in_plain_words(x, t_x, T, expected):
    assert clv_words.prediction_basis(x=x, t_x=t_x, T=T, time_unit_days=7) == expected


def test_a_failed_or_thin_run_keeps_the_track_record_of_earlier_runs():
    SegmentationRunFactory(
        status=SegmentationRun.Status.SUCCEEDED,
        predictions={"status": "ok", "as_of": "2026-01-01", "expected_purchases_30d_total": 1.0},
    )
    SegmentationRunFactory(status=SegmentationRun.Status.FAILED, predictions={})

    assert [p["predicted"] for p in prediction_selectors.predictions_track_record()] == [1.0]


def test_a_customer_the_owner_already_called_leaves_the_slipping_away_list(alice):
    drifting = CustomerPredictionFactory(p_alive=0.25, value_12m=250.0)
    other = CustomerPredictionFactory(p_alive=0.5, value_12m=200.0)
    activity_log(customer=drifting.customer, kind="call", summary="Called", user=alice)

    slipping = today_overview().slipping

    assert [item.customer.pk for item in slipping] == [other.customer_id]


def test_the_last_purchase_is_counted_in_calendar_days_as_the_outlook_beside_it(staff_client):
    """A sale at 23:00 the day before yesterday is "2 days ago" in the card at the top, as
    the outlook and the segment's reasons count it, though fewer than 48 hours have passed
    by early morning."""
    customer = CustomerFactory()
    two_days_before = selectors.day_start(timezone.localdate() - timedelta(days=2))
    PurchaseFactory(customer=customer, purchased_at=two_days_before + timedelta(hours=23))
    customer.refresh_from_db()
    # Look at the page at 05:00 today, under 48 hours after the sale.
    early = selectors.day_start(timezone.localdate()) + timedelta(hours=5)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(timezone, "now", lambda: early)
        page = staff_client.get(reverse("pages:customer_detail", args=[customer.pk]))

    assert customer.last_purchase_at is not None
    assert "2 days ago" in page.content.decode()
    assert "1 day ago" not in page.content.decode()


def test_why_this_segment_counts_the_last_sale_in_calendar_days_too(staff_client):
    """The run at 05:00 counted the sale at 23:00 the day before yesterday 30 hours back;
    the segment's reasons still say "2 days ago", as the card above them."""
    customer = CustomerFactory()
    two_days_before = selectors.day_start(timezone.localdate() - timedelta(days=2))
    sale = two_days_before + timedelta(hours=23)
    PurchaseFactory(customer=customer, purchased_at=sale, amount=Decimal("40"))
    early = selectors.day_start(timezone.localdate()) + timedelta(hours=5)
    SegmentationRunFactory(reference_time=early)
    CustomerFeatures.objects.create(
        customer=customer,
        last_purchase_us=moment_us(sale),
        first_purchase_us=moment_us(sale),
        frequency=1,
        monetary_total=40.0,
        avg_order_value=40.0,
    )
    Membership.objects.create(customer=customer, segment=SegmentFactory())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(timezone, "now", lambda: early)
        page = staff_client.get(reverse("pages:customer_detail", args=[customer.pk]))

    why = page.content.decode().split('id="segment-why"')[1].split("</ul>")[0]
    assert "Last bought 2 days ago" in why
    assert "First bought 2 days ago" in why
