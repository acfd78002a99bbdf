from decimal import Decimal

import pytest

from crm.tasks import crm_health_check
from offers.models import OfferResponse
from offers.tasks import offer_present_to_segment
from tests.factories import CustomerFactory, OfferFactory, SegmentFactory


def test_health_check_reports_ok_and_the_database_it_sees(db):
    CustomerFactory.create_batch(2)

    result = crm_health_check.apply().get()

    assert result["status"] == "ok"
    assert result["customers"] == 2
    assert result["hostname"]


@pytest.mark.worker
def test_health_check_runs_on_a_real_worker_that_sees_the_test_database(live_celery_worker):
    CustomerFactory.create_batch(3)

    result = crm_health_check.delay().get(timeout=30)

    assert result["status"] == "ok", live_celery_worker.log()
    assert result["customers"] == 3, live_celery_worker.log()


@pytest.mark.worker
def test_the_real_worker_sees_rows_committed_after_it_started(live_celery_worker):
    assert crm_health_check.delay().get(timeout=30)["customers"] == 0
    CustomerFactory()

    assert crm_health_check.delay().get(timeout=30)["customers"] == 1


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
