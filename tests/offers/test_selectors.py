"""Reads of offers: acceptance per segment and offer, the offers open for a segment."""

from datetime import timedelta

import pytest
from django.utils import timezone

from offers.models import OfferResponse
from offers.selectors import Acceptance, acceptance_by_segment_offer, offers_open_for_segment
from tests.factories import CustomerFactory, OfferFactory, OfferResponseFactory, SegmentFactory

pytestmark = pytest.mark.django_db

Outcome = OfferResponse.Outcome


def _responses(offer, segment, *outcomes):
    for outcome in outcomes:
        OfferResponseFactory(
            offer=offer, customer=CustomerFactory(), segment=segment, outcome=outcome
        )


def test_acceptance_counts_treated_customers_per_segment_and_offer_and_leaves_out_holdouts(
    django_assert_num_queries,
):
    loyal, new = SegmentFactory(), SegmentFactory()
    first, second = OfferFactory(), OfferFactory()
    _responses(first, loyal, Outcome.ACCEPTED, Outcome.DECLINED, Outcome.PRESENTED, Outcome.HOLDOUT)
    _responses(first, new, Outcome.ACCEPTED)
    _responses(second, loyal, Outcome.HOLDOUT)

    with django_assert_num_queries(1):
        stats = acceptance_by_segment_offer(segment_ids=[loyal.pk, new.pk])

    assert stats == {
        (loyal.pk, first.pk): Acceptance(accepted=1, presented=3),
        (new.pk, first.pk): Acceptance(accepted=1, presented=1),
    }
    narrowed = acceptance_by_segment_offer(segment_ids=[loyal.pk], offer_ids=[second.pk])
    assert narrowed.get((loyal.pk, second.pk), Acceptance()) == Acceptance(0, 0)


def test_the_offers_open_for_a_segment_include_those_meant_for_every_segment():
    segment = SegmentFactory()
    targeted, for_all = OfferFactory(), OfferFactory()
    targeted.segments.add(segment)
    OfferFactory(is_active=False).segments.add(segment)
    OfferFactory(ends_on=timezone.localdate() - timedelta(days=1))
    OfferFactory().segments.add(SegmentFactory())

    assert set(offers_open_for_segment(segment=segment)) == {targeted, for_all}
