"""Purchase import corner cases beyond tests/crm/test_importers.py."""

import io
from decimal import Decimal

import pytest

from crm.importers import purchases_import
from crm.models import Customer, Purchase
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db


def test_only_valid_leaves_out_orders_of_unknown_customers_without_creating_them():
    ann = CustomerFactory(email="ann@example.com")
    text = (
        "customer_email,purchased_at,amount\n"
        "ann@example.com,2024-01-01,10\n"
        "zed@example.com,2024-01-02,5\n"
    )

    report = purchases_import(source=io.BytesIO(text.encode()), only_valid=True)

    assert report.written
    assert (report.created, report.customers_created, report.invalid_rows) == (1, 0, 1)
    assert [str(e) for e in report.errors] == [
        "Row 3, column 'customer_email': no customer with e-mail zed@example.com; import the "
        "customers first or ask to create them (--create-customers, or the admin's 'create "
        "missing customers')"
    ]
    assert list(Purchase.objects.values_list("customer_id", flat=True)) == [ann.pk]
    assert not Customer.objects.filter(email="zed@example.com").exists()


def _file(text: str) -> io.BytesIO:
    return io.BytesIO(text.encode())


def test_lines_of_one_order_are_grouped_wherever_they_are_in_the_file():
    CustomerFactory(email="ann@example.com")
    CustomerFactory(email="bob@example.com")
    text = (
        "order_id,customer_email,quantity,unit_price,purchased_at,product,category\n"
        "O1,ann@example.com,1,2.00,2024-03-01 10:05,Mug,\n"
        "O2,bob@example.com,1,5.00,2024-03-02 09:00,Pen,Office\n"
        "O1,ann@example.com,3,0.333,2024-03-01 10:00,Card,Paper\n"
        "O2,bob@example.com,2,1.25,2024-03-02 09:10,Ink,\n"
        "O1,ann@example.com,1,1.00,2024-03-01 10:10,Tea,Food\n"
    )

    report = purchases_import(source=_file(text))

    assert (report.created, report.total_amount) == (2, Decimal("11.50"))
    o1 = Purchase.objects.get(external_order_id="O1")
    # 2.00 + 3 x 0.333 + 1.00, rounded to the cent once for the whole order
    assert (o1.amount, o1.product, o1.category) == (
        Decimal("4.00"),
        "Mug and 2 more items",
        "Paper",
    )
    assert o1.purchased_at.strftime("%H:%M") == "10:00"  # the order's earliest line
    assert Purchase.objects.get(external_order_id="O2").amount == Decimal("7.50")
    assert [p["row"] for p in report.preview] == [2, 3]
    assert report.preview[0]["lines"] == 3 and report.preview[0]["amount"] == Decimal("4.00")


def test_reimport_counts_unchanged_orders_and_moves_statistics_with_a_changed_customer():
    ann = CustomerFactory(email="ann@example.com")
    bob = CustomerFactory(email="bob@example.com")
    text = (
        "order_id,customer_email,amount,purchased_at\n"
        "A1,ann@example.com,10,2024-03-01 10:00\n"
        "A2,ann@example.com,20,2024-03-02 10:00\n"
    )
    purchases_import(source=_file(text))

    same = purchases_import(source=_file(text))
    assert (same.created, same.updated, same.unchanged) == (0, 0, 2)

    moved = purchases_import(source=_file(text.replace("A2,ann", "A2,bob")))
    assert (moved.created, moved.updated, moved.unchanged) == (0, 1, 1)
    ann.refresh_from_db()
    bob.refresh_from_db()
    assert (ann.purchase_count, ann.total_spent) == (1, Decimal("10.00"))
    assert (bob.purchase_count, bob.total_spent) == (1, Decimal("20.00"))
    assert Purchase.objects.count() == 2


def test_errors_found_after_reading_are_listed_in_row_order_with_the_row_errors():
    CustomerFactory(email="ann@example.com")
    CustomerFactory(email="bob@example.com")
    text = (
        "order_id,customer_email,amount,purchased_at\n"
        "O1,ann@example.com,1,2024-03-01\n"
        "O2,ann@example.com,1,2024-03-01\n"
        "O1,bob@example.com,1,2024-03-01\n"
        "O3,ann@example.com,oops,2024-03-01\n"
        "O2,bob@example.com,1,2024-03-01\n"
        "O4,ann@example.com,2,2024-03-01\n"
    )

    report = purchases_import(source=_file(text), only_valid=True)

    assert [str(e) for e in report.errors] == [
        "Row 4, column 'customer_email': order O1 already belongs to customer "
        "ann@example.com (row 2)",
        "Row 5, column 'amount': 'oops' is not an amount",
        "Row 6, column 'customer_email': order O2 already belongs to customer "
        "ann@example.com (row 3)",
    ]
    assert report.invalid_rows == 3
    assert list(Purchase.objects.values_list("external_order_id", flat=True)) == ["O4"]


def test_a_dry_run_and_a_failed_import_leave_no_staging_behind():
    ann = CustomerFactory(email="ann@example.com")
    good = "customer_email,amount,purchased_at,order_id\nann@example.com,10,2024-03-01,A1\n"

    assert purchases_import(source=_file(good), dry_run=True).created == 1
    assert not purchases_import(source=_file("customer_email,amount\nx@example.com,1\n")).ok
    report = purchases_import(source=_file(good))

    assert report.written and Purchase.objects.get().customer == ann


def test_progress_counts_every_line_read():
    CustomerFactory(email="ann@example.com")
    lines = "".join(f"ann@example.com,1,2024-03-01,A{i}\n" for i in range(12_000))
    seen: list[int] = []

    report = purchases_import(
        source=_file("customer_email,amount,purchased_at,order_id\n" + lines),
        progress=seen.append,
    )

    assert report.created == 12_000
    assert sum(seen) == 12_000
