"""The customers import reads the file into staging tables and writes with a few statements:
the preview never takes the write lock, the write's length does not grow query by query."""

import io
from datetime import date
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from crm.importers import customers as customers_module
from crm.importers import customers_import
from crm.models import Customer, Tag
from crm.search import customer_search_text
from tests.factories import CustomerFactory, TagFactory

pytestmark = pytest.mark.django_db


def csv_file(text: str) -> io.BytesIO:
    return io.BytesIO(text.encode())


def messages(report) -> list[str]:
    return [str(e) for e in report.errors]


def test_preview_counts_creations_and_updates_without_opening_the_write(monkeypatch):
    CustomerFactory(email="ann@example.com", name="Ann", city="Leeds")
    CustomerFactory(email="bob@example.com", name="Bob", city="York")

    def no_write(**kwargs):
        raise AssertionError("a dry run must not open the write transaction")

    monkeypatch.setattr(customers_module, "import_write", no_write)
    data = (
        "email,name,city\n"
        "ANN@example.com,,Paris\n"  # updated: the city changes
        "bob@example.com,Bob,\n"  # unchanged: the name is the stored one
        "cleo@example.com,Cleo,Lyon\n"  # created
    )
    report = customers_import(source=csv_file(data), dry_run=True)

    assert (report.created, report.updated, report.unchanged) == (1, 1, 1)
    assert Customer.objects.get(email="ann@example.com").city == "Leeds"
    assert Customer.objects.count() == 2


def test_reimport_updates_only_what_changed_and_adds_tags_to_old_and_new_customers():
    ann = CustomerFactory(email="ann@example.com", name="Ann", city="Leeds")
    bob = CustomerFactory(email="bob@example.com", name="Bob", city="York")
    ann.tags.add(TagFactory(name="vip"))
    bob_updated_at = bob.updated_at
    data = (
        "email,city,tags\n"
        "ann@example.com,Paris,vip; newsletter\n"
        "bob@example.com,York,newsletter\n"
        "cleo@example.com,Lyon,vip\n"
    )
    report = customers_import(source=csv_file(data))

    assert (report.created, report.updated, report.unchanged) == (1, 1, 1)
    ann.refresh_from_db()
    bob.refresh_from_db()
    assert (ann.city, ann.name) == ("Paris", "Ann")  # a column absent leaves it alone
    assert bob.updated_at == bob_updated_at
    assert sorted(Tag.objects.values_list("name", flat=True)) == ["newsletter", "vip"]
    assert sorted(t.name for t in ann.tags.all()) == ["newsletter", "vip"]
    assert [t.name for t in bob.tags.all()] == ["newsletter"]
    cleo = Customer.objects.get(email="cleo@example.com")
    assert [t.name for t in cleo.tags.all()] == ["vip"]
    assert cleo.search_text == "|cleo@example.com|"


def test_duplicate_external_ids_and_unknown_ids_are_reported_in_row_order():
    data = (
        "id,email,external_id\n"
        "999,,\n"  # row 2: no customer with this id
        ",ann@example.com,A-1\n"
        ",bob@example.com,A-1\n"  # row 4: the external id again
        ",ANN@example.com,\n"  # row 5: the e-mail again
    )
    report = customers_import(source=csv_file(data), only_valid=True)

    assert messages(report) == [
        "Row 2, column 'id': no customer with id 999 (a customer without e-mail or "
        "external id is matched by the export's id)",
        "Row 4, column 'external_id': A-1 already appears on row 3 of this file",
        "Row 5, column 'email': ANN@example.com already appears on row 3 of this file",
    ]
    assert report.invalid_rows == 3 and report.created == 1
    assert list(Customer.objects.values_list("email", "external_id")) == [
        ("ann@example.com", "A-1")
    ]


def test_preview_shows_the_parsed_values_and_the_tags_in_file_order():
    data = (
        "email,birth_date,annual_income,marketing_consent,tags\n"
        "ann@example.com,1990-05-04,52000,yes,zeta; alpha\n"
    )
    report = customers_import(source=csv_file(data), dry_run=True)

    assert report.preview == [
        {
            "row": 2,
            "email": "ann@example.com",
            "birth_date": date(1990, 5, 4),
            "annual_income": Decimal("52000.00"),
            "marketing_consent": True,
            "tags": "zeta, alpha",
        }
    ]


def _write_queries(rows: int) -> int:
    data = "email,name,tags\n" + "".join(
        f"c{i}@example.com,Client {i},t{i % 3}\n" for i in range(rows)
    )
    with CaptureQueriesContext(connection) as captured:
        report = customers_import(source=csv_file(data))
    assert report.created == rows
    return len(captured.captured_queries)


def test_the_write_takes_as_many_statements_for_many_rows_as_for_few():
    few = _write_queries(5)
    Customer.objects.all().delete()
    assert _write_queries(1500) == few


def test_a_staff_edit_between_the_check_and_the_write_keeps_the_search_text_true(monkeypatch):
    ann = CustomerFactory(email="ann@example.com", name="Ann", phone="")
    prepare = customers_module._search_texts_prepare

    def prepare_then_staff_edit():
        prepare()
        # The owner saves Ann's phone while the import is about to write.
        Customer.objects.filter(pk=ann.pk).update(
            phone="0555 0100",
            search_text=customer_search_text(name="Ann", email=ann.email, phone="0555 0100"),
        )

    monkeypatch.setattr(customers_module, "_search_texts_prepare", prepare_then_staff_edit)
    report = customers_import(source=csv_file("email,name\nann@example.com,Ann Élan\n"))

    ann.refresh_from_db()
    assert report.updated == 1
    assert (ann.name, ann.phone) == ("Ann Élan", "0555 0100")
    assert ann.search_text == "ann elan|ann@example.com|05550100"
