"""Following a run: its JSON status, the progress panel on the dashboard and the runs' admin
pages, and the outcome said once, in agreement with the run's state."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from segmentation import admin as segmentation_admin
from segmentation.models import SegmentationRun
from segmentation.run_watch import SESSION_KEY
from segmentation.wording import run_outcome_words, run_phase_words
from tests.factories import CustomerFactory, SegmentationRunFactory, UserFactory

Status = SegmentationRun.Status
RUNS = "admin:segmentation_segmentationrun_changelist"


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    """Nothing is sent to a worker: runs stay as the tests make them."""
    monkeypatch.setattr("segmentation.services.runs._run_enqueue", lambda run_id: None)
    monkeypatch.setattr(segmentation_admin, "_ping", lambda: "no worker is answering")
    segmentation_admin.cache.delete(segmentation_admin._PING_KEY)


def _status(client, run: SegmentationRun) -> dict:
    response = client.get(reverse("segmentation:segmentation_run_status", args=[run.pk]))
    assert response.status_code == 200
    return response.json()


def _running(**fields) -> SegmentationRun:
    return SegmentationRunFactory(status=Status.RUNNING, finished_at=None, active_slot=1, **fields)


def test_phase_words_say_what_the_run_is_doing_with_its_percent():
    assert run_phase_words(phase="writing", percent=40) == "Placing customers in segments… 40 %"
    assert run_phase_words(phase="", percent=0) == "Waiting for the worker to start… 0 %"
    assert run_phase_words(phase="something new", percent=7) == "Working… 7 %"


def test_outcome_words_say_when_a_run_moved_nobody():
    words = run_outcome_words(status="succeeded", error="", n_clustered=1200, k=5, n_moved=0)
    assert words == "Finished. 1,200 customers grouped in 5 segments; nobody changed segment."


def test_status_of_a_running_run_gives_its_percent_and_phase_in_words(staff_client):
    run = _running(phase="writing", progress=88)

    state = _status(staff_client, run)

    assert state == {
        "run": run.pk,
        "title": f"Run #{run.pk}",
        "status": "running",
        "active": True,
        "percent": 88,
        "words": "Placing customers in segments… 88 %",
    }


def test_status_of_a_finished_run_says_how_it_ended(staff_client):
    SegmentationRunFactory(finished_at=timezone.now() - timedelta(days=1))
    run = SegmentationRunFactory(n_clustered=1500, k=4, n_moved=37, progress=100)

    state = _status(staff_client, run)

    assert state["active"] is False
    assert state["percent"] == 100
    assert (
        state["words"]
        == "Finished. 1,500 customers grouped in 4 segments; 37 customers changed segment."
    )


def test_status_of_a_rejected_run_says_the_segments_stayed(staff_client):
    run = SegmentationRunFactory(
        status=Status.REJECTED, error="Too few customers bought twice.", progress=80
    )

    state = _status(staff_client, run)

    assert state["status"] == "rejected"
    assert state["words"] == (
        "Not kept: Too few customers bought twice. The segments stay as they were."
    )


def test_status_of_a_run_that_does_not_exist_is_a_clear_404(staff_client):
    response = staff_client.get(reverse("segmentation:segmentation_run_status", args=[999]))
    assert response.status_code == 404
    assert response.json() == {"error": "There is no run #999."}


@pytest.mark.parametrize("role", ["Assistant", "Viewer"])
def test_everyone_who_sees_the_dashboard_may_follow_a_run(client, db, role):
    user = UserFactory(is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    client.force_login(user)
    run = _running(phase="fit", progress=40)

    assert _status(client, run)["percent"] == 40


def test_status_needs_a_login(client, db):
    run = _running()
    response = client.get(reverse("segmentation:segmentation_run_status", args=[run.pk]))
    assert response.status_code == 302
    assert "login" in response["Location"]


def test_dashboard_shows_the_running_run_with_its_bar_and_the_script_that_follows_it(
    staff_client,
):
    CustomerFactory()
    run = _running(phase="k_selection", progress=25)

    body = staff_client.get(reverse("pages:dashboard")).content.decode()

    assert f"Run #{run.pk}: Finding how many groups fit best… 25 %" in body
    assert 'aria-valuenow="25"' in body and "width: 25%" in body
    assert f'data-status-url="/segments/runs/{run.pk}/status/"' in body
    assert "js/run_progress.js" in body
    # The first run is going: no invitation to press "Recluster now" next to it.
    assert "No segmentation yet: press" not in body
    assert "grouped into segments for the first time" in body


def test_recluster_now_leads_to_a_dashboard_that_follows_the_run_without_a_stale_flash(
    staff_client,
):
    CustomerFactory()

    response = staff_client.post(reverse("segmentation:segmentation_run_start"), follow=True)

    run = SegmentationRun.objects.get()
    body = response.content.decode()
    assert f"Run #{run.pk}: Waiting for the worker to start… 0 %" in body
    assert "queued" not in body


def test_a_run_that_ended_before_the_page_was_drawn_is_reported_finished_once(staff_client):
    CustomerFactory()
    staff_client.post(reverse("segmentation:segmentation_run_start"))
    run = SegmentationRun.objects.get()
    # The worker was quicker than the redirect.
    SegmentationRun.objects.filter(pk=run.pk).update(
        status=Status.SUCCEEDED,
        finished_at=timezone.now(),
        active_slot=None,
        n_clustered=900,
        k=3,
        n_moved=0,
        progress=100,
    )

    first = staff_client.get(reverse("pages:dashboard")).content.decode()
    again = staff_client.get(reverse("pages:dashboard")).content.decode()

    assert f"Run #{run.pk}: Finished. Your first segments: 900 customers grouped in 3" in first
    assert "Waiting for the worker" not in first
    assert 'data-active="false"' in first  # the script leaves a finished run alone
    assert f"Run #{run.pk}: Finished" not in again


def test_the_page_reloaded_when_a_run_ended_says_how_it_ended(staff_client):
    CustomerFactory()
    run = _running(phase="writing", progress=90)
    staff_client.get(reverse("pages:dashboard"))
    SegmentationRun.objects.filter(pk=run.pk).update(
        status=Status.FAILED,
        finished_at=timezone.now(),
        active_slot=None,
        error="The database went away.",
    )

    assert _status(staff_client, run)["status"] == "failed"  # the poll that saw it end
    body = staff_client.get(reverse("pages:dashboard")).content.decode()

    assert f"Run #{run.pk}: Failed: The database went away." in body
    assert SESSION_KEY not in staff_client.session


def test_admin_run_list_follows_the_run_started_there_instead_of_flashing_queued(staff_client):
    response = staff_client.post(
        reverse("admin:segmentation_segmentationrun_recluster"), follow=True
    )

    run = SegmentationRun.objects.get()
    body = response.content.decode()
    assert f"Run #{run.pk}: Waiting for the worker to start… 0 %" in body
    assert "js/run_progress.js" in body and "css/run_progress.css" in body
    assert "is queued" not in body


def test_admin_run_list_column_says_the_phase_in_words_not_a_dash(staff_client):
    _running(phase="matching", progress=70)
    SegmentationRunFactory(status=Status.SUCCEEDED)

    body = staff_client.get(reverse(RUNS)).content.decode()

    assert "Matching the groups with the segments you know… 70 %" in body
    assert ">done<" in body


def test_admin_run_list_without_runs_says_what_fills_it(staff_client):
    body = staff_client.get(reverse(RUNS)).content.decode()
    assert "No runs yet." in body


def test_run_page_of_a_running_run_shows_live_progress(staff_client):
    run = _running(phase="fit", progress=45)

    body = staff_client.get(
        reverse("admin:segmentation_segmentationrun_change", args=[run.pk])
    ).content.decode()

    assert f"Run #{run.pk}: Grouping customers who buy alike… 45 %" in body
    assert "js/run_progress.js" in body


def test_run_page_of_a_finished_run_has_no_progress_panel(staff_client):
    run = SegmentationRunFactory()

    body = staff_client.get(
        reverse("admin:segmentation_segmentationrun_change", args=[run.pk])
    ).content.decode()

    assert "data-run-progress" not in body


def test_the_first_run_says_it_grouped_everyone_not_that_everyone_moved(staff_client):
    run = SegmentationRunFactory(n_clustered=272, k=6, n_moved=300)

    words = _status(staff_client, run)["words"]

    assert words == "Finished. Your first segments: 272 customers grouped in 6 segments."


def test_segment_list_shows_the_run_in_progress(staff_client):
    run = _running(phase="naming_explanation", progress=60)

    body = staff_client.get(reverse("segmentation:segment_list")).content.decode()

    assert f"Run #{run.pk}: Naming and describing the segments… 60 %" in body
    assert "js/run_progress.js" in body


def test_a_run_seen_in_progress_is_the_one_whose_end_is_reported(staff_client):
    CustomerFactory()
    staff_client.post(reverse("segmentation:segmentation_run_start"))
    mine = SegmentationRun.objects.get()
    SegmentationRun.objects.filter(pk=mine.pk).update(
        status=Status.SUCCEEDED, finished_at=timezone.now(), active_slot=None
    )
    scheduled = _running(phase="fit", progress=50, trigger=SegmentationRun.Trigger.SCHEDULE)

    staff_client.get(reverse("pages:dashboard"))  # shows the scheduled run going
    SegmentationRun.objects.filter(pk=scheduled.pk).update(
        status=Status.SUCCEEDED, finished_at=timezone.now(), active_slot=None, n_moved=3
    )
    body = staff_client.get(reverse("pages:dashboard")).content.decode()

    assert f"Run #{scheduled.pk}: Finished." in body
    assert f"Run #{mine.pk}: " not in body


def test_an_outcome_hours_old_is_not_news(staff_client):
    CustomerFactory()
    staff_client.post(reverse("segmentation:segmentation_run_start"))
    SegmentationRun.objects.update(
        status=Status.SUCCEEDED,
        finished_at=timezone.now() - timedelta(hours=3),
        active_slot=None,
    )

    body = staff_client.get(reverse("pages:dashboard")).content.decode()

    assert "data-run-progress" not in body
    assert SESSION_KEY not in staff_client.session
