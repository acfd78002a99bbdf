"""The customer column table: each column's parser; one vocabulary for import and export."""

from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from crm.exports import CUSTOMER_EXPORT_COLUMNS, customer_rows
from crm.importers import CUSTOMER_COLUMNS, CUSTOMER_PARSERS, CellError, customers_import
from crm.importers.columns import CUSTOMER_CSV_COLUMNS
from crm.models import Customer
from tests.factories import CustomerFactory

NOT_UTF8 = "Chlo\udce9"  # how a Latin-1 "é" reads after decoding with surrogateescape

# column: (good text, its value, bad text, words the message must contain)
CASES = {
    "email": ("Ann@Example.com", "Ann@Example.com", "ann@", "not an e-mail address"),
    "name": ("Ann Lee", "Ann Lee", "x" * 201, "longer than 200 characters"),
    "phone": ("+44 20 7000 0001", "+44 20 7000 0001", "1" * 41, "longer than 40"),
    "external_source": ("shop", "shop", "s" * 41, "longer than 40"),
    "external_id": ("17850.0", "17850", "7" * 101, "longer than 100"),
    "birth_date": ("1980-02-29", date(1980, 2, 29), "1981-02-29", "not a real date"),
    "age": ("34.0", 34, "thirty", "not a whole number of years"),
    "annual_income": ("52000.005", Decimal("52000.01"), "-1", "negative"),
    "city": ("Leeds", "Leeds", "c" * 101, "longer than 100"),
    "country": ("United Kingdom", "United Kingdom", "c" * 101, "longer than 100"),
    "tags": (" vip ; newsletter|", ["vip", "newsletter"], "vip;" + "t" * 51, "longer than 50"),
    "notes": ("Prefers e-mail", "Prefers e-mail", NOT_UTF8, "not valid UTF-8"),
    "marketing_consent": ("Yes", True, "maybe", "not yes/no"),
    "profiling_opt_out": ("0", False, "2", "not yes/no"),
    "created_at": ("2024-03-01 10:30", None, "01/03/2024", "not a date and time"),
    "id": ("17.0", 17, "seventeen", "not a customer id"),
    "is_archived": ("no", False, "archived", "not yes/no"),
}


def test_every_imported_column_has_a_parser_case_here():
    assert set(CASES) == set(CUSTOMER_COLUMNS) == set(CUSTOMER_PARSERS)


@pytest.mark.parametrize("column", sorted(CASES))
def test_each_column_parser_turns_good_text_into_its_value(column):
    good, expected, _, _ = CASES[column]
    value = CUSTOMER_PARSERS[column](good)
    if column == "created_at":
        expected = timezone.make_aware(datetime(2024, 3, 1, 10, 30))
    assert value == expected


@pytest.mark.parametrize("column", sorted(CASES))
def test_each_column_parser_turns_bad_text_into_an_error_naming_the_column(column):
    _, _, bad, words = CASES[column]
    with pytest.raises(CellError) as caught:
        CUSTOMER_PARSERS[column](bad)
    assert caught.value.column == column
    assert words in caught.value.message
    assert f"column '{column}'" in str(caught.value)


@pytest.mark.parametrize("column", sorted(CASES))
def test_each_column_parser_refuses_bytes_that_were_not_utf8(column):
    with pytest.raises(CellError) as caught:
        CUSTOMER_PARSERS[column](NOT_UTF8)
    assert caught.value.column == column
    assert "byte 0xE9 is not valid UTF-8" in caught.value.message


def test_dates_in_the_future_are_refused():
    tomorrow = timezone.localdate() + timedelta(days=1)
    with pytest.raises(CellError, match="in the future"):
        CUSTOMER_PARSERS["birth_date"](tomorrow.isoformat())
    with pytest.raises(CellError, match="in the future"):
        CUSTOMER_PARSERS["created_at"]((tomorrow + timedelta(days=1)).isoformat())


def test_an_implausible_age_is_refused():
    with pytest.raises(CellError, match="130"):
        CUSTOMER_PARSERS["age"]("131")


def test_the_export_header_is_the_table_and_holds_every_column_the_import_reads():
    header = next(customer_rows(Customer.objects.none()))
    assert header == [c.name for c in CUSTOMER_CSV_COLUMNS]
    assert set(CUSTOMER_COLUMNS) < set(header)
    assert header[0] == "id"


@pytest.mark.django_db
def test_an_exported_customer_file_imports_back_onto_the_same_customers(tmp_path):
    ann = CustomerFactory(
        email="ann@example.com",
        name="Ann Lee",
        city="Leeds",
        age=34,
        annual_income=Decimal("52000.00"),
        marketing_consent=True,
    )
    rows = list(customer_rows(Customer.objects.all()))
    path = tmp_path / "customers.csv"
    path.write_text("\n".join(",".join(str(v) for v in row) for row in rows) + "\n")

    # The export-only columns (id, statistics, segment) are left out by the import.
    imported = [c for c in CUSTOMER_EXPORT_COLUMNS if c in CUSTOMER_COLUMNS]
    mapping = {column: column for column in imported}
    report = customers_import(source=path, mapping=mapping)

    assert report.ok, [str(e) for e in report.errors]
    assert (report.created, report.updated + report.unchanged) == (0, 1)
    ann.refresh_from_db()
    assert (ann.name, ann.city, ann.age, ann.marketing_consent) == ("Ann Lee", "Leeds", 34, True)
