"""The Today lists: overdue, unhappy, due a welcome, newly at risk."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from crm.selectors import business_get
from crm.services import customer_stats_refresh, feedback_mark_answered
from offers.models import OfferResponse
from pages.today import (
    Action,
    customers_due_welcome,
    customers_newly_at_risk,
    customers_overdue,
    feedback_unhappy_unanswered,
    today_overview,
)
from segmentation.models import Segment, SegmentMembershipChange
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

NOW = timezone.now()


def _buyer(days_ago: list[int], amount="50.00", **fields):
    customer = CustomerFactory(**fields)
    for d in days_ago:
        PurchaseFactory(
            customer=customer, purchased_at=NOW - timedelta(days=d), amount=Decimal(amount)
        )
    return customer


def test_overdue_customers_are_those_late_by_their_own_rhythm_biggest_spenders_first():
    late = _buyer([120, 100, 80, 60, 40])  # every 20 days, 40 days since: 2x the rhythm
    later_richer = _buyer([130, 100, 70], amount="500.00")  # every 30 days, 70 since
    on_time = _buyer([105, 85, 65, 45, 25])  # every 20 days, 25 since: 1.25x
    _buyer([100, 50])  # two purchases are not a rhythm yet
    _buyer([900, 800, 700, 600, 500])  # silent for more than a year: lost, not overdue
    _buyer([30, 30, 30])  # three purchases on one day are one visit, not a rhythm
    _buyer([120, 100, 80, 60, 40], is_archived=True)
    customer_stats_refresh()

    items = customers_overdue(now=NOW)

    assert [i.customer for i in items] == [later_richer, late]
    assert on_time not in [i.customer for i in items]
    assert items[1].headline == "Usually buys every 20 days, last bought 40 days ago."
    assert items[1].numbers["rhythm_days"] == pytest.approx(20.0)
    assert items[1].action == Action.CONTACT
    assert customers_overdue(now=NOW, limit=1)[0].customer == later_richer


def test_the_overdue_list_walks_the_spending_index_of_customers_with_a_rhythm():
    # At a million customers a sort of every overdue customer took 1.2 s on SQLite; the
    # walk of this partial index in spending order stops after the first `limit` found.
    for days in ([120, 100, 80, 60, 40], [90, 60, 30]):
        _buyer(days)
    customer_stats_refresh()

    with CaptureQueriesContext(connection) as queries:
        customers_overdue(now=NOW)
    plan = _plan(queries.captured_queries[0]["sql"])

    assert "customer_overdue_value_idx" in plan
    assert "TEMP B-TREE" not in plan.upper() and "Sort" not in plan


def _plan(sql: str) -> str:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # On a few rows a sort costs nothing: rule it out with the table scan and the
            # bitmap read, so what is left shows whether the ordered walk can serve.
            for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
                cursor.execute(f"SET LOCAL {setting} = off")
            cursor.execute("EXPLAIN " + sql)
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + sql)
        return "\n".join(str(row) for row in cursor.fetchall())


def test_overdue_customers_get_the_best_open_offer_of_their_segment():
    segment = SegmentFactory()
    customer = _buyer([120, 100, 80, 60, 40], segment=segment)
    customer_stats_refresh()
    weak, strong = (OfferFactory(holdout_share=Decimal("0")) for _ in range(2))
    for offer in (weak, strong):
        offer.segments.add(segment)
    OfferResponseFactory(offer=strong, segment=segment, outcome=OfferResponse.Outcome.ACCEPTED)
    OfferResponseFactory(offer=weak, segment=segment, outcome=OfferResponse.Outcome.DECLINED)

    (item,) = customers_overdue(now=NOW)

    assert item.customer == customer
    assert item.offer == strong
    assert str(strong) in item.action_label


def test_unhappy_feedback_waits_until_it_is_answered():
    low_rating = FeedbackFactory(rating=2, nps=None, created_at=NOW - timedelta(days=2))
    detractor = FeedbackFactory(rating=4, nps=6, created_at=NOW - timedelta(days=1))
    FeedbackFactory(rating=5, nps=10)
    FeedbackFactory(rating=None, nps=7)
    FeedbackFactory(rating=1, answered_at=NOW)
    FeedbackFactory(rating=1, customer=CustomerFactory(is_archived=True))

    items = feedback_unhappy_unanswered()

    assert [i.feedback for i in items] == [detractor, low_rating]
    assert items[0].customer == detractor.customer
    assert items[0].action == Action.ANSWER_FEEDBACK
    assert "would recommend 6/10" in items[0].headline

    feedback_mark_answered(feedback=detractor)
    first_answer = detractor.answered_at
    feedback_mark_answered(feedback=detractor)

    assert detractor.answered_at == first_answer is not None
    assert [i.feedback for i in feedback_unhappy_unanswered()] == [low_rating]


def test_marking_feedback_answered_in_the_future_is_refused():
    feedback = FeedbackFactory(rating=1)
    with pytest.raises(ValidationError, match="future"):
        feedback_mark_answered(feedback=feedback, when=NOW + timedelta(days=1))
    feedback.refresh_from_db()
    assert feedback.answered_at is None


def test_an_open_offer_meant_for_every_segment_is_suggested_to_anyone_but_a_closed_one_is_not():
    segment = SegmentFactory()
    customer = _buyer([120, 100, 80, 60, 40], segment=segment)
    customer_stats_refresh()
    OfferFactory(holdout_share=Decimal("0"), is_active=False)
    OfferFactory(holdout_share=Decimal("0"), ends_on=timezone.localdate(NOW) - timedelta(days=1))
    for_all = OfferFactory(holdout_share=Decimal("0"))
    OfferFactory(holdout_share=Decimal("0")).segments.add(SegmentFactory())  # elsewhere

    (item,) = customers_overdue(now=NOW)

    assert item.customer == customer
    assert item.offer == for_all


def test_new_customers_without_any_offer_are_due_a_welcome_offer():
    segment = SegmentFactory(name="New customers")
    welcome = OfferFactory(holdout_share=Decimal("0"))
    welcome.segments.add(segment)
    older_new = _buyer([20], segment=segment)
    newest = _buyer([2], segment=segment)
    already_offered = _buyer([5], segment=segment)
    OfferResponseFactory(customer=already_offered, outcome=OfferResponse.Outcome.HOLDOUT)
    _buyer([60], segment=segment)  # not new any more
    CustomerFactory(segment=segment)  # never bought
    customer_stats_refresh()

    items = customers_due_welcome(now=NOW, days=30)

    assert [i.customer for i in items] == [older_new, newest]
    assert items[0].action == Action.PRESENT_OFFER
    assert items[0].offer == welcome
    assert items[0].headline == "First purchase 20 days ago; no offer made yet."


def test_high_value_customers_just_moved_to_an_at_risk_segment_are_listed_by_spend():
    Behaviour = Segment.Behaviour
    loyal = SegmentFactory(name="Loyal", behaviour=Behaviour.LOYAL)
    at_risk = SegmentFactory(name="At risk", behaviour=Behaviour.AT_RISK)
    # Renamed by the owner: the behaviour, not the name, says it is at risk.
    renamed = SegmentFactory(name="VIPs slipping", behaviour=Behaviour.CANT_LOSE)
    champions = SegmentFactory(name="At risk of nothing", behaviour=Behaviour.CHAMPIONS)
    previous, latest = SegmentationRunFactory(), SegmentationRunFactory()
    previous.finished_at = NOW - timedelta(days=1)
    previous.save()

    def moved(run, spent, source, target, *, now_in=None):
        customer = CustomerFactory(total_spent=Decimal(spent), segment=now_in or target)
        SegmentMembershipChange.objects.create(
            customer=customer, run=run, from_segment=source, to_segment=target
        )
        return customer

    big = moved(latest, "1000", loyal, renamed)
    medium = moved(latest, "500", loyal, at_risk)
    moved(latest, "2000", at_risk, renamed)  # was already at risk
    moved(latest, "3000", loyal, at_risk, now_in=loyal)  # pinned back since
    moved(latest, "4000", loyal, champions)
    moved(previous, "5000", loyal, at_risk)  # an older run
    moved(latest, "6000", None, at_risk)  # a first assignment, not a move

    items = customers_newly_at_risk(now=NOW)

    assert [i.customer for i in items] == [big, medium]
    assert items[0].from_segment == loyal
    assert "VIPs slipping" in items[0].headline
    assert [i.customer for i in customers_newly_at_risk(min_total_spent=600)] == [big]
    assert set(Segment.objects.at_risk()) == {at_risk, renamed}


def test_no_successful_run_means_nobody_newly_at_risk():
    assert customers_newly_at_risk() == []


def test_today_runs_the_same_number_of_queries_for_few_and_many_items(
    django_assert_max_num_queries,
):
    segment = SegmentFactory(name="At risk", behaviour=Segment.Behaviour.AT_RISK)
    loyal = SegmentFactory(name="Loyal", behaviour=Segment.Behaviour.LOYAL)
    offer = OfferFactory(holdout_share=Decimal("0"))
    offer.segments.add(segment)
    run = SegmentationRunFactory()
    for i in range(12):
        customer = _buyer([120, 100, 80, 60, 40], segment=segment)
        _buyer([3 + i], segment=segment)
        FeedbackFactory(customer=customer, rating=1)
        SegmentMembershipChange.objects.create(
            customer=customer, run=run, from_segment=loyal, to_segment=segment
        )
    customer_stats_refresh()
    business_get()  # read once a minute at most, by whichever page comes first

    with django_assert_max_num_queries(
        18
    ):  # 16 + the follow-ups due + the as-of day of the predictions
        overview = today_overview(now=NOW, limit=10)

    assert [len(x) for x in (overview.overdue, overview.unhappy)] == [10, 10]
    assert [len(x) for x in (overview.welcome, overview.at_risk)] == [10, 10]
    assert overview.count == 40
