import io

import pytest
from django.core.management import call_command

from api.models import ApiToken
from crm.models import Customer, Purchase

pytestmark = pytest.mark.django_db


def test_bench_api_reports_the_rate_against_its_target_and_floor_and_cleans_up():
    out = io.StringIO()
    call_command("bench_api", purchases=1500, customers=100, runs=1, stdout=out)
    text = out.getvalue()
    assert "Writing 1,500 purchases naming 100 new customers" in text
    assert "purchases/s (target >= 2,000/s:" in text
    assert "Floor, one bulk insert without HTTP:" in text
    assert "Endpoint / floor:" in text and "x the time" in text
    assert not Purchase.objects.exists() and not Customer.objects.exists()
    assert not ApiToken.objects.exists()


def test_bench_api_floor_writes_what_the_endpoint_writes():
    call_command("bench_api", purchases=1200, customers=10, runs=1, keep=True, stdout=io.StringIO())

    api, floor = (
        Customer.objects.filter(external_source__contains=way).order_by("external_id")
        for way in ("-through-", "-floor-")
    )
    assert [(c.external_id, c.purchase_count, c.total_spent) for c in api] == [
        (c.external_id, c.purchase_count, c.total_spent) for c in floor
    ]
    assert Purchase.objects.count() == 2 * 1200 and api.count() == 10
    assert sum(c.purchase_count for c in api) == 1200
    assert not ApiToken.objects.exists()
