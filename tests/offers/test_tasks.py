"""The offers task on a real Celery worker."""

from decimal import Decimal

import pytest

from offers.models import OfferResponse
from offers.tasks import offer_present_to_segment
from tests.factories import CustomerFactory, OfferFactory, SegmentFactory


@pytest.mark.worker
def test_a_real_worker_presents_an_offer_to_a_segment_with_its_control_group(live_celery_worker):
    segment = SegmentFactory()
    CustomerFactory.create_batch(40, segment=segment)
    offer = OfferFactory(holdout_share=Decimal("0.25"))
    offer.segments.add(segment)

    result = offer_present_to_segment.delay(offer.pk, segment.pk).get(timeout=60)

    assert result["presented"] + result["held_out"] == 40, live_celery_worker.log()
    assert result["held_out"] > 0
    assert OfferResponse.objects.filter(offer=offer).count() == 40
    held_out = OfferResponse.objects.filter(offer=offer, outcome=OfferResponse.Outcome.HOLDOUT)
    assert held_out.count() == result["held_out"]
