import io

import pytest
from django.core.management import call_command

from api.models import ApiToken
from crm.models import Customer, Purchase

pytestmark = pytest.mark.django_db


def test_bench_api_posts_every_purchase_and_cleans_up():
    out = io.StringIO()
    call_command("bench_api", purchases=1500, customers=100, stdout=out)
    assert "1,500 purchases in" in out.getvalue() and "purchases/s" in out.getvalue()
    assert not Purchase.objects.exists() and not Customer.objects.exists()
    assert not ApiToken.objects.exists()


def test_bench_api_keeps_what_it_wrote_when_asked():
    call_command("bench_api", purchases=1200, customers=10, keep=True, stdout=io.StringIO())
    assert Purchase.objects.count() == 1200
    assert Customer.objects.count() == 10
    assert sum(c.purchase_count for c in Customer.objects.all()) == 1200
    assert not ApiToken.objects.exists()
