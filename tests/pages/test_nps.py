"""Every figure of NPS (dashboard, segment results, the run's features) follows crm.metrics."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from crm.metrics import nps_is_detractor, nps_is_promoter, nps_value
from offers.metrics import segment_results
from pages.dashboard import dashboard_kpis
from segmentation.selectors import customer_features
from tests.factories import CustomerFactory, FeedbackFactory, PurchaseFactory, SegmentFactory

pytestmark = pytest.mark.django_db

SCORES = list(range(11))  # one answer of every score, 0 to 10


def test_dashboard_segment_results_and_features_count_nps_as_crm_metrics_does():
    now = timezone.now()
    segment = SegmentFactory()
    customer = CustomerFactory(segment=segment)
    PurchaseFactory(customer=customer, amount=Decimal("10.00"), purchased_at=now - timedelta(1))
    for score in SCORES:
        FeedbackFactory(customer=customer, rating=None, nps=score, created_at=now)
    promoters = sum(nps_is_promoter(s) for s in SCORES)
    detractors = sum(nps_is_detractor(s) for s in SCORES)
    expected = nps_value(promoters=promoters, detractors=detractors, answers=len(SCORES))

    kpis = dashboard_kpis(now=now, use_cache=False)
    results = segment_results(segment=segment, now=now)
    features = customer_features(reference_time=now).frame.set_index("customer_id")

    assert (promoters, detractors) == (2, 7)
    assert kpis.nps == pytest.approx(expected)
    assert results.nps == pytest.approx(expected)
    assert (results.promoters, results.detractors) == (promoters, detractors)
    assert features.loc[customer.pk, "nps_promoters"] == promoters
    assert features.loc[customer.pk, "nps_detractors"] == detractors
