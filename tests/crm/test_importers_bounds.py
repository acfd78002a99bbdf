"""Imports refuse what the database cannot hold: too large numbers, NUL bytes, far dates."""

import io

import pytest

from crm.importers import customers_import, purchases_import
from crm.models import Customer, Purchase
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db


def csv_file(text: str) -> io.BytesIO:
    return io.BytesIO(text.encode())


def messages(report) -> list[str]:
    return [str(e) for e in report.errors]


def test_an_amount_of_ten_billion_is_a_row_error_and_nothing_is_written():
    CustomerFactory(email="ann@example.com")
    data = (
        "customer_email,amount,purchased_at\n"
        "ann@example.com,10,2024-03-01\n"
        "ann@example.com,10000000000,2024-03-02\n"
    )
    report = purchases_import(source=csv_file(data))

    assert messages(report) == [
        "Row 3, column 'amount': the order's amount 10000000000.00 is too large "
        "(the largest is 9,999,999,999.99)"
    ]
    assert not report.written
    assert Purchase.objects.count() == 0


def test_the_largest_amount_that_fits_is_imported():
    CustomerFactory(email="ann@example.com")
    data = "customer_email,amount,purchased_at\nann@example.com,9999999999.99,2024-03-01\n"
    report = purchases_import(source=csv_file(data))

    assert report.written, messages(report)
    assert str(Purchase.objects.get().amount) == "9999999999.99"


def test_order_lines_adding_up_beyond_the_largest_amount_are_refused():
    CustomerFactory(email="ann@example.com")
    data = (
        "customer_email,order_id,quantity,unit_price,purchased_at\n"
        "ann@example.com,A1,100000,100000,2024-03-01\n"
        "ann@example.com,A2,1e17,1e17,2024-03-01\n"
        "ann@example.com,A3,1,1e999999,2024-03-01\n"
    )
    report = purchases_import(source=csv_file(data), only_valid=True)

    assert messages(report) == [
        "Row 4, column 'unit_price': '1e999999' is too large",
        "Row 2, column 'unit_price': the order's amount 10000000000.00 is too large "
        "(the largest is 9,999,999,999.99)",
        "Row 3, column 'unit_price': the order's amount is too large",
    ]
    assert Purchase.objects.count() == 0


def test_an_income_of_a_trillion_is_a_row_error():
    data = "email,annual_income\nann@example.com,1000000000000\nbob@example.com,999999999999.99\n"
    report = customers_import(source=csv_file(data), only_valid=True)

    assert messages(report) == [
        "Row 2, column 'annual_income': 1000000000000.00 is too large "
        "(the largest is 999,999,999,999.99)"
    ]
    assert list(Customer.objects.values_list("email", flat=True)) == ["bob@example.com"]


def test_a_nul_byte_in_customer_text_is_a_clear_row_error():
    data = "email,name,notes\nann@example.com,Ann\x00Lee,\nbob@example.com,Bob,a\x00b\n"
    report = customers_import(source=csv_file(data))

    assert messages(report) == [
        "Row 2, column 'name': contains a NUL byte (\\x00), which no text may hold",
        "Row 3, column 'notes': contains a NUL byte (\\x00), which no text may hold",
    ]
    assert Customer.objects.count() == 0


def test_a_nul_byte_in_a_purchase_line_is_a_clear_row_error():
    CustomerFactory(email="ann@example.com")
    data = "customer_email,amount,purchased_at,product\nann@example.com,10,2024-03-01,Te\x00a\n"
    report = purchases_import(source=csv_file(data))

    assert messages(report) == [
        "Row 2, column 'product': contains a NUL byte (\\x00), which no text may hold"
    ]
    assert Purchase.objects.count() == 0


@pytest.mark.parametrize("zone", ["Asia/Tokyo", "Pacific/Kiritimati", "America/New_York"])
def test_a_year_one_date_is_a_row_error_in_any_time_zone(settings, zone):
    settings.TIME_ZONE = zone
    CustomerFactory(email="ann@example.com")
    purchases = "customer_email,amount,purchased_at\nann@example.com,10,0001-01-01 00:30\n"
    customers = "email,birth_date,created_at\nbob@example.com,0001-01-01,0001-01-01\n"

    purchase_report = purchases_import(source=csv_file(purchases))
    customer_report = customers_import(source=csv_file(customers))

    assert messages(purchase_report) == [
        "Row 2, column 'purchased_at': the year 1 is out of range (1900-2200)"
    ]
    assert messages(customer_report) == [
        "Row 2, column 'birth_date': the year 1 is out of range (1900-2200)",
        "Row 2, column 'created_at': the year 1 is out of range (1900-2200)",
    ]
    assert Purchase.objects.count() == 0 and Customer.objects.count() == 1


def test_a_file_with_only_a_header_is_an_error():
    for report in (
        customers_import(source=csv_file("email,name\n\n")),
        purchases_import(source=csv_file("customer_email,amount,purchased_at\n")),
    ):
        assert report.fatal
        assert messages(report) == ["Row 2: the file has no data rows, only a header"]


def test_columns_the_import_does_not_know_are_listed_in_the_report():
    data = "email,Nmae,shoe size,name\nann@example.com,Ann,42,Ann\n"
    report = customers_import(source=csv_file(data))

    assert report.ignored_columns == ["Nmae", "shoe size"]
    assert "Columns ignored (not known to the import): Nmae, shoe size." in report.summary()
