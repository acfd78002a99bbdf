"""The offers tasks on a real Celery worker."""

from decimal import Decimal

import pytest

from offers.models import Delivery, OfferResponse
from offers.tasks import offer_email_queue
from tests.factories import CustomerFactory, OfferFactory, SegmentFactory


@pytest.mark.worker
def test_a_real_worker_queues_an_offer_email_to_a_segment_with_its_control_group(
    live_celery_worker,
):
    segment = SegmentFactory()
    CustomerFactory.create_batch(40, segment=segment)
    offer = OfferFactory(holdout_share=Decimal("0.25"), email_subject="Hello", email_body="Hi")
    offer.segments.add(segment)

    result = offer_email_queue.delay(offer.pk, segment.pk).get(timeout=60)

    assert result["queued"] + result["held_out"] == 40, live_celery_worker.log()
    assert result["held_out"] > 0
    assert Delivery.objects.filter(offer=offer).count() == result["queued"]
    held_out = OfferResponse.objects.filter(offer=offer, outcome=OfferResponse.Outcome.HOLDOUT)
    assert held_out.count() == result["held_out"]
