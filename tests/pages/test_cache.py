"""The pages' cached figures follow every write path: admin actions, imports, commands."""

import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.admin import helpers
from django.core.cache import cache
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from crm.cache import pages_cache_changed, pages_cache_version
from pages import dashboard
from pages.selectors import segment_results_cached
from tests.factories import CustomerFactory, FeedbackFactory, SegmentFactory
from tests.segmentation.shops import shop_build

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _empty_cache():
    cache.clear()


def _recomputed(monkeypatch) -> list:
    """Calls of the dashboard's KPI computation: a cached read adds none."""
    calls = []
    compute = dashboard._kpis_compute
    monkeypatch.setattr(dashboard, "_kpis_compute", lambda **kw: calls.append(1) or compute(**kw))
    return calls


def test_a_write_bumps_the_version_now_and_again_when_its_transaction_commits(
    django_capture_on_commit_callbacks,
):
    before = pages_cache_version()

    with django_capture_on_commit_callbacks(execute=True):
        pages_cache_changed()
        assert pages_cache_version() == before + 1

    assert pages_cache_version() == before + 2


def test_tagging_from_the_customer_changelist_invalidates_the_cached_figures(
    staff_client, monkeypatch
):
    customer = CustomerFactory()
    calls = _recomputed(monkeypatch)
    dashboard.dashboard_kpis()
    dashboard.dashboard_kpis()
    assert len(calls) == 1  # the second read came from the cache

    staff_client.post(
        reverse("admin:crm_customer_changelist"),
        {
            "action": "tag_selected",
            "apply": "1",
            "tag_names": "vip",
            helpers.ACTION_CHECKBOX_NAME: [str(customer.pk)],
        },
    )
    dashboard.dashboard_kpis()

    assert customer.tags.filter(name="vip").exists()
    assert len(calls) == 2


def test_pinning_from_the_customer_changelist_changes_the_cached_segment_results(staff_client):
    segment = SegmentFactory(name="Loyal", is_active=True)
    customer = CustomerFactory(segment=segment)
    FeedbackFactory(customer=customer, rating=5, nps=10)
    stale = segment_results_cached(segment=segment)
    version = pages_cache_version()

    staff_client.post(
        reverse("admin:crm_customer_changelist"),
        {"action": "customers_pin", helpers.ACTION_CHECKBOX_NAME: [str(customer.pk)]},
    )

    assert pages_cache_version() > version
    assert segment_results_cached(segment=segment) is not stale
    customer.refresh_from_db()
    assert customer.membership.pinned


def test_reimporting_purchases_with_new_amounts_changes_the_cached_revenue(tmp_path):
    CustomerFactory(email="ann@example.com")
    day = (timezone.localdate() - timedelta(days=3)).isoformat()
    path = tmp_path / "sales.csv"
    path.write_text(
        f"customer_email,order_id,amount,purchased_at\nann@example.com,A1,10.00,{day}\n"
    )
    call_command("import_purchases", str(path), stdout=io.StringIO())
    assert dashboard.dashboard_kpis().revenue_30.current == Decimal("10.00")

    # Same order, corrected amount: no new row, so only the version tells the cache.
    path.write_text(
        f"customer_email,order_id,amount,purchased_at\nann@example.com,A1,25.00,{day}\n"
    )
    call_command("import_purchases", str(path), stdout=io.StringIO())

    assert dashboard.dashboard_kpis().revenue_30.current == Decimal("25.00")


def test_reimporting_customers_invalidates_the_cached_figures(tmp_path, monkeypatch):
    path = tmp_path / "customers.csv"
    path.write_text("email,name\nann@example.com,Ann\n")
    call_command("import_customers", str(path), stdout=io.StringIO())
    calls = _recomputed(monkeypatch)
    dashboard.dashboard_kpis()

    path.write_text("email,name\nann@example.com,Ann B\n")  # an update: no new row
    call_command("import_customers", str(path), stdout=io.StringIO())
    dashboard.dashboard_kpis()

    assert len(calls) == 2


def test_a_dry_run_import_leaves_the_cached_figures_alone(tmp_path):
    path = tmp_path / "customers.csv"
    path.write_text("email,name\nann@example.com,Ann\n")
    version = pages_cache_version()

    call_command("import_customers", str(path), "--dry-run", stdout=io.StringIO())

    assert pages_cache_version() == version


def test_recluster_sync_invalidates_the_cached_figures(
    monkeypatch, django_capture_on_commit_callbacks
):
    shop_build()
    monkeypatch.setattr("segmentation.services.runs._run_enqueue", lambda run_id: None)
    calls = _recomputed(monkeypatch)
    dashboard.dashboard_kpis()

    with django_capture_on_commit_callbacks(execute=True):
        call_command("recluster", "--sync", stdout=io.StringIO())
    dashboard.dashboard_kpis()

    assert len(calls) == 2
