"""Export then import gives back every customer value exactly (formula guard, id matching)."""

from datetime import datetime
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.utils import timezone

from crm.csv_guard import csv_guarded, csv_unguard
from crm.exports import csv_cell
from crm.importers import customers_import
from crm.models import Customer
from pages.demo import demo_seed
from tests.factories import CustomerFactory, TagFactory

# Every stored field but updated_at (a write sets it) and the purchase figures (derived).
COMPARED = [f.attname for f in Customer._meta.concrete_fields if f.attname not in {"updated_at"}]


def _snapshot() -> dict[int, tuple]:
    rows = {}
    for customer in Customer.objects.prefetch_related("tags").order_by("pk"):
        values = tuple(getattr(customer, name) for name in COMPARED)
        rows[customer.pk] = (*values, tuple(sorted(t.name for t in customer.tags.all())))
    return rows


@pytest.mark.parametrize(
    "text",
    [
        "=SUM(A1)",
        "+44 7700 900123",
        "-5 off",
        "@home",
        "\tindented",
        "'=looks guarded",
        "''=twice",
        "'quoted",
        "'",
        "plain",
        "O'Brien",
    ],
)
def test_the_import_takes_off_exactly_the_guard_the_export_adds(text):
    assert csv_unguard(csv_cell(text)) == text


def test_only_an_apostrophe_before_a_guarded_character_is_a_guard():
    assert csv_guarded("'=1") and csv_guarded("'+44") and csv_guarded("'-") and csv_guarded("'@")
    assert not csv_guarded("'hello") and not csv_guarded("'") and not csv_guarded("=1")


def test_datetimes_keep_their_fractions_of_a_second():
    moment = timezone.make_aware(datetime(2024, 3, 1, 10, 30, 5, 123456))
    assert ":05.123456" in csv_cell(moment)
    assert "." not in csv_cell(moment.replace(microsecond=0))


@pytest.mark.django_db
def test_exporting_the_demo_data_and_importing_it_back_changes_nothing(tmp_path):
    demo_seed(customers=300, seed=3)
    # Values a spreadsheet would run as formulas, and customers only the export's id names.
    odd = Customer.objects.order_by("pk")[:4]
    Customer.objects.filter(pk=odd[0].pk).update(name="=HYPERLINK(1)", notes="-3 kg\nthen +2")
    Customer.objects.filter(pk=odd[1].pk).update(name="@team", phone="+44 7700 900123")
    Customer.objects.filter(pk=odd[2].pk).update(email="", external_id="", name="'=odd")
    Customer.objects.filter(pk=odd[3].pk).update(email="", external_id="", is_archived=True)
    before = _snapshot()
    assert any(not c.email and not c.external_id for c in Customer.objects.all())
    path = tmp_path / "customers.csv"

    call_command("export_customers", "-o", str(path))
    report = customers_import(source=path)

    assert report.ok, [str(e) for e in report.errors[:5]]
    assert (report.created, report.updated) == (0, 0)
    assert report.unchanged == len(before)
    assert _snapshot() == before


@pytest.mark.django_db
def test_an_export_restores_every_value_changed_since(tmp_path):
    vip = TagFactory(name="vip")
    ann = CustomerFactory(
        name="Ann Lee",
        email="ann@example.com",
        phone="+44 20 7000 0001",
        notes="=not a formula",
        annual_income=Decimal("52000.10"),
        age=41,
        marketing_consent=True,
    )
    ann.tags.add(vip)
    nameless = CustomerFactory(name="Walk-in", email="", phone="-", city="Leeds")
    before = _snapshot()
    path = tmp_path / "customers.csv"
    call_command("export_customers", "-o", str(path))

    Customer.objects.filter(pk=ann.pk).update(
        name="Changed",
        phone="+1 555",
        notes="x",
        annual_income=1,
        age=2,
        marketing_consent=False,
        is_archived=True,
    )
    Customer.objects.filter(pk=nameless.pk).update(name="Changed too", city="York", phone="0")
    report = customers_import(source=path)

    assert report.ok, [str(e) for e in report.errors]
    assert (report.created, report.updated) == (0, 2)
    after = _snapshot()
    assert after == before


@pytest.mark.django_db
def test_a_row_without_email_or_external_id_names_its_customer_by_the_exports_id(tmp_path):
    walk_in = CustomerFactory(name="Walk-in", email="", city="Leeds")
    path = tmp_path / "customers.csv"
    path.write_text(f"id,email,external_id,name,city\n{walk_in.pk},,,Walk-in,York\n9999,,,Ghost,\n")

    refused = customers_import(source=path)
    assert not refused.ok
    assert "no customer with id 9999" in str(refused.errors)

    report = customers_import(source=path, only_valid=True)
    assert (report.created, report.updated) == (0, 1)
    walk_in.refresh_from_db()
    assert walk_in.city == "York"
    assert Customer.objects.count() == 1


@pytest.mark.django_db
def test_the_exports_id_never_overrides_an_email(tmp_path):
    ann = CustomerFactory(email="ann@example.com", name="Ann")
    bob = CustomerFactory(email="bob@example.com", name="Bob")
    path = tmp_path / "customers.csv"
    path.write_text(f"id,email,name\n{bob.pk},ann@example.com,Ann Again\n")

    customers_import(source=path)

    ann.refresh_from_db()
    bob.refresh_from_db()
    assert (ann.name, bob.name) == ("Ann Again", "Bob")
