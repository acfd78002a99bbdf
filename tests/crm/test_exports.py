"""CSV export: formulas neutralised, numbers kept, rows streamed."""

import csv
import io
from decimal import Decimal

import pytest

from crm.exports import csv_cell, csv_lines, csv_write, customer_rows, purchase_rows
from crm.models import Customer, Purchase
from tests.factories import CustomerFactory, PurchaseFactory, TagFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("=SUM(A1:A9)", "'=SUM(A1:A9)"),
        ("+44 20 7000", "'+44 20 7000"),
        ("-2+3", "'-2+3"),
        ("@cmd", "'@cmd"),
        ("\tTAB", "'\tTAB"),
        ("\rCR", "'\rCR"),
        ("Ann = friend", "Ann = friend"),
        ("", ""),
    ],
)
def test_text_cells_that_a_spreadsheet_would_run_get_a_leading_apostrophe(value, written):
    assert csv_cell(value) == written


def test_numbers_stay_numbers_even_when_negative():
    assert csv_cell(Decimal("-12.50")) == Decimal("-12.50")
    assert csv_cell(-3) == -3
    assert csv_cell(2.5) == 2.5
    assert csv_cell(None) == ""
    assert csv_cell(True) == "yes"


def test_customer_export_writes_every_column_defused():
    customer = CustomerFactory(
        name='=HYPERLINK("http://evil")', phone="+33 6 12", annual_income=Decimal("-0")
    )
    customer.tags.add(TagFactory(name="vip"))
    Customer.objects.filter(pk=customer.pk).update(total_spent=Decimal("-15.00"))
    out = io.StringIO()

    assert csv_write(customer_rows(Customer.objects.all()), out) == 1
    header, row = list(csv.reader(io.StringIO(out.getvalue())))
    record = dict(zip(header, row, strict=True))
    assert record["name"] == '\'=HYPERLINK("http://evil")'
    assert record["phone"] == "'+33 6 12"
    assert record["total_spent"] == "-15.00"  # unquoted in the file: a number
    assert "\n" + str(customer.pk) + "," in out.getvalue()
    assert ",-15.00," in out.getvalue()
    assert record["tags"] == "vip"


def test_purchase_export_is_reimportable_and_streams_line_by_line():
    purchase = PurchaseFactory(product="@SUM(1)", amount=Decimal("9.90"), external_order_id="A1")
    lines = csv_lines(purchase_rows(Purchase.objects.all()))

    header = next(lines)
    assert header.startswith("id,customer_email,customer_external_id,customer_name,order_id")
    (row,) = list(lines)
    assert f"{purchase.pk},{purchase.customer.email}" in row
    assert "'@SUM(1)" in row and ",9.90," in row


def test_export_reads_the_table_in_chunks(django_assert_max_num_queries):
    CustomerFactory.create_batch(5)
    with django_assert_max_num_queries(4):  # customers + their tags, per chunk
        rows = list(customer_rows(Customer.objects.all()))
    assert len(rows) == 6


def test_customer_export_spans_chunks_with_each_customer_once_and_tags_in_name_order(
    monkeypatch,
):
    monkeypatch.setattr("crm.exports.CHUNK_SIZE", 2)
    customers = CustomerFactory.create_batch(5)
    customers[3].tags.add(TagFactory(name="zeta"), TagFactory(name="alpha"))
    Customer.objects.filter(pk=customers[4].pk).update(annual_income=Decimal("41000.00"))

    rows = list(customer_rows(Customer.objects.all(), hidden=("annual_income",)))

    header, data = rows[0], rows[1:]
    records = [dict(zip(header, row, strict=True)) for row in data]
    assert [r["id"] for r in records] == sorted(c.pk for c in customers)
    assert records[3]["tags"] == "alpha; zeta"
    assert records[4]["annual_income"] == ""  # hidden: blank, the header keeps the column


def test_streamed_customer_export_is_the_same_text_as_the_file(tmp_path):
    CustomerFactory.create_batch(3, name="=cmd")
    out = io.StringIO()
    csv_write(customer_rows(Customer.objects.all()), out)

    assert "".join(csv_lines(customer_rows(Customer.objects.all()))) == out.getvalue()
