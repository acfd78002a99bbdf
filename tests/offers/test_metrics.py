"""Offer and segment metrics against values computed by hand on a small fixture."""

import math
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from scipy.stats import t as t_distribution

from crm.metrics import wilson_interval
from crm.models import Purchase
from crm.services import customer_stats_refresh
from offers.metrics import offer_results, segment_results
from offers.models import OfferResponse
from segmentation.models import SegmentSnapshot
from tests.factories import (
    CustomerFactory,
    FeedbackFactory,
    OfferFactory,
    OfferResponseFactory,
    PurchaseFactory,
    SegmentationRunFactory,
    SegmentFactory,
)

pytestmark = pytest.mark.django_db

Outcome = OfferResponse.Outcome
NOW = timezone.now()
P = NOW - timedelta(days=60)  # when the offer was presented


def _buy(customer, days_after_presentation, amount, kind=Purchase.Kind.SALE):
    PurchaseFactory(
        customer=customer,
        purchased_at=P + timedelta(days=days_after_presentation),
        amount=Decimal(amount),
        kind=kind,
    )


@pytest.fixture
def campaign():
    """Four treated customers and two held out, with purchases before and after."""
    segment = SegmentFactory(name="Loyal")
    offer = OfferFactory(
        discount_percent=Decimal("10"), fixed_cost=Decimal("5"), attribution_days=30
    )
    c1, c2, c3, c4, h1, h2 = CustomerFactory.create_batch(6, segment=segment)

    def respond(customer, outcome, answered_days=None):
        OfferResponseFactory(
            offer=offer,
            customer=customer,
            segment=segment,
            outcome=outcome,
            presented_at=P,
            responded_at=None if answered_days is None else P + timedelta(days=answered_days),
        )

    respond(c1, Outcome.ACCEPTED, 1)
    respond(c2, Outcome.ACCEPTED, 1)
    respond(c3, Outcome.DECLINED, 2)
    respond(c4, Outcome.PRESENTED)
    respond(h1, Outcome.HOLDOUT)
    respond(h2, Outcome.HOLDOUT)
    _buy(c1, 2, "100")  # attributed, in the lift window
    _buy(c1, 40, "50")  # after both windows
    _buy(c2, 10, "200")  # attributed, in the lift window
    _buy(c2, 11, "70", kind=Purchase.Kind.REFUND)  # refunds are not sales
    _buy(c3, 5, "20")  # declined but bought: counts for lift, not attribution
    _buy(c4, -5, "80")  # before the presentation
    _buy(h1, 3, "30")
    return offer, segment


def test_offer_results_match_hand_computed_acceptance_revenue_cost_and_roi(campaign):
    offer, _ = campaign

    results = offer_results(offer=offer)

    total = results.total
    assert (total.presented, total.accepted, total.declined) == (4, 2, 1)
    assert (total.awaiting, total.holdout) == (1, 2)
    assert total.acceptance_rate == 0.5
    # Wilson 95% for 2 of 4: 0.5 ± 1.96·sqrt(0.0625 + 0.060025) / 1.9604
    assert total.acceptance_interval == pytest.approx((0.15004, 0.84996), abs=1e-4)
    assert total.attributed_revenue == Decimal("300.00")
    assert total.cost == Decimal("40.00")  # 10% of 300 + 2 x 5
    assert total.roi == pytest.approx(6.5)  # (300 - 40) / 40
    assert [s.segment_name for s in results.segments] == ["Loyal"]
    assert results.segments[0].attributed_revenue == Decimal("300.00")


def test_offer_lift_against_the_holdout_matches_hand_computed_values(campaign):
    offer, _ = campaign

    lift = offer_results(offer=offer).total.lift

    # Within 30 days of presentation: treated 100, 200, 20, 0; held out 30, 0.
    assert (lift.treated, lift.control) == (4, 2)
    assert lift.treated_rate == 0.75
    assert lift.control_rate == 0.5
    assert lift.rate_lift == pytest.approx(0.25)
    half = 1.959964 * math.sqrt(0.75 * 0.25 / 4 + 0.5 * 0.5 / 2)
    assert lift.rate_lift_interval == pytest.approx((0.25 - half, 0.25 + half), abs=1e-5)
    assert lift.treated_revenue_per_customer == pytest.approx(80.0)
    assert lift.control_revenue_per_customer == pytest.approx(15.0)
    assert lift.revenue_lift == pytest.approx(65.0)
    # Welch: variances 24800/3 and 450; df from Welch-Satterthwaite.
    a, b = 24800 / 3 / 4, 450 / 2
    df = (a + b) ** 2 / (a * a / 3 + b * b / 1)
    half = t_distribution.ppf(0.975, df) * math.sqrt(a + b)
    assert lift.revenue_lift_interval == pytest.approx((65 - half, 65 + half), rel=1e-6)


