"""CSV import of customers and purchases: validation, matching, grouping, all-or-nothing."""

import gzip
import io
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.db.models import Sum
from django.utils import timezone

from crm.importers import customers_import, purchases_import
from crm.models import Customer, Purchase
from tests.factories import CustomerFactory, PurchaseFactory, TagFactory

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
UCI_SLICE = FIXTURES / "online_retail_uci_slice.csv"
UCI_FULL = (
    Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "online_retail_uci.csv.gz"
)

pytestmark = pytest.mark.django_db


def csv_file(text: str, *, encoding: str = "utf-8") -> io.BytesIO:
    return io.BytesIO(text.encode(encoding))


def messages(report) -> list[str]:
    return [str(e) for e in report.errors]


CUSTOMERS = (
    "email,name,phone,age,annual_income,city,country,tags,marketing_consent,birth_date\n"
    "ann@example.com,Ann Lee,+44 20 7000 0001,34,52000,London,United Kingdom,vip;newsletter,yes,\n"
    "bob@example.com,Bob Stone,,,,Leeds,United Kingdom,,no,1980-02-29\n"
)


def test_customer_import_creates_customers_with_their_tags():
    report = customers_import(source=csv_file(CUSTOMERS))

    assert report.written and report.created == 2 and report.updated == 0
    ann = Customer.objects.get(email="ann@example.com")
    assert ann.name == "Ann Lee" and ann.age == 34 and ann.annual_income == Decimal("52000.00")
    assert ann.marketing_consent is True
    assert sorted(ann.tags.values_list("name", flat=True)) == ["newsletter", "vip"]
    assert Customer.objects.get(email="bob@example.com").birth_date.isoformat() == "1980-02-29"


def test_customer_reimport_updates_case_insensitively_and_never_duplicates():
    existing = CustomerFactory(email="Ann@Example.com", name="Old name", city="Paris")
    TagFactory(name="vip")
    customers_import(source=csv_file(CUSTOMERS))
    report = customers_import(source=csv_file(CUSTOMERS.replace("Ann Lee", "Ann Lee-Smith")))

    assert (report.created, report.updated, report.unchanged) == (0, 1, 1)
    assert Customer.objects.count() == 2
    existing.refresh_from_db()
    assert existing.name == "Ann Lee-Smith" and existing.city == "London"
    assert existing.tags.filter(name="vip").count() == 1


def test_customer_import_matches_on_external_id_and_leaves_blank_cells_alone():
    customer = CustomerFactory(
        email="", external_source="shop", external_id="C-7", phone="+331", city="Lyon"
    )
    report = customers_import(source=csv_file("external_id,name,city\nC-7,Chloé,\n"))

    assert report.updated == 1 and report.created == 0
    customer.refresh_from_db()
    assert customer.name == "Chloé" and customer.city == "Lyon" and customer.phone == "+331"


def test_customer_import_accepts_a_bom_and_windows_line_endings():
    data = ("\ufeff" + CUSTOMERS).replace("\n", "\r\n")
    report = customers_import(source=csv_file(data))

    assert report.errors == [] and report.created == 2
    assert Customer.objects.get(email="bob@example.com").name == "Bob Stone"


def test_customer_import_reads_gzip_files():
    report = customers_import(source=io.BytesIO(gzip.compress(CUSTOMERS.encode())))

    assert report.created == 2


def test_non_utf8_file_names_row_column_and_byte_and_writes_nothing():
    data = "email,name\nann@example.com,Ann\nzoe@example.com,Zoé Müller\n"
    report = customers_import(source=csv_file(data, encoding="latin-1"))

    assert not report.ok and not report.written
    (message,) = messages(report)
    assert message.startswith("Row 3, column 'name': byte 0xE9 is not valid UTF-8")
    assert "re-save the file as 'CSV UTF-8'" in message
    assert Customer.objects.count() == 0


def test_missing_column_is_named_and_nothing_is_written():
    report = customers_import(source=csv_file("name,phone\nAnn,123\n"))
    assert report.fatal
    assert messages(report) == [
        "Row 1, column 'email': missing column: the file needs 'email' or 'external_id'"
    ]

    data = "customer_email,amount\nann@example.com,10\n"
    report = purchases_import(source=csv_file(data))
    assert messages(report) == ["Row 1, column 'purchased_at': missing column 'purchased_at'"]
    assert Customer.objects.count() == 0 and Purchase.objects.count() == 0


