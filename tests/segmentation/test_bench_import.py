"""The import bench's file: the shape it promises, and importable as it is."""

import csv

import pytest

from crm.importers import purchases_import
from crm.models import Customer, Purchase
from segmentation.benchmark.imports import peak_mb, purchases_file_write

pytestmark = pytest.mark.django_db


def test_bench_file_has_one_and_a_half_lines_per_order_and_imports_cleanly(tmp_path):
    path = tmp_path / "purchases.csv"
    shape = purchases_file_write(path, lines=300)

    with open(path, newline="") as source:
        rows = list(csv.DictReader(source))
    assert len(rows) == 300
    assert (shape["orders"], shape["customers"]) == (200, 30)
    assert len({r["order_id"] for r in rows}) == 200

    report = purchases_import(source=str(path), create_customers=True, external_source="bench")

    assert report.written and report.errors == []
    assert (Purchase.objects.count(), report.created) == (200, 200)
    assert Customer.objects.count() <= 30


def test_peak_memory_is_read_from_the_process_status():
    assert 10 < peak_mb() < 100_000
