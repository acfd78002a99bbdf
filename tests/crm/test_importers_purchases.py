"""Purchase import corner cases beyond tests/crm/test_importers.py."""

import io

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