def test_duplicate_email_in_the_file_names_both_rows_and_writes_nothing():
    data = "email,name\nann@example.com,Ann\nbob@example.com,Bob\nANN@example.com,Ann again\n"
    report = customers_import(source=csv_file(data))

    assert messages(report) == [
        "Row 4, column 'email': ANN@example.com already appears on row 2 of this file"
    ]
    assert Customer.objects.count() == 0


def test_non_numeric_age_names_row_and_column_and_writes_nothing():
    data = "email,age\nann@example.com,34\nbob@example.com,forty\n"
    report = customers_import(source=csv_file(data))

    assert messages(report) == ["Row 3, column 'age': 'forty' is not a whole number of years"]
    assert Customer.objects.count() == 0


def test_impossible_and_future_birth_dates_are_refused():
    future = (timezone.localdate() + timedelta(days=3)).isoformat()
    data = f"email,birth_date\nann@example.com,2023-02-30\nbob@example.com,{future}\n"
    report = customers_import(source=csv_file(data))

    assert messages(report) == [
        "Row 2, column 'birth_date': '2023-02-30' is not a real date "
        "(day is out of range for month)",
        f"Row 3, column 'birth_date': {future} is in the future",
    ]
    assert Customer.objects.count() == 0


def test_only_valid_imports_the_valid_rows_and_reports_the_others():
    data = "email,age\nann@example.com,34\nbob@example.com,forty\nnot-an-email,3\n"
    report = customers_import(source=csv_file(data), only_valid=True)

    assert report.written and report.created == 1 and report.invalid_rows == 2
    assert report.skipped == {"invalid (see the errors)": 2}
    assert list(Customer.objects.values_list("email", flat=True)) == ["ann@example.com"]


def test_dry_run_counts_but_writes_nothing():
    report = customers_import(source=csv_file(CUSTOMERS), dry_run=True)

    assert report.created == 2 and not report.written
    assert "Dry run: nothing was written." in report.summary()
    assert Customer.objects.count() == 0


def test_column_mapping_reads_the_files_own_headers():
    data = "E-mail address,Full name\nann@example.com,Ann\n"
    report = customers_import(
        source=csv_file(data), mapping={"email": "E-mail address", "name": "Full name"}
    )

    assert report.created == 1
    assert Customer.objects.get().name == "Ann"


# -- purchases -------------------------------------------------------------------------------


def test_purchase_import_records_purchases_and_refreshes_customer_statistics():
    ann = CustomerFactory(email="ann@example.com")
    data = (
        "customer_email,amount,purchased_at,product,channel,order_id\n"
        "ANN@example.com,19.90,2024-03-01 10:00,Mug,online,A1\n"
        "ann@example.com,5.10,2024-04-01,Card,in_person,A2\n"
    )
    report = purchases_import(source=csv_file(data))

    assert report.created == 2 and report.written
    ann.refresh_from_db()
    assert ann.purchase_count == 2 and ann.total_spent == Decimal("25.00")
    assert ann.last_purchase_at.date().isoformat() == "2024-04-01"


def test_purchase_reimport_updates_orders_instead_of_duplicating():
    CustomerFactory(email="ann@example.com")
    data = "customer_email,amount,purchased_at,order_id\nann@example.com,10,2024-03-01,A1\n"
    purchases_import(source=csv_file(data))
    report = purchases_import(source=csv_file(data.replace(",10,", ",12,")))

    assert report.created == 0 and report.updated == 1
    assert Purchase.objects.get().amount == Decimal("12.00")
    assert Customer.objects.get().total_spent == Decimal("12.00")


def test_negative_amount_names_row_and_column_and_writes_nothing():
    ann = CustomerFactory(email="ann@example.com")
    PurchaseFactory(customer=ann)
    data = (
        "customer_email,amount,purchased_at\n"
        "ann@example.com,10,2024-03-01\n"
        "ann@example.com,-4.50,2024-03-02\n"
    )
    report = purchases_import(source=csv_file(data))

    assert messages(report) == [
        "Row 3, column 'amount': -4.50 is negative; record a refund with kind=refund and a "
        "positive amount"
    ]
    assert Purchase.objects.count() == 1


def test_impossible_and_future_purchase_dates_name_row_and_column():
    CustomerFactory(email="ann@example.com")
    tomorrow_and_more = (timezone.now() + timedelta(days=3)).strftime("%Y-%m-%d %H:%M")
    data = (
        "customer_email,amount,purchased_at\n"
        "ann@example.com,10,2023-02-30 10:00\n"
        f"ann@example.com,10,{tomorrow_and_more}\n"
        "ann@example.com,10,yesterday\n"
    )
    report = purchases_import(source=csv_file(data))

    assert messages(report) == [
        "Row 2, column 'purchased_at': '2023-02-30 10:00' is not a real date "
        "(day is out of range for month)",
        f"Row 3, column 'purchased_at': {tomorrow_and_more} is in the future",
        "Row 4, column 'purchased_at': 'yesterday' is not a date and time; "
        "use YYYY-MM-DD or YYYY-MM-DD HH:MM[:SS]",
    ]
    assert Purchase.objects.count() == 0


