"""The benchmark: its data generator, its safety guard and a tiny end-to-end run."""

import json
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from crm.models import Customer, Feedback, Purchase
from crm.selectors import customer_search
from crm.services import customer_stats_refresh, customers_search_text_refresh
from segmentation.benchmark.generate import (
    BenchRefused,
    DatasetSpec,
    dataset_ensure,
    dataset_generate,
    purchase_counts,
)
from segmentation.benchmark.recluster import PHASES
from tests.factories import CustomerFactory


def test_purchase_counts_hit_the_total_and_most_buyers_buy_once():
    counts = purchase_counts(np.random.default_rng(3), 20_000, 4.0)

    assert counts.sum() == 80_000
    buyers = counts[counts > 0]
    assert 0.03 < (counts == 0).mean() < 0.07
    assert (buyers == 1).mean() > 0.5
    assert buyers.max() > 50  # a few regulars buy very often


def test_purchase_counts_refuse_fewer_purchases_than_buyers():
    with pytest.raises(ValueError, match="too low"):
        purchase_counts(np.random.default_rng(3), 1000, 0.5)


def _stats() -> list[tuple]:
    return [
        (
            c.pk,
            c.purchase_count,
            c.total_spent.quantize(Decimal("0.01")),
            c.first_purchase_at,
            c.last_purchase_at,
        )
        for c in Customer.objects.order_by("pk")
    ]


def test_generated_data_is_plausible_and_its_statistics_match_the_purchases(transactional_db):
    marker = dataset_generate(DatasetSpec(customers=300, purchases_per_customer=5, seed=7))

    assert Customer.objects.count() == 300
    assert Purchase.objects.count() == marker["purchases"] == 1500
    assert Feedback.objects.count() == marker["feedback"] > 0
    assert not Purchase.objects.filter(purchased_at__gt=timezone.now()).exists()
    assert Customer.objects.filter(age__isnull=False).exists()
    assert Customer.objects.filter(annual_income__isnull=False).exists()
    generated = _stats()
    generated_overdue = dict(Customer.objects.values_list("pk", "overdue_from"))
    customer_stats_refresh()
    assert _stats() == generated
    # The generator writes the overdue moment itself, by the same rule (to the second).
    refreshed_overdue = dict(Customer.objects.values_list("pk", "overdue_from"))
    assert any(generated_overdue.values())
    for pk, moment in refreshed_overdue.items():
        if moment is None:
            assert generated_overdue[pk] is None, pk
        else:
            assert abs((moment - generated_overdue[pk]).total_seconds()) < 1.5, pk
    # Searchable as if written through the services: found by surname and by phone.
    assert customers_search_text_refresh() == 0
    someone = Customer.objects.get(pk=42)
    surname = someone.name.split()[-1]
    assert someone in customer_search(queryset=Customer.objects.all(), term=surname)
    assert list(customer_search(queryset=Customer.objects.all(), term="020 00000042")) == [someone]
    # New rows get fresh ids after the explicit ones.
    assert CustomerFactory().pk > 300


def test_reuse_keeps_data_of_the_same_size_and_regenerates_otherwise(transactional_db):
    spec = DatasetSpec(customers=120, purchases_per_customer=3, seed=1)
    dataset_generate(spec)
    first_name = Customer.objects.get(pk=1).name

    _, reused = dataset_ensure(spec, reuse=True, log=lambda _: None)
    assert reused
    _, reused = dataset_ensure(
        DatasetSpec(customers=80, purchases_per_customer=3, seed=2), reuse=True, log=lambda _: None
    )
    assert not reused
    assert Customer.objects.count() == 80
    assert first_name  # the first dataset had names


def test_bench_refuses_a_database_holding_customers_it_did_not_create(transactional_db):
    CustomerFactory(name="A real customer")

    with pytest.raises(BenchRefused, match="did not create"):
        dataset_generate(DatasetSpec(customers=10, purchases_per_customer=2, seed=1))
    with pytest.raises(CommandError, match="did not create"):
        call_command("bench", customers=10, skip_pages=True, skip_naive=True)
    assert list(Customer.objects.values_list("name", flat=True)) == ["A real customer"]


@pytest.fixture
def small_database_cleanup(transactional_db):
    yield
    name = connection.settings_dict["NAME"]
    if connection.vendor == "sqlite":
        path = Path(name)
        small = path.with_name(f"{path.stem}_1k{path.suffix or '.sqlite3'}")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{small}{suffix}").unlink(missing_ok=True)
    else:
        with connection.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {connection.ops.quote_name(f'{name}_1k')}")


