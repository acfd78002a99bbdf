"""Presenting offers with a control group, recording answers, ranking offers per customer."""

from datetime import timedelta
from decimal import Decimal

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from crm.models import Customer
from offers.models import Offer, OfferResponse
from offers.services import (
    RANKING_METHOD,
    OfferEvidence,
    holdout_draw,
    offer_present,
    offer_response_record,
    offer_save,
    offers_ranked,
    offers_ranked_for_customer,
)
from tests.factories import CustomerFactory, OfferFactory, OfferResponseFactory, SegmentFactory

pytestmark = pytest.mark.django_db

Outcome = OfferResponse.Outcome


def _segment_with_customers(n: int):
    segment = SegmentFactory()
    customers = CustomerFactory.create_batch(n, segment=segment)
    return segment, customers


def test_holdout_is_a_stable_share_of_customers_and_never_presented():
    segment, customers = _segment_with_customers(300)
    offer = OfferFactory(holdout_share=Decimal("0.1"))
    offer.segments.add(segment)

    when = timezone.now() - timedelta(minutes=3)
    result = offer_present(offer=offer, segment=segment, now=when)

    assert set(OfferResponse.objects.values_list("presented_at", flat=True)) == {when}
    assert not OfferResponse.objects.filter(responded_at__isnull=False).exists()
    held = set(
        OfferResponse.objects.filter(offer=offer, outcome=Outcome.HOLDOUT).values_list(
            "customer_id", flat=True
        )
    )
    expected = {c.pk for c in customers if holdout_draw(offer.pk, c.pk) < 0.1}
    assert held == expected
    assert 15 <= len(held) <= 50
    assert result.held_out == len(held)
    assert result.presented == 300 - len(held)
    presented = set(
        OfferResponse.objects.filter(offer=offer, outcome=Outcome.PRESENTED).values_list(
            "customer_id", flat=True
        )
    )
    assert presented.isdisjoint(held)
    assert set(OfferResponse.objects.filter(offer=offer).values_list("segment_id", flat=True)) == {
        segment.pk
    }


def test_holdout_does_not_depend_on_order_or_repetition():
    segment, customers = _segment_with_customers(120)
    offer = OfferFactory(holdout_share=Decimal("0.25"))
    offer.segments.add(segment)

    # In two halves, the second given in reverse order (as ids), then again in full.
    offer_present(offer=offer, customers=[c.pk for c in reversed(customers[60:])])
    offer_present(offer=offer, customers=customers[:60])
    again = offer_present(offer=offer, segment=segment)

    assert again.presented == again.held_out == 0
    held = set(
        OfferResponse.objects.filter(offer=offer, outcome=Outcome.HOLDOUT).values_list(
            "customer_id", flat=True
        )
    )
    assert held == {c.pk for c in customers if holdout_draw(offer.pk, c.pk) < 0.25}


def test_presenting_skips_archived_customers_and_other_segments():
    segment, customers = _segment_with_customers(5)
    customers[0].is_archived = True
    customers[0].save()
    CustomerFactory.create_batch(3, segment=SegmentFactory())
    offer = OfferFactory(holdout_share=Decimal("0"))
    offer.segments.add(segment)

    result = offer_present(offer=offer)

    assert result.presented == 4
    assert not OfferResponse.objects.filter(customer=customers[0]).exists()

    chosen = OfferFactory(holdout_share=Decimal("0"))
    picked = offer_present(offer=chosen, customers=Customer.objects.filter(name__isnull=False))
    assert picked.presented == 7  # everyone not archived, whatever the segment


def test_presenting_a_closed_offer_or_to_a_segment_not_targeted_is_refused():
    segment, _ = _segment_with_customers(3)
    other = SegmentFactory()
    offer = OfferFactory(is_active=False)
    offer.segments.add(segment)
    with pytest.raises(ValidationError, match="inactive or outside"):
        offer_present(offer=offer, segment=segment)

    ended = OfferFactory(ends_on=timezone.localdate() - timedelta(days=1))
    with pytest.raises(ValidationError, match="inactive or outside"):
        offer_present(offer=ended, segment=segment)

    open_offer = OfferFactory()
    open_offer.segments.add(segment)
    with pytest.raises(ValidationError, match="does not target"):
        offer_present(offer=open_offer, segment=other)
    assert not OfferResponse.objects.exists()


def test_recording_an_answer_is_idempotent_and_corrects_a_previous_one():
    segment, (customer,) = _segment_with_customers(1)
    offer = OfferFactory(holdout_share=Decimal("0"))
    when = timezone.now() - timedelta(hours=2)

    first = offer_response_record(offer=offer, customer=customer, outcome="accepted", when=when)
    again = offer_response_record(offer=offer, customer=customer, outcome="accepted")

    assert again.pk == first.pk
    assert again.responded_at == when
    assert first.segment_id == segment.pk
    assert OfferResponse.objects.count() == 1

    declined = offer_response_record(offer=offer, customer=customer, outcome="declined")
    assert declined.outcome == Outcome.DECLINED
    assert declined.responded_at > when
    back = offer_response_record(offer=offer, customer=customer, outcome="presented")
    assert back.outcome == Outcome.PRESENTED
    assert back.responded_at is None


