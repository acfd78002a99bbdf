"""`manage.py recluster`: in-process with --sync, queued without; `predictions_check`."""

import csv
import io
import json
from datetime import date
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from crm.models import Customer
from segmentation import services
from segmentation.models import CustomerPrediction, Segment, SegmentationRun
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
    # The run's figures, then the predictions, come after the segment; empty until a run.
    assert (row["as_of"], row["recency_days"], row["frequency"]) == ("", "", "")
    assert (row["p_alive"], row["expected_purchases_90d"], row["value_12m"]) == ("", "", "")


CDNOW = Path(__file__).resolve().parent.parent / "fixtures" / "cdnow_sample_purchases.csv"


def cdnow_import() -> None:
    call_command(
        "import_purchases",
        str(CDNOW),
        "--create-customers",
        "--map",
        "customer_external_id=customer_id",
        "--source",
        "cdnow",
        "--currency",
        "USD",
    )


def test_recluster_as_of_the_end_of_the_cdnow_calibration_reproduces_the_papers_fit(
    db, capsys, settings
):
    settings.PREDICTIONS_TIME_UNIT_DAYS = 7
    cdnow_import()
    capsys.readouterr()

    call_command("recluster", "--sync", "--as-of", "1997-09-30", "--json")

    summary = json.loads(capsys.readouterr().out)
    assert summary["as_of"] == "1997-09-30"
    assert summary["method"] and summary["k"] >= 2
    assert sum(s["size"] for s in summary["segments"]) == 2357
    assert {"name", "kind", "size"} <= set(summary["segments"][0])
    kinds = {s["kind"] for s in summary["segments"]}
    assert kinds <= {*Segment.Behaviour.values, *Segment.Kind.values}, kinds
    # Every candidate segmentation the engine weighed, with the one it kept.
    assert summary["candidates"] and any(c.get("chosen") for c in summary["candidates"])
    # As of 1997-09-30 the data is not stale: no warning.
    assert summary["warnings"] == []
    fit = summary["predictions"]
    assert (fit["model"], fit["time_unit"]) == ("bgnbd+gamma-gamma", "weeks")
    assert fit["customers"] == 2357
    expected = {"r": 0.243, "alpha": 4.41, "a": 0.793, "b": 2.43, "gg_p": 6.25, "gg_q": 3.74}
    assert {k: float(f"{fit[k]:.3g}") for k in expected} == expected
    assert fit["gg_gamma"] == pytest.approx(15.44, abs=0.01)
    assert fit["log_likelihood"] == pytest.approx(-9582.4, abs=0.05)
    run = SegmentationRun.objects.get()
    assert run.as_of == date(1997, 9, 30)
    assert run.n_clustered == 2357
    assert CustomerPrediction.objects.filter(run=run).count() == 2357


def test_predictions_check_prints_the_holdout_table_of_the_imported_purchases(db, capsys):
    cdnow_import()
    capsys.readouterr()

    call_command(
        "predictions_check", "--calibration-end", "1997-09-30", "--holdout-end", "1998-06-30"
    )

    out = capsys.readouterr().out
    assert "r=0.2426 alpha=4.414 a=0.7929 b=2.426 log-likelihood=-9582.4" in out
    assert "actual                           1,882" in out
    assert "7+" in out


def test_predictions_check_needs_a_holdout_after_the_calibration(db):
    with pytest.raises(CommandError, match="must come after"):
        call_command(
            "predictions_check", "--calibration-end", "1998-01-01", "--holdout-end", "1997-12-31"
        )