@pytest.mark.slow
def test_a_tiny_bench_run_reports_every_phase_floor_and_ratio(small_database_cleanup, tmp_path):
    call_command(
        "bench",
        customers=300,
        purchases_per_customer=4,
        runs=1,
        naive_subset=100,
        requests=2,
        small_customers=120,
        results_dir=str(tmp_path),
    )

    (path,) = tmp_path.glob("*.json")
    results = json.loads(path.read_text())
    assert results["dataset"]["customers"] == 300
    assert results["machine"]["cores_logical"] >= 1
    assert results["database"]["version"]
    for case in ("cold", "warm", "daily"):
        run = results["recluster"][case]["runs"][0]
        assert run["status"] == "succeeded"
        assert set(PHASES) <= set(run["timings"])
        assert run["peak_rss_mb"] > 0
        # Each run has its own honest floor, timed next to it, and its ratio over it.
        floor = run["honest_floor"]
        assert floor["seconds"] == pytest.approx(sum(floor["parts"].values()))
        assert floor["ratio"] == pytest.approx(run["seconds"] / floor["seconds"])
        assert results["ratios"][f"{case}_over_honest_floor"]["value"] == floor["ratio"]
        # The floor reads, fits, scores and writes every customer's predictions; its
        # previous count (no stability fits, predictions on transactions) is kept beside.
        assert floor["predictions"]["customers"] > 0
        assert floor["predictions"]["indexes"] >= 1
        previous = floor["previous"]
        assert previous["seconds"] == pytest.approx(sum(previous["parts"].values()))
        assert results["ratios"][f"{case}_over_honest_floor_previous"]["value"] > 0
        # Every run scales its features; a first run reads the attributes and feedback
        # beside the purchases, later runs read them with the kept figures and read the
        # current labels to know which change.
        later = {"scaling", "feature_inputs", "labels_read"}
        expected = {"cold": {"scaling", "attributes"}, "warm": later, "daily": later}
        assert expected[case] <= set(floor["parts"])
    floors = results["floors"]
    for floor in (
        "aggregate",
        "aggregate_best_plan",
        "changed_aggregate",
        "stored_figures",
        "feature_inputs",
        "attributes",
        "current_labels",
        "scaling",
        "sklearn",
        "predictions_cold",
        "predictions_warm",
        "predictions_daily",
        "predictions_previous",
        "label_load_cold",
        "label_write_cold",
        "label_write_warm",
        "label_write_daily",
    ):
        assert floors[floor]["seconds"] >= 0
    # The fits' floor does the engine's stability fits too, and says what they cost.
    assert floors["sklearn"]["seconds"] > floors["sklearn"]["seconds_without_stability"]
    assert floors["label_write_cold"]["rows_changed"] == 300
    # The later runs' feature read takes every profiled buyer's attributes with their figures,
    # and the read of the current labels sees every membership.
    assert 0 < floors["feature_inputs"]["rows"] <= floors["stored_figures"]["rows"]
    assert floors["current_labels"]["rows"] == 300
    # The first run's honest floor loads every label into an empty table, indexes after.
    assert floors["label_load_cold"]["rows"] == 300
    assert floors["label_load_cold"]["indexes"] >= 3
    # One bench day: at least 300 customers bought (here every one of the 300).
    assert len(results["recluster"]["daily"]["changed_customers"]) == 300
    ratios = results["ratios"]
    assert {
        "cold_over_honest_floor",
        "warm_over_honest_floor",
        "daily_over_honest_floor",
        "daily_over_honest_floor_timed_after",
        "end_to_end_over_floors_cold_previous",
        "peak_memory_gb",
    } <= set(ratios)
    assert "naive_over_end_to_end" in ratios
    pages = set(results["pages"]["300"])
    assert {"admin_changelist", "admin_search", "admin_customer", "segment_page"} <= pages
    assert set(results["pages"]["120"]) == pages
    assert set(results["pages"]["during_recluster"]) == pages
    for page in pages:
        assert f"page_{page}_300_over_120" in ratios
        assert f"page_{page}_during_recluster_over_idle" in ratios
    # The day's purchases are taken out again: the dataset stays the generated one.
    assert not Purchase.objects.filter(external_source="bench-daily").exists()
    # Nothing was written back: labels are those of the last recluster.
    assert not Customer.objects.filter(
        purchase_count__gt=0, membership__segment__isnull=True
    ).exists()