def test_acceptance_for_a_held_out_customer_is_refused():
    segment, _ = _segment_with_customers(60)
    offer = OfferFactory(holdout_share=Decimal("0.5"))
    offer.segments.add(segment)
    offer_present(offer=offer, segment=segment)
    held = OfferResponse.objects.filter(offer=offer, outcome=Outcome.HOLDOUT).first()

    with pytest.raises(ValidationError, match="control group"):
        offer_response_record(offer=offer, customer=held.customer, outcome="accepted")

    held.refresh_from_db()
    assert held.outcome == Outcome.HOLDOUT
    assert held.responded_at is None


def test_a_customer_of_the_control_group_cannot_be_presented_one_by_one_either():
    offer = OfferFactory(holdout_share=Decimal("0.5"))
    customers = CustomerFactory.create_batch(20)
    held = next(c for c in customers if holdout_draw(offer.pk, c.pk) < 0.5)

    with pytest.raises(ValidationError, match="control group"):
        offer_response_record(offer=offer, customer=held, outcome="presented")
    assert not OfferResponse.objects.exists()


def test_an_unknown_outcome_is_refused():
    offer = OfferFactory(holdout_share=Decimal("0"))
    with pytest.raises(ValidationError, match="Unknown outcome"):
        offer_response_record(offer=offer, customer=CustomerFactory(), outcome="holdout")


def _history(offer, segment, *, accepted: int, declined: int):
    for _ in range(accepted):
        OfferResponseFactory(offer=offer, segment=segment, outcome=Outcome.ACCEPTED)
    for _ in range(declined):
        OfferResponseFactory(offer=offer, segment=segment, outcome=Outcome.DECLINED)


def _first_choices(customer, draws: int) -> dict[int, int]:
    """How often each offer comes first over many days' draws (the database read once)."""
    ranked = offers_ranked_for_customer(customer=customer)
    evidence = [
        OfferEvidence(
            offer=r.offer,
            accepted=r.accepted,
            presented=r.presented,
            order_value=r.order_value,
            cost_per_acceptance=r.cost_per_acceptance,
        )
        for r in ranked
    ]
    rng = np.random.default_rng(20240601)
    firsts: dict[int, int] = {}
    for _ in range(draws):
        first = offers_ranked(evidence, rng=rng)[0].offer.pk
        firsts[first] = firsts.get(first, 0) + 1
    return firsts


def test_ranking_prefers_the_offer_that_segment_accepts_more_once_evidence_accumulates():
    segment = SegmentFactory()
    customer = CustomerFactory(segment=segment, purchase_count=4, total_spent=Decimal("400"))
    good = OfferFactory(holdout_share=Decimal("0"), discount_percent=Decimal("10"))
    poor = OfferFactory(holdout_share=Decimal("0"), discount_percent=Decimal("10"))
    for offer in (good, poor):
        offer.segments.add(segment)

    # No evidence yet: both come first about as often.
    even = _first_choices(customer, 400)
    assert 0.35 < even.get(good.pk, 0) / 400 < 0.65

    _history(good, segment, accepted=30, declined=20)
    _history(poor, segment, accepted=5, declined=45)
    firsts = _first_choices(customer, 400)
    assert firsts.get(good.pk, 0) / 400 > 0.99


def test_ranking_still_puts_a_new_offer_first_sometimes():
    segment = SegmentFactory()
    customer = CustomerFactory(segment=segment, purchase_count=2, total_spent=Decimal("100"))
    proven = OfferFactory(holdout_share=Decimal("0"), discount_percent=Decimal("10"))
    new = OfferFactory(holdout_share=Decimal("0"), discount_percent=Decimal("10"))
    for offer in (proven, new):
        offer.segments.add(segment)
    _history(proven, segment, accepted=30, declined=70)

    share_new = _first_choices(customer, 1000).get(new.pk, 0) / 1000

    # P(Beta(1, 1) > Beta(31, 71)) is about 0.7: explored often, but not always.
    assert 0.55 < share_new < 0.85


def test_ranking_values_an_acceptance_at_the_segment_order_value_minus_the_cost():
    segment = SegmentFactory()
    customer = CustomerFactory(segment=segment, purchase_count=4, total_spent=Decimal("400"))
    CustomerFactory(segment=segment, purchase_count=1, total_spent=Decimal("100"))
    cheap = OfferFactory(
        holdout_share=Decimal("0"), discount_percent=Decimal("10"), fixed_cost=Decimal("5")
    )
    cheap.segments.add(segment)
    _history(cheap, segment, accepted=3, declined=1)

    (ranked,) = offers_ranked_for_customer(customer=customer)

    assert ranked.order_value == pytest.approx(100.0)  # 500 spent over 5 orders
    assert ranked.cost_per_acceptance == pytest.approx(15.0)
    assert ranked.value_per_acceptance == pytest.approx(85.0)
    assert ranked.acceptance_mean == pytest.approx(4 / 6)
    assert ranked.expected_value == pytest.approx(85.0 * 4 / 6)
    assert "accepted by 3 of 4 customers of this segment" in ranked.explanation.lower()
    assert ranked.acceptance_low < 4 / 6 < ranked.acceptance_high
    assert "how often customers of this segment have accepted" in RANKING_METHOD
    assert "posterior" not in RANKING_METHOD  # the owner reads it: no statistics words