def test_unknown_customer_is_an_error_unless_asked_to_create_it():
    data = "customer_external_id,customer_country,amount,purchased_at\n42.0,France,10,2024-03-01\n"
    report = purchases_import(source=csv_file(data))
    assert messages(report)[0].startswith(
        "Row 2, column 'customer_external_id': no customer with external id 42"
    )
    assert Customer.objects.count() == 0

    report = purchases_import(source=csv_file(data), create_customers=True)
    customer = Customer.objects.get()
    assert report.customers_created == 1
    assert (customer.external_source, customer.external_id, customer.country) == (
        "shop",
        "42",
        "France",
    )
    assert customer.purchase_count == 1


def test_line_items_are_grouped_and_returns_and_customerless_lines_skipped():
    CustomerFactory(email="ann@example.com")
    data = (
        "order_id,customer_email,quantity,unit_price,purchased_at,product\n"
        "O1,ann@example.com,2,3.50,2024-03-01 10:00,Mug\n"
        "O1,ann@example.com,1,0.99,2024-03-01 10:01,Card\n"
        "O1,ann@example.com,-1,3.50,2024-03-01 10:02,Mug\n"
        "O2,,5,1.00,2024-03-02 09:00,Pen\n"
        "O3,ann@example.com,1,0,2024-03-03 09:00,Free sample\n"
    )
    report = purchases_import(source=csv_file(data))

    assert report.created == 2 and report.zero_value_orders == 1
    assert report.skipped == {
        "negative quantity (a return or cancellation line)": 1,
        "no customer on the line": 1,
    }
    order = Purchase.objects.get(external_order_id="O1")
    assert order.amount == Decimal("7.99")  # 2 x 3.50 + 1 x 0.99
    assert order.product == "Mug and 1 more item"
    assert order.purchased_at.strftime("%H:%M") == "10:00"


def test_order_lines_naming_two_customers_are_refused():
    CustomerFactory(email="ann@example.com")
    CustomerFactory(email="bob@example.com")
    data = (
        "order_id,customer_email,amount,purchased_at\n"
        "O1,ann@example.com,1,2024-03-01\n"
        "O1,bob@example.com,1,2024-03-01\n"
    )
    report = purchases_import(source=csv_file(data))

    assert messages(report) == [
        "Row 3, column 'customer_email': order O1 already belongs to customer "
        "ann@example.com (row 2)"
    ]


def test_uci_slice_groups_invoices_and_skips_cancellations_and_anonymous_lines():
    report = purchases_import(source=UCI_SLICE, preset="uci", create_customers=True)

    assert report.errors == []
    assert report.rows == 289
    assert report.skipped == {
        "no customer on the line": 27,
        "cancelled order (order id starts with 'C')": 11,
    }
    assert report.created == 28 and report.customers_created == 20
    assert report.zero_value_orders == 1
    assert Purchase.objects.count() == 28
    assert Purchase.objects.aggregate(total=Sum("amount"))["total"] == Decimal("11238.59")
    assert Purchase.objects.get(external_order_id="536366").amount == Decimal("22.20")
    assert Purchase.objects.get(external_order_id="543599").amount == Decimal("0.00")
    customer = Customer.objects.get(external_source="uci", external_id="17850")
    assert customer.purchase_count == 6 and customer.country == "United Kingdom"
    assert not Customer.objects.filter(external_id="17547").exists()  # cancellations only
    assert all(p.currency == "GBP" for p in Purchase.objects.all())


@pytest.mark.slow
@pytest.mark.skipif(not UCI_FULL.exists(), reason="the full UCI file is not on this machine")
def test_full_uci_file_imports_the_documented_figures():
    report = purchases_import(source=UCI_FULL, preset="uci", create_customers=True)

    assert report.errors == []
    assert report.rows == 541_909
    assert report.customers_created == 4_339 and Customer.objects.count() == 4_339
    assert report.created == 18_536 and Purchase.objects.count() == 18_536
    assert report.total_amount == Decimal("8911407.90")
    assert report.zero_value_orders == 4
    assert sum(Customer.objects.values_list("purchase_count", flat=True)) == 18_536
