"""The import and export management commands."""

import csv
import io
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from crm.models import Customer, Purchase
from tests.factories import CustomerFactory, PurchaseFactory

pytestmark = pytest.mark.django_db

UCI_SLICE = Path(__file__).resolve().parent.parent / "fixtures" / "online_retail_uci_slice.csv"


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_import_customers_then_dry_run_reimport_changes_nothing(tmp_path):
    path = tmp_path / "customers.csv"
    path.write_text("email,name\nann@example.com,Ann\n", encoding="utf-8")
    out, _ = run("import_customers", str(path))
    assert "Customers were created: 1." in out

    path.write_text("email,name\nann@example.com,Ann B\nbob@example.com,Bob\n", encoding="utf-8")
    out, _ = run("import_customers", str(path), "--dry-run")
    assert "Customers would be created: 1." in out and "Dry run" in out
    assert list(Customer.objects.values_list("name", flat=True)) == ["Ann"]


def test_import_with_errors_fails_naming_rows_and_writes_nothing(tmp_path):
    path = tmp_path / "customers.csv"
    path.write_bytes("email,name\nann@example.com,Zoé\n".encode("cp1252"))
    err = io.StringIO()

    with pytest.raises(CommandError, match="Nothing was imported"):
        call_command("import_customers", str(path), stdout=io.StringIO(), stderr=err)
    assert "Row 2, column 'name': byte 0xE9 is not valid UTF-8" in err.getvalue()
    assert not Customer.objects.exists()


def test_import_purchases_with_the_uci_preset_reports_what_it_skipped():
    out, _ = run("import_purchases", str(UCI_SLICE), "--preset", "uci", "--create-customers")

    assert "Orders were created: 28." in out
    assert "Customers were created: 20." in out
    assert "Total amount of the orders: 11,238.59." in out
    assert "Orders worth exactly 0 (kept" in out
    assert "Skipped 27 row(s): no customer on the line." in out
    assert "Skipped 11 row(s): cancelled order (order id starts with 'C')." in out
    assert Purchase.objects.count() == 28


def test_import_purchases_map_option_reads_other_headers(tmp_path):
    CustomerFactory(email="ann@example.com")
    path = tmp_path / "sales.csv"
    path.write_text("Mail,Total,Date\nann@example.com,12.5,2024-01-02\n", encoding="utf-8")
    run(
        "import_purchases",
        str(path),
        "--map",
        "customer_email=Mail",
        "--map",
        "amount=Total",
        "--map",
        "purchased_at=Date",
    )
    assert Purchase.objects.get().amount == Decimal("12.50")

    with pytest.raises(CommandError, match="not column=FileColumn"):
        run("import_purchases", str(path), "--map", "nonsense")


def test_export_purchases_writes_safe_csv_to_a_file(tmp_path):
    PurchaseFactory(customer=CustomerFactory(name="-rm -rf"), amount=Decimal("3.00"))
    purchases = tmp_path / "p.csv"
    run("export_purchases", "--output", str(purchases))

    (row,) = list(csv.DictReader(purchases.open(encoding="utf-8")))
    assert row["amount"] == "3.00" and row["customer_name"] == "'-rm -rf"