def test_an_offer_that_cost_nothing_has_no_return_ratio():
    offer = OfferFactory(discount_percent=None, fixed_cost=None)
    customer = CustomerFactory()
    OfferResponseFactory(offer=offer, customer=customer, outcome=Outcome.ACCEPTED, responded_at=NOW)

    total = offer_results(offer=offer).total

    assert total.cost == Decimal("0.00")
    assert total.roi is None
    assert total.lift.control_rate is None
    assert total.lift.rate_lift_interval is None


def test_offer_results_run_a_bounded_number_of_queries(campaign, django_assert_num_queries):
    offer, _ = campaign
    with django_assert_num_queries(2):
        offer_results(offer=offer)


@pytest.fixture
def members():
    """A segment with four buyers of different histories and their feedback."""
    segment = SegmentFactory(name="Regulars")
    r1, r2, r3, r4 = CustomerFactory.create_batch(4, segment=segment)
    outsider = CustomerFactory(segment=SegmentFactory())
    for customer, days_ago in [
        (r1, 200),
        (r1, 10),  # bought before the window and again in it: retained
        (r2, 300),  # bought before, not since
        (r3, 30),  # first purchase inside the window: not in the base
        (r4, 150),
        (r4, 100),  # both before the window
        (outsider, 200),
        (outsider, 5),
    ]:
        PurchaseFactory(customer=customer, purchased_at=NOW - timedelta(days=days_ago))
    customer_stats_refresh()
    month_ago = NOW - timedelta(days=32)
    for customer, rating, nps, created in [
        (r1, 5, 10, NOW),
        (r2, 4, 9, NOW),
        (r3, None, 9, month_ago),
        (r4, 1, 6, month_ago),
        (r4, None, 8, month_ago),
        (outsider, 1, 0, NOW),
    ]:
        FeedbackFactory(customer=customer, rating=rating, nps=nps, created_at=created)
    return segment, (r1, r2, r3, r4)


def test_segment_results_match_hand_computed_retention_nps_and_rating(members):
    segment, _ = members

    results = segment_results(segment=segment, now=NOW, retention_days=90)

    assert (results.retention_base, results.retained) == (3, 1)
    assert results.retention_rate == pytest.approx(1 / 3)
    assert results.retention_interval == pytest.approx(wilson_interval(1, 3))
    assert results.ratings == 3
    assert results.avg_rating == pytest.approx(10 / 3)
    # Promoters 10, 9, 9; detractor 6; passive 8 -> (3 - 1) / 5 = 40.
    assert (results.promoters, results.detractors, results.nps_answers) == (3, 1, 5)
    assert results.nps == pytest.approx(40.0)


def test_segment_results_give_acceptance_over_all_offers_and_per_offer(members):
    segment, (r1, r2, r3, r4) = members
    first, second = OfferFactory(), OfferFactory()
    for customer, offer, outcome in [
        (r1, first, Outcome.ACCEPTED),
        (r2, first, Outcome.DECLINED),
        (r3, first, Outcome.HOLDOUT),
        (r1, second, Outcome.ACCEPTED),
        (r4, second, Outcome.PRESENTED),
        (r2, second, Outcome.ACCEPTED),
    ]:
        OfferResponseFactory(
            offer=offer, customer=customer, segment=segment, outcome=outcome, responded_at=NOW
        )

    results = segment_results(segment=segment, now=NOW)

    assert (results.presented, results.accepted) == (5, 3)
    assert results.acceptance_rate == pytest.approx(0.6)
    per_offer = {row.offer.pk: row.figures for row in results.offers}
    assert per_offer[first.pk].acceptance_rate == 0.5
    assert per_offer[first.pk].holdout == 1
    assert per_offer[second.pk].acceptance_rate == pytest.approx(2 / 3)


def test_segment_satisfaction_trend_is_monthly_with_snapshots_oldest_first(members):
    segment, (r1, *_) = members
    FeedbackFactory(customer=r1, rating=2, nps=None, created_at=NOW - timedelta(days=400))
    older = SegmentationRunFactory(finished_at=NOW - timedelta(days=7))
    newer = SegmentationRunFactory(finished_at=NOW)
    SegmentSnapshot.objects.create(run=newer, segment=segment, size=4, avg_rating=3.3, nps=40)
    SegmentSnapshot.objects.create(run=older, segment=segment, size=3, avg_rating=4.0, nps=50)

    results = segment_results(segment=segment, now=NOW)

    assert [p.ratings for p in results.trend] == [1, 2]
    last_month, this_month = results.trend
    assert last_month.month < this_month.month
    assert last_month.avg_rating == pytest.approx(1.0)
    assert last_month.nps == pytest.approx(0.0)  # 9 and 6 and 8: (1 - 1) / 3
    assert this_month.avg_rating == pytest.approx(4.5)
    assert this_month.nps == pytest.approx(100.0)
    assert [s.run_id for s in results.snapshots] == [older.pk, newer.pk]
    # The year-old rating counts in the all-time average, not in the 12-month trend.
    assert results.ratings == 4
    assert results.avg_rating == pytest.approx(12 / 4)
