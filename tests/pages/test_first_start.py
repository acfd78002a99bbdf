"""First start: an empty database welcomes the owner, loads demo data on request, and every
empty list says what fills it instead of claiming all is well."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from crm.models import Customer, Purchase
from pages import demo
from segmentation.models import SegmentationRun
from tests.factories import (
    CustomerFactory,
    CustomerPredictionFactory,
    PurchaseFactory,
    SegmentationRunFactory,
    SegmentFactory,
    UserFactory,
)

Status = SegmentationRun.Status


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    monkeypatch.setattr("segmentation.services.runs._run_enqueue", lambda run_id: None)


@pytest.fixture
def small_demo(monkeypatch):
    """Demo data of a few customers: the behaviour is the same, the test quicker."""
    monkeypatch.setattr(demo, "DEMO_CUSTOMERS", 60)


def _role_client(client, role: str):
    user = UserFactory(is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    client.force_login(user)
    return client


@pytest.mark.parametrize("page", ["pages:today", "pages:dashboard"])
def test_an_empty_database_welcomes_the_owner_with_import_demo_and_a_tour(staff_client, page):
    body = staff_client.get(reverse(page)).content.decode()

    assert 'id="welcome"' in body
    assert "Import customers (CSV)" in body
    assert f'href="{reverse("admin:crm_customer_import")}"' in body
    assert f'action="{reverse("pages:demo_load")}"' in body and "Load demo data" in body
    for tour_stop in ("pages:today", "pages:customer_list", "segmentation:segment_list"):
        assert f'href="{reverse(tour_stop)}"' in body
    assert f'href="{reverse("offers:offer_list")}"' in body


def test_the_welcome_is_gone_once_there_are_customers(staff_client):
    CustomerFactory()
    for page in ("pages:today", "pages:dashboard"):
        assert 'id="welcome"' not in staff_client.get(reverse(page)).content.decode()


def test_only_the_owner_is_offered_the_demo_button(client, db):
    body = _role_client(client, "Assistant").get(reverse("pages:today")).content.decode()
    assert 'id="welcome"' in body
    assert "Load demo data</button>" not in body
    assert "Only the owner can load demo data." in body


def test_today_on_an_empty_database_claims_nothing_about_customers(staff_client):
    body = staff_client.get(reverse("pages:today")).content.decode()

    assert "every regular customer bought on time" not in body
    assert "Nobody valuable" not in body
    assert "nothing urgent" not in body
    assert body.count("No customers yet: import a CSV or add one") == 6


def test_today_with_customers_keeps_its_all_clear_sentences(staff_client):
    CustomerFactory()
    body = staff_client.get(reverse("pages:today")).content.decode()
    assert "every regular customer bought on time" in body
    assert "No customers yet" not in body


def test_load_demo_data_fills_the_database_and_starts_the_first_run(staff_client, small_demo):
    response = staff_client.post(reverse("pages:demo_load"), follow=True)

    assert response.redirect_chain[-1][0] == reverse("pages:dashboard")
    assert Customer.objects.count() == 60
    assert Purchase.objects.exists()
    run = SegmentationRun.objects.get()
    assert run.status == Status.PENDING
    body = response.content.decode()
    assert "Demo data loaded: 60 customers" in body
    assert f"Run #{run.pk}: Waiting for the worker to start" in body
    assert 'id="welcome"' not in body


def test_load_demo_data_is_refused_when_customers_exist(staff_client, small_demo):
    CustomerFactory(name="Real Person")

    response = staff_client.post(reverse("pages:demo_load"), follow=True)

    assert "only loaded into an empty database" in response.content.decode()
    assert list(Customer.objects.values_list("name", flat=True)) == ["Real Person"]
    assert not Purchase.objects.exists()
    assert not SegmentationRun.objects.exists()


def test_load_demo_data_is_the_owners_decision(client, db, small_demo):
    response = _role_client(client, "Assistant").post(reverse("pages:demo_load"))
    assert response.status_code == 403
    assert not Customer.objects.exists()


def test_load_demo_data_needs_a_post(staff_client):
    assert staff_client.get(reverse("pages:demo_load")).status_code == 405


def test_customer_list_on_an_empty_database_says_how_to_fill_it(staff_client):
    body = staff_client.get(reverse("pages:customer_list")).content.decode()
    assert "No customers yet: import a CSV or add one." in body


def test_a_filtered_customer_list_says_nobody_matches(staff_client):
    CustomerFactory(name="Ann")
    body = staff_client.get(reverse("pages:customer_list"), {"q": "zzz"}).content.decode()
    assert "No customer matches." in body


def test_segment_list_on_an_empty_database_says_to_import_customers_first(staff_client):
    body = staff_client.get(reverse("segmentation:segment_list")).content.decode()
    assert "No segments yet: import customers, then run a segmentation" in body


def test_segment_list_during_the_first_run_says_segments_come_when_it_ends(staff_client):
    CustomerFactory()
    SegmentationRunFactory(status=Status.RUNNING, finished_at=None, active_slot=1)

    body = staff_client.get(reverse("segmentation:segment_list")).content.decode()

    assert "segments appear when it ends" in body


def test_an_empty_segment_page_says_runs_place_customers(staff_client):
    segment = SegmentFactory()
    body = staff_client.get(reverse("pages:segment_detail", args=[segment.pk])).content.decode()
    assert "Nobody is in this segment right now" in body


def test_a_new_customers_timeline_says_what_will_appear(staff_client):
    customer = CustomerFactory()
    body = staff_client.get(reverse("pages:customer_detail", args=[customer.pk])).content.decode()
    assert "purchases, feedback, offers and notes appear here" in body


def test_offer_list_without_offers_says_what_fills_it(staff_client):
    body = staff_client.get(reverse("offers:offer_list")).content.decode()
    assert "No offer yet: create one" in body


def test_dashboard_on_an_empty_database_asks_for_customers_not_a_recluster(staff_client):
    body = staff_client.get(reverse("pages:dashboard")).content.decode()
    assert "No segmentation yet: import customers first" in body
    assert "they appear once customers are imported" in body
    assert "press “Recluster now”" not in body
    # Nothing to group yet: the button would only start a run that is bound to be refused.
    assert reverse("segmentation:segmentation_run_start") not in body


def test_every_page_links_the_favicon(staff_client):
    body = staff_client.get(reverse("pages:today")).content.decode()
    assert 'rel="icon" href="/static/favicon.svg"' in body
    admin_body = staff_client.get(reverse("admin:index")).content.decode()
    assert 'rel="icon" href="/static/favicon.svg"' in admin_body


def test_dashboard_after_a_run_that_moved_nobody_says_so_instead_of_waiting_for_a_first_run(
    staff_client,
):
    CustomerFactory()
    SegmentationRunFactory(n_moved=40)
    last = SegmentationRunFactory(n_moved=0)

    charts = staff_client.get(reverse("pages:dashboard")).context["charts"]

    assert charts["transitions"]["datasets"] == []
    assert charts["transitions"]["empty"] == (
        f"Nobody changed segment in the last run (#{last.pk}): every customer stayed put."
    )


def test_dashboard_before_any_run_says_movements_come_with_the_first_run(staff_client):
    CustomerFactory()
    charts = staff_client.get(reverse("pages:dashboard")).context["charts"]
    assert charts["transitions"]["empty"] == "Movements appear after the first segmentation run."


def test_dashboard_before_the_first_run_does_not_claim_there_are_no_purchases(staff_client):
    PurchaseFactory()
    charts = staff_client.get(reverse("pages:dashboard")).context["charts"]
    assert charts["scatter"]["empty"] == (
        "Customers appear here once they are grouped into segments."
    )


def test_today_before_any_run_says_the_run_lists_fill_after_it(staff_client):
    CustomerFactory()

    sections = {s["kind"]: s["empty"] for s in staff_client.get("/").context["sections"]}

    assert sections["risk"] == "This list fills after the first segmentation run."
    assert sections["slipping"].startswith("This list fills once a segmentation run has made")


def test_today_after_a_run_with_predictions_gives_its_all_clear(staff_client):
    CustomerPredictionFactory()
    SegmentationRunFactory()

    sections = {s["kind"]: s["empty"] for s in staff_client.get("/").context["sections"]}

    assert sections["risk"] == "Nobody valuable slipped into an at-risk segment in the last run."
    assert sections["slipping"] == "Nobody valuable is slipping away."


def test_dashboard_says_when_the_last_run_failed_after_the_segments_it_shows(staff_client):
    CustomerFactory()
    shown = SegmentationRunFactory(finished_at=timezone.now() - timedelta(days=2))
    failed = SegmentationRunFactory(status=Status.FAILED, error="The disk is full.")

    body = staff_client.get(reverse("pages:dashboard")).content.decode()

    assert f"The last run (#{failed.pk}) ended without new segments: The disk is full." in body
    assert f"still those of run #{shown.pk}" in body


def test_dashboard_says_nothing_of_a_failure_older_than_the_segments(staff_client):
    CustomerFactory()
    SegmentationRunFactory(status=Status.FAILED, finished_at=timezone.now() - timedelta(days=2))
    SegmentationRunFactory()

    body = staff_client.get(reverse("pages:dashboard")).content.decode()

    assert 'id="run-failed"' not in body
