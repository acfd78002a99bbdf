"""Segmentation's columns in the customer export: the segment, read once per chunk."""

import csv
import io

import pytest

from crm import exports
from crm.exports import csv_write, customer_rows
from crm.models import Customer
from segmentation.exports import CUSTOMER_EXPORT_PROVIDERS, SEGMENT_COLUMNS
from tests.factories import CustomerFactory, SegmentFactory

pytestmark = pytest.mark.django_db


def _records(**kwargs) -> list[dict]:
    out = io.StringIO()
    csv_write(customer_rows(Customer.objects.all(), **kwargs), out)
    return list(csv.DictReader(io.StringIO(out.getvalue())))


def test_the_segment_column_follows_crm_columns_and_is_empty_without_a_segment():
    placed = CustomerFactory(name="Ann", segment=SegmentFactory(name="Loyal regulars"))
    CustomerFactory(name="Bob")

    records = _records(extra_columns=CUSTOMER_EXPORT_PROVIDERS)

    header = list(records[0])
    assert header[header.index("last_purchase_at") + 1] == "segment"
    segments = {r["name"]: r["segment"] for r in records}
    assert segments == {placed.name: "Loyal regulars", "Bob": ""}


def test_crm_alone_exports_no_segment_column():
    CustomerFactory(segment=SegmentFactory())
    assert "segment" not in _records()[0]


def test_the_segment_is_read_once_per_chunk_not_per_customer(
    monkeypatch, django_assert_max_num_queries
):
    monkeypatch.setattr(exports, "CHUNK_SIZE", 2)
    segment = SegmentFactory()
    CustomerFactory.create_batch(5, segment=segment)

    # Per chunk of 2 customers: the customers, their tags, their segments (3 chunks).
    with django_assert_max_num_queries(9):
        rows = list(customer_rows(Customer.objects.all(), extra_columns=(SEGMENT_COLUMNS,)))

    assert [row[-1] for row in rows[1:]] == [segment.name] * 5