def test_ranking_uses_the_order_value_the_segmentation_run_recorded():
    segment = SegmentFactory(profile_values={"avg_order_value": 80.0, "frequency": 3})
    customer = CustomerFactory(segment=segment, purchase_count=1, total_spent=Decimal("999"))
    offer = OfferFactory(holdout_share=Decimal("0"), discount_percent=Decimal("25"))
    offer.segments.add(segment)

    (ranked,) = offers_ranked_for_customer(customer=customer)

    assert ranked.order_value == 80.0
    assert ranked.value_per_acceptance == pytest.approx(60.0)
    assert "not yet presented in this segment" in ranked.explanation.lower()


def test_ranking_is_stable_within_a_day_and_leaves_out_answered_closed_and_held_out_offers():
    segment = SegmentFactory()
    customer = CustomerFactory(segment=segment, purchase_count=1, total_spent=Decimal("50"))
    offers = [OfferFactory(holdout_share=Decimal("0")) for _ in range(4)]
    answered, closed, *open_offers = offers
    closed.ends_on = timezone.localdate() - timedelta(days=3)
    closed.save()
    held_out = OfferFactory(holdout_share=Decimal("0.9"))
    while holdout_draw(held_out.pk, customer.pk) >= 0.9:
        held_out.delete()  # not held out for this customer: an offer for everyone, otherwise
        held_out = OfferFactory(holdout_share=Decimal("0.9"))
    other_segment = OfferFactory(holdout_share=Decimal("0"))
    other_segment.segments.add(SegmentFactory())
    for offer in [*offers, held_out]:
        offer.segments.add(segment)
    offer_response_record(offer=answered, customer=customer, outcome="declined")

    first = offers_ranked_for_customer(customer=customer)
    second = offers_ranked_for_customer(customer=customer)

    assert {r.offer.pk for r in first} == {o.pk for o in open_offers}
    assert [r.offer.pk for r in first] == [r.offer.pk for r in second]
    assert [r.rank for r in first] == [1, 2]


def test_a_customer_without_a_segment_has_no_ranked_offers(django_assert_num_queries):
    customer = CustomerFactory(segment=None)
    with django_assert_num_queries(0):
        assert offers_ranked_for_customer(customer=customer) == []


def test_rows_written_meanwhile_by_another_presentation_are_counted_not_duplicated():
    from offers.services import _insert

    offer = OfferFactory(holdout_share=Decimal("0"))
    first, second = CustomerFactory.create_batch(2)
    OfferResponseFactory(offer=offer, customer=first, outcome=Outcome.ACCEPTED)
    counts = {"presented": 0, "held_out": 0, "already": 0}

    _insert(
        offer=offer,
        presented_at=timezone.now(),
        rows=[(first.pk, None, Outcome.PRESENTED), (second.pk, None, Outcome.HOLDOUT)],
        counts=counts,
    )

    assert counts == {"presented": 0, "held_out": 1, "already": 1}
    assert OfferResponse.objects.get(customer=first).outcome == Outcome.ACCEPTED
    assert OfferResponse.objects.get(customer=second).outcome == Outcome.HOLDOUT


def test_offer_save_creates_and_updates_an_offer_with_its_segments():
    loyal, lapsed = SegmentFactory(name="Loyal"), SegmentFactory(name="Lapsed")

    offer = offer_save(title="Spring thank-you", discount_percent=Decimal("10"), segments=[loyal])
    offer_save(offer=offer, title="Spring thank-you (extended)", segments=[loyal, lapsed])

    offer.refresh_from_db()
    assert offer.title == "Spring thank-you (extended)"
    assert set(offer.segments.all()) == {loyal, lapsed}


def test_offer_save_refuses_a_window_that_ends_before_it_starts_and_unknown_fields():
    today = timezone.localdate()
    with pytest.raises(ValidationError):
        offer_save(title="Backwards", starts_on=today, ends_on=today - timedelta(days=1))
    with pytest.raises(ValidationError, match="no editable field"):
        offer_save(title="Odd", price=Decimal("3"))
    assert not Offer.objects.exists()


def test_ranking_includes_an_offer_meant_for_every_segment():
    segment, (customer,) = _segment_with_customers(1)
    targeted = OfferFactory(holdout_share=Decimal("0"))
    targeted.segments.add(segment)
    for_all = OfferFactory(holdout_share=Decimal("0"))
    OfferFactory(holdout_share=Decimal("0")).segments.add(SegmentFactory())  # elsewhere

    ranked = offers_ranked_for_customer(customer=customer)

    assert {r.offer for r in ranked} == {targeted, for_all}


def test_an_offer_with_no_target_can_be_presented_to_any_segment():
    segment, _ = _segment_with_customers(5)
    offer = OfferFactory(holdout_share=Decimal("0"))

    done = offer_present(offer=offer, segment=segment)

    assert done.presented == 5
