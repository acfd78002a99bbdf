"""`manage.py recluster`: in-process with --sync, queued without."""

import csv
import io

import pytest
from django.core.management import CommandError, call_command

from crm.models import Customer
from segmentation import services
from segmentation.models import SegmentationRun
from tests.factories import CustomerFactory, SegmentFactory
from tests.segmentation.shops import shop_build


def test_recluster_sync_runs_here_without_a_broker_and_prints_a_summary(
    db, capsys, monkeypatch, django_capture_on_commit_callbacks
):
    shop = shop_build()
    queued = []
    monkeypatch.setattr("segmentation.services.runs._run_enqueue", queued.append)

    with django_capture_on_commit_callbacks(execute=True):
        call_command("recluster", "--sync")

    out = capsys.readouterr().out
    run = SegmentationRun.objects.get()
    assert run.status == SegmentationRun.Status.SUCCEEDED
    assert run.trigger == SegmentationRun.Trigger.COMMAND
    assert f"Run #{run.pk}: Succeeded" in out
    assert "clustered 60" in out
    assert "timings:" in out
    assert not Customer.objects.filter(pk__in=shop.buyers, membership__segment=None).exists()
    assert queued == []  # run here, not also handed to a worker


def test_recluster_without_sync_queues_a_run(
    db, capsys, monkeypatch, django_capture_on_commit_callbacks
):
    queued = []
    monkeypatch.setattr("segmentation.services.runs._run_enqueue", queued.append)

    with django_capture_on_commit_callbacks(execute=True):
        call_command("recluster")

    run = SegmentationRun.objects.get()
    assert queued == [run.pk]
    assert "queued" in capsys.readouterr().out


def test_recluster_sync_with_nobody_to_cluster_fails_with_the_reason(db):
    with pytest.raises(CommandError, match="nothing to cluster"):
        call_command("recluster", "--sync")
    assert SegmentationRun.objects.get().status == SegmentationRun.Status.REJECTED


def test_recluster_while_a_run_is_busy_says_so(db, monkeypatch):
    monkeypatch.setattr("segmentation.services.runs._run_enqueue", lambda run_id: None)
    services.segmentation_run_request(trigger=SegmentationRun.Trigger.MANUAL)

    with pytest.raises(CommandError, match="Skipped"):
        call_command("recluster", "--sync")


@pytest.mark.django_db
def test_export_customers_writes_safe_csv_with_each_customer_segment(tmp_path):
    CustomerFactory(name="-rm -rf", segment=SegmentFactory(name="Loyal regulars"))
    out = tmp_path / "c.csv"
    call_command("export_customers", "-o", str(out), stderr=io.StringIO())

    (row,) = list(csv.DictReader(out.open(encoding="utf-8")))
    assert (row["name"], row["segment"]) == ("'-rm -rf", "Loyal regulars")
