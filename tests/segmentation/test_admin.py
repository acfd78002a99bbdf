"""The segmentation admin: runs with "Recluster now", the status line, segments, history."""

import time
from datetime import date

import pytest
from django.urls import reverse

from segmentation import admin as segmentation_admin
from segmentation.models import Membership, Segment, SegmentationRun, SegmentTransition
from tests.factories import SegmentationRunFactory, SegmentFactory

RUNS = "admin:segmentation_segmentationrun_changelist"
RECLUSTER = "admin:segmentation_segmentationrun_recluster"


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    """The admin pages ask whether a worker is alive; here nobody answers, instantly."""
    monkeypatch.setattr(segmentation_admin, "_ping", lambda: "no worker is answering")
    segmentation_admin.cache.delete(segmentation_admin._PING_KEY)


def test_run_list_shows_when_segments_were_last_computed_and_the_worker(staff_client):
    SegmentationRunFactory(status=SegmentationRun.Status.SUCCEEDED, confidence_note="low: 34")

    response = staff_client.get(reverse(RUNS))

    assert response.status_code == 200
    body = response.content.decode()
    assert "Segments last computed" in body
    assert "Worker: no worker is answering" in body
    assert "Recluster now" in body
    assert "low: 34" in body


def test_recluster_now_requests_a_run(
    staff_client, monkeypatch, django_capture_on_commit_callbacks
):
    requested = []
    monkeypatch.setattr("segmentation.services.runs._run_enqueue", requested.append)

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(reverse(RECLUSTER), follow=True)

    run = SegmentationRun.objects.get()
    assert run.trigger == SegmentationRun.Trigger.MANUAL
    assert run.status == SegmentationRun.Status.PENDING
    assert requested == [run.pk]
    assert f"Run #{run.pk}: Waiting for the worker to start… 0 %" in response.content.decode()


def test_recluster_as_of_a_past_day_records_the_day_on_the_run(staff_client, monkeypatch):
    monkeypatch.setattr("segmentation.services.runs._run_enqueue", lambda run_id: None)

    response = staff_client.post(reverse(RECLUSTER), {"as_of": "2011-12-09"}, follow=True)

    run = SegmentationRun.objects.get()
    assert run.as_of == date(2011, 12, 9)
    assert f"Run #{run.pk} as of 9 Dec 2011: Waiting for the worker" in response.content.decode()


def test_recluster_as_of_a_future_day_is_refused_and_starts_nothing(staff_client):
    response = staff_client.post(reverse(RECLUSTER), {"as_of": "2999-01-01"}, follow=True)

    assert "cannot be in the future" in response.content.decode()
    assert not SegmentationRun.objects.exists()


def test_recluster_now_while_a_run_is_busy_says_it_was_skipped(staff_client, monkeypatch):
    monkeypatch.setattr("segmentation.services.runs._run_enqueue", lambda run_id: None)
    staff_client.post(reverse(RECLUSTER))

    response = staff_client.post(reverse(RECLUSTER), follow=True)

    assert "Not started" in response.content.decode()
    assert SegmentationRun.objects.filter(status=SegmentationRun.Status.SKIPPED).count() == 1


def test_recluster_now_needs_a_post(staff_client):
    assert staff_client.get(reverse(RECLUSTER)).status_code == 405
    assert not SegmentationRun.objects.exists()


def test_recluster_now_checks_the_csrf_token(alice, client):
    from django.test import Client

    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(alice)

    assert csrf_client.post(reverse(RECLUSTER)).status_code == 403
    assert not SegmentationRun.objects.exists()


def test_non_staff_cannot_recluster(client, bob, monkeypatch):
    monkeypatch.setattr("segmentation.services.runs._run_enqueue", lambda run_id: None)
    client.force_login(bob)

    response = client.post(reverse(RECLUSTER))

    assert response.status_code == 302
    assert "login" in response["Location"]
    assert not SegmentationRun.objects.exists()


def test_run_page_shows_the_transition_table_and_timings(staff_client):
    run = SegmentationRunFactory(timings={"fit": 1.5, "label_write": 0.5})
    loyal = SegmentFactory(name="Loyal")
    at_risk = SegmentFactory(name="At risk")
    SegmentTransition.objects.create(run=run, from_segment=loyal, to_segment=at_risk, count=12)

    response = staff_client.get(reverse("admin:segmentation_segmentationrun_change", args=[run.pk]))

    body = response.content.decode()
    assert response.status_code == 200
    assert "What moved in this run" in body
    assert "Loyal" in body and "At risk" in body and ">12<" in body.replace(" ", "")
    assert "label_write" in body


