"""When an offer is open and for whom: OfferQuerySet.open_on, .targeting, Offer.is_open_on."""

from datetime import date, timedelta

import pytest

from offers.models import Offer
from tests.factories import OfferFactory, SegmentFactory

pytestmark = pytest.mark.django_db

DAY = date(2026, 3, 15)


def _open_ids(day: date) -> set[int]:
    return set(Offer.objects.open_on(day).values_list("pk", flat=True))


@pytest.mark.parametrize(
    ("starts_on", "ends_on", "is_open"),
    [
        (None, None, True),
        (DAY, None, True),  # starts that very day
        (None, DAY, True),  # ends that very day
        (DAY, DAY, True),  # a one-day offer
        (DAY + timedelta(days=1), None, False),  # starts tomorrow
        (None, DAY - timedelta(days=1), False),  # ended yesterday
        (DAY - timedelta(days=10), DAY + timedelta(days=10), True),
    ],
)
def test_an_offer_is_open_on_the_days_of_its_window_both_ends_included(starts_on, ends_on, is_open):
    offer = OfferFactory(starts_on=starts_on, ends_on=ends_on)

    assert offer.is_open_on(DAY) is is_open
    assert (offer.pk in _open_ids(DAY)) is is_open


def test_an_inactive_offer_is_never_open_even_inside_its_window():
    offer = OfferFactory(is_active=False, starts_on=DAY, ends_on=DAY)

    assert not offer.is_open_on(DAY)
    assert offer.pk not in _open_ids(DAY)


def test_an_offer_targeting_a_segment_is_meant_for_it_and_not_for_others():
    loyal, new, other = SegmentFactory(), SegmentFactory(), SegmentFactory()
    offer = OfferFactory()
    offer.segments.add(loyal, new)

    assert list(Offer.objects.targeting([loyal.pk])) == [offer]
    assert list(Offer.objects.targeting([loyal.pk, new.pk])) == [offer]  # once, not twice
    assert not Offer.objects.targeting([other.pk]).exists()


def test_an_offer_with_no_target_segment_is_meant_for_every_segment():
    anyone = OfferFactory()
    segment = SegmentFactory()

    assert list(Offer.objects.targeting([segment.pk])) == [anyone]
    assert list(Offer.objects.targeting([])) == [anyone]


def test_open_on_and_targeting_combine_into_the_offers_a_segment_can_be_shown():
    segment = SegmentFactory()
    meant = OfferFactory(starts_on=DAY)
    meant.segments.add(segment)
    for_all = OfferFactory(ends_on=DAY)
    OfferFactory(starts_on=DAY + timedelta(days=1)).segments.add(segment)  # not yet
    OfferFactory().segments.add(SegmentFactory())  # someone else's

    shown = set(Offer.objects.open_on(DAY).targeting([segment.pk]))

    assert shown == {meant, for_all}
