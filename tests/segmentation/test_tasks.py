"""Segmentation tasks: the thin task, retries, the daily schedule, and a real worker."""

import time

import pytest
from django.db import OperationalError
from django_celery_beat.models import PeriodicTask

from config.celery import app as celery_app
from crm.models import Customer
from segmentation import services, tasks
from segmentation.models import Segment, SegmentationRun
from tests.segmentation.shops import shop_build

Status = SegmentationRun.Status


def test_task_executes_a_requested_run_and_labels_appear(db, monkeypatch):
    monkeypatch.setattr("segmentation.services.runs._run_enqueue", lambda run_id: None)
    shop = shop_build()
    run = services.segmentation_run_request(trigger=SegmentationRun.Trigger.MANUAL)

    assert tasks.segmentation_run_execute.apply(args=[run.pk]).get() == Status.SUCCEEDED

    assert not Customer.objects.filter(pk__in=shop.buyers, membership__segment=None).exists()


def test_task_for_a_finished_run_changes_nothing(db):
    run = SegmentationRun.objects.create(status=Status.SUCCEEDED)

    assert tasks.segmentation_run_execute.apply(args=[run.pk]).get() == Status.SUCCEEDED
    assert not Segment.objects.exists()


def test_task_for_a_deleted_run_does_nothing(db):
    assert tasks.segmentation_run_execute.apply(args=[123456]).get() == "missing"


def test_task_retries_on_database_errors_then_records_the_failure(db, monkeypatch):
    monkeypatch.setattr("segmentation.services.runs._run_enqueue", lambda run_id: None)
    attempts = []

    def locked(*args, **kwargs):
        attempts.append(1)
        raise OperationalError("database is locked")

    monkeypatch.setattr("segmentation.services.runs._plan_compute", locked)
    run = services.segmentation_run_request(trigger=SegmentationRun.Trigger.MANUAL)

    tasks.segmentation_run_execute.apply(args=[run.pk])

    assert len(attempts) == tasks.MAX_RETRIES + 1
    run.refresh_from_db()
    assert run.status == Status.FAILED
    assert "database is locked" in run.error
    assert run.active_slot is None


def test_task_declares_late_acks_and_time_limits():
    task = tasks.segmentation_run_execute
    assert task.acks_late and task.reject_on_worker_lost
    assert task.soft_time_limit < task.time_limit
    assert OperationalError in task.autoretry_for


def test_scheduled_task_requests_a_run(db, monkeypatch):
    monkeypatch.setattr("segmentation.services.runs._run_enqueue", lambda run_id: None)

    run_id = tasks.segmentation_run_scheduled.apply().get()

    run = SegmentationRun.objects.get(pk=run_id)
    assert (run.trigger, run.status) == (SegmentationRun.Trigger.SCHEDULE, Status.PENDING)


def test_a_daily_schedule_exists_and_points_at_a_registered_task(db):
    periodic = PeriodicTask.objects.get(task="segmentation.tasks.segmentation_run_scheduled")

    assert periodic.enabled
    assert (periodic.crontab.hour, periodic.crontab.minute) == ("3", "0")
    assert periodic.task in celery_app.tasks


@pytest.mark.worker
@pytest.mark.slow
def test_a_real_worker_runs_the_requested_run_and_labels_appear(live_celery_worker):
    shop = shop_build()

    run = services.segmentation_run_request(trigger=SegmentationRun.Trigger.MANUAL)
    skipped = services.segmentation_run_request(trigger=SegmentationRun.Trigger.MANUAL)

    assert skipped.status == Status.SKIPPED
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.status not in (Status.PENDING, Status.RUNNING):
            break
        time.sleep(0.3)
    assert run.status == Status.SUCCEEDED, f"{run.status} {run.error}\n{live_celery_worker.log()}"
    assert run.task_id
    assert not Customer.objects.filter(pk__in=shop.buyers, membership__segment=None).exists()
    assert run.n_clustered == len(shop.buyers)