def test_renaming_a_segment_in_the_admin_marks_the_name_custom(staff_client):
    segment = SegmentFactory(name="Champions", auto_name="Champions")
    url = reverse("admin:segmentation_segment_change", args=[segment.pk])

    response = staff_client.post(url, {"name": "Best friends", "description": "Call them."})

    assert response.status_code == 302
    segment.refresh_from_db()
    assert (segment.name, segment.name_is_custom) == ("Best friends", True)
    assert segment.description_is_custom


def test_renaming_a_segment_to_an_active_name_is_refused(staff_client):
    SegmentFactory(name="Loyal")
    segment = SegmentFactory(name="Champions")
    url = reverse("admin:segmentation_segment_change", args=[segment.pk])

    response = staff_client.post(url, {"name": "Loyal", "description": ""})

    assert response.status_code == 200
    assert "already has this name" in response.content.decode()
    segment.refresh_from_db()
    assert segment.name == "Champions"


def test_segment_list_links_members_to_the_customer_list(staff_client):
    segment = SegmentFactory(name="Loyal", size=7)

    response = staff_client.get(reverse("admin:segmentation_segment_changelist"))

    assert f"?membership__segment__id__exact={segment.pk}" in response.content.decode()
    assert Segment.objects.count() == 1


def test_worker_status_never_waits_long_for_a_dead_broker(monkeypatch):
    def hang():
        time.sleep(5)
        return "late"

    monkeypatch.setattr(segmentation_admin, "_ping", hang)
    monkeypatch.setattr(segmentation_admin, "_ping_future", None)
    started = time.perf_counter()

    status = segmentation_admin.worker_status()

    assert time.perf_counter() - started < segmentation_admin.PING_WAIT + 0.5
    assert "not answering" in status


def test_customer_pin_and_unpin_actions_call_the_services(staff_client):
    from django.contrib.admin import helpers

    from tests.factories import CustomerFactory

    segment = SegmentFactory(name="Loyal", is_active=True)
    placed = CustomerFactory(segment=segment)
    unplaced = CustomerFactory()
    url = reverse("admin:crm_customer_changelist")
    selected = [str(placed.pk), str(unplaced.pk)]

    response = staff_client.post(
        url, {"action": "customers_pin", helpers.ACTION_CHECKBOX_NAME: selected}, follow=True
    )

    body = response.content.decode()
    assert "Pinned 1 customer(s)" in body
    assert "has no segment yet" in body
    placed.refresh_from_db()
    assert placed.membership.pinned and placed.membership.segment == segment
    assert not Membership.objects.filter(customer=unplaced, pinned=True).exists()

    staff_client.post(url, {"action": "customers_unpin", helpers.ACTION_CHECKBOX_NAME: selected})

    placed.refresh_from_db()
    assert not placed.membership.pinned
    assert placed.segment_changes.count() == 1  # the unpin (pinning in place moved nobody)


def test_run_page_shows_every_candidate_with_its_scores_and_the_warnings(staff_client):
    run = SegmentationRunFactory(
        candidates=[
            {"k": 2, "method": "kmeans", "silhouette": 0.3859, "stability": 0.977,
             "smallest_share": 0.392, "segments": 3, "eligible": True, "chosen": False},
            {"k": 5, "method": "kmeans", "silhouette": 0.2804, "stability": 0.874,
             "smallest_share": 0.0973, "segments": 5, "eligible": True, "chosen": True},
        ],
        warnings=["The newest purchase is 400 days old <b>"],
    )  # fmt: skip

    response = staff_client.get(reverse("admin:segmentation_segmentationrun_change", args=[run.pk]))

    body = response.content.decode().replace(" ", "")
    assert "<th>stability</th>" in body
    assert "<td>0.386</td><td>0.977</td><td>0.392</td><td>3</td><td>yes</td><td></td>" in body
    assert "<td>0.280</td><td>0.874</td><td>0.097</td><td>5</td><td>yes</td><td>yes</td>" in body
    assert "400daysold&lt;b&gt;" in body


def test_segment_admin_shows_revenue_with_the_currency_and_shares_in_percent(staff_client):
    from decimal import Decimal

    segment = SegmentFactory(
        revenue=Decimal("12345.6"), share_revenue=0.4123456, fidelity=0.975896860986547
    )

    listing = staff_client.get(reverse("admin:segmentation_segment_changelist")).content.decode()
    page = staff_client.get(
        reverse("admin:segmentation_segment_change", args=[segment.pk])
    ).content.decode()

    assert "12,345.60\u00a0EUR" in listing and "12,345.60\u00a0EUR" in page
    assert "98%" in page and "41.2%" in page
    assert "0.975896860986547" not in page and "0.4123456" not in page
