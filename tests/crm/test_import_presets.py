"""The stripe, shopify and paypal presets, importing the platforms' own exports end to end."""

import io
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from crm import import_jobs
from crm.models import Customer, ImportJob, Purchase

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
STRIPE = FIXTURES / "stripe_payments.csv"
SHOPIFY = FIXTURES / "shopify_orders.csv"
PAYPAL = FIXTURES / "paypal_activity.csv"


def run_import(path, preset: str, *options: str) -> str:
    out = io.StringIO()
    call_command(
        "import_purchases",
        str(path),
        "--preset",
        preset,
        "--create-customers",
        *options,
        stdout=out,
        stderr=io.StringIO(),
    )
    return out.getvalue()


def purchases(source: str) -> dict[str, tuple]:
    """{order id: (customer, kind, amount, currency)} of the purchases from one source."""
    return {
        p.external_order_id: (
            p.customer.email or p.customer.external_id,
            p.kind,
            p.amount,
            p.currency,
        )
        for p in Purchase.objects.filter(external_source=source).select_related("customer")
    }


def test_stripe_payments_become_sales_and_refunds_and_failed_ones_are_skipped():
    out = run_import(STRIPE, "stripe")

    assert purchases("stripe") == {
        "pi_3OuK2nLkdIwHu7ix1x0Z4aQe": ("lena.hoffmann@example.de", "sale", Decimal("1450"), "EUR"),
        "pi_3Ok9d2LkdIwHu7ix1rS4tU6w": ("lena.hoffmann@example.de", "sale", Decimal("90"), "EUR"),
        "pi_3OtX1cLkdIwHu7ix1b2V8nQp": ("tom.becker@example.com", "sale", Decimal("90"), "EUR"),
        # Partly refunded: the sale, and a refund of what came back.
        "pi_3Ot2m4LkdIwHu7ix0qP7cZ3x": ("amara.osei@example.org", "sale", Decimal("480"), "USD"),
        "pi_3Ot2m4LkdIwHu7ix0qP7cZ3x:refund": (
            "amara.osei@example.org",
            "refund",
            Decimal("80"),
            "USD",
        ),
        "pi_3Osv7pLkdIwHu7ix0kT5rW1n": ("jonas.meyer@example.net", "sale", Decimal("90"), "EUR"),
        "pi_3Osv7pLkdIwHu7ix0kT5rW1n:refund": (
            "jonas.meyer@example.net",
            "refund",
            Decimal("90"),
            "EUR",
        ),
        # A customer without e-mail is known by Stripe's customer id.
        "pi_3OrB4sLkdIwHu7ix1mN6pY8v": ("cus_PgZ2kV6uL8Pf4r", "sale", Decimal("1450"), "EUR"),
    }
    assert "Skipped 1 row(s): payment not completed (Stripe status 'Failed')." in out
    assert "Skipped 1 row(s): no customer on the line." in out
    assert "Customers were created: 5." in out
    lena = Customer.objects.get(email__iexact="lena.hoffmann@example.de")
    assert (lena.name, lena.country, lena.purchase_count) == ("Lena Hoffmann", "DE", 2)
    assert Customer.objects.get(external_id="cus_PgZ2kV6uL8Pf4r").external_source == "stripe"
    # Stripe's times are UTC.
    amara = Purchase.objects.get(external_order_id="pi_3Ot2m4LkdIwHu7ix0qP7cZ3x")
    assert amara.purchased_at == datetime(2024, 3, 14, 23, 30, tzinfo=UTC)


def test_shopify_orders_are_read_from_their_first_line_and_unpaid_ones_are_skipped():
    out = run_import(SHOPIFY, "shopify")

    assert purchases("shopify") == {
        "5873265967413": ("clara.jensen@example.dk", "sale", Decimal("55.05"), "EUR"),
        # Three lines, one order: its total (items, shipping and taxes) from the first line.
        "5873265574197": ("clara.jensen@example.dk", "sale", Decimal("98.65"), "EUR"),
        "5873265705269": ("ben.walker@example.co.uk", "sale", Decimal("221.34"), "EUR"),
        "5873265705269:refund": ("ben.walker@example.co.uk", "refund", Decimal("44"), "EUR"),
        "5873265836341": ("noah.fischer@example.de", "sale", Decimal("39.15"), "EUR"),
        "5873265836341:refund": ("noah.fischer@example.de", "refund", Decimal("39.15"), "EUR"),
    }
    assert "Rows read: 12." in out
    assert "Skipped 2 row(s): order not paid (Shopify financial status 'voided')." in out
    assert "Skipped 1 row(s): order not paid (Shopify financial status 'pending')." in out
    assert "Skipped 1 row(s): no customer on the line." in out  # a till sale, no customer
    order = Purchase.objects.get(external_order_id="5873265574197")
    assert order.product == "Espresso cup, ash glaze and 2 more items"
    assert order.purchased_at == datetime(2024, 3, 2, 9, 15, 3, tzinfo=UTC)  # 10:15:03 +0100
    ben = Customer.objects.get(email="ben.walker@example.co.uk")
    assert (ben.name, ben.country) == ("Ben Walker", "GB")
    assert Customer.objects.count() == 3


def test_paypal_activity_keeps_payments_received_and_refunds_sent_only():
    out = run_import(PAYPAL, "paypal")

    assert purchases("paypal") == {
        "4GH81736XK5521309": ("maya.torres@example.com", "sale", Decimal("1250"), "USD"),
        "2JW77610HC4498730": ("daniel.kim@example.com", "sale", Decimal("45"), "USD"),
        "6TT09835JA1187655": ("daniel.kim@example.com", "sale", Decimal("19"), "USD"),
        # The refund names the customer as its recipient; its amount is written negative.
        "0RB43218LS9083345": ("daniel.kim@example.com", "refund", Decimal("45"), "USD"),
    }
    assert "Skipped 1 row(s): payment not completed (PayPal status 'Pending')." in out
    assert "Skipped 1 row(s): money paid out, not a sale (PayPal type 'General Withdrawal')." in out
    assert (
        "Skipped 1 row(s): money paid out, not a sale (PayPal type 'Express Checkout Payment')."
        in out
    )
    assert "Skipped 1 row(s): not a sale (PayPal type 'General Currency Conversion')." in out
    # Date, Time and TimeZone together: 9:14:27 in Pacific daylight time.
    summer = Purchase.objects.get(external_order_id="4GH81736XK5521309")
    assert summer.purchased_at == datetime(2024, 7, 4, 16, 14, 27, tzinfo=UTC)
    winter = Purchase.objects.get(external_order_id="6TT09835JA1187655")
    assert winter.purchased_at == datetime(2024, 3, 10, 2, 21, 6, tzinfo=UTC)  # PST: next day
    assert Customer.objects.get(email="maya.torres@example.com").name == "Maya Torres"


def test_importing_the_same_export_again_changes_nothing():
    run_import(SHOPIFY, "shopify")
    out = run_import(SHOPIFY, "shopify")

    assert "Orders were created: 0." in out
    assert "Orders already up to date: 6." in out
    assert Purchase.objects.count() == 6


def test_a_later_export_with_a_larger_refund_updates_the_refund(tmp_path):
    run_import(STRIPE, "stripe")
    later = tmp_path / "later.csv"
    later.write_text(
        STRIPE.read_text(encoding="utf-8").replace(
            "480.00,80.00,usd,480.00,80.00", "480.00,180.00,usd,480.00,180.00"
        ),
        encoding="utf-8",
    )

    out = run_import(later, "stripe")

    assert "Orders were updated: 1." in out
    refund = Purchase.objects.get(external_order_id="pi_3Ot2m4LkdIwHu7ix0qP7cZ3x:refund")
    assert refund.amount == Decimal("180.00")


def test_paypal_file_with_the_day_first_is_refused_until_the_date_format_says_so(tmp_path):
    path = tmp_path / "paypal_uk.csv"
    path.write_text(
        '"Date","Time","TimeZone","Name","Type","Status","Currency","Gross","Fee","Net",'
        '"From Email Address","To Email Address","Transaction ID"\n'
        '"03/05/2024","10:00:00","GMT","Ann Lee","Website Payment","Completed","GBP",'
        '"20.00","-0.90","19.10","ann@example.co.uk","shop@example.co.uk","1AA"\n'
        '"18/05/2024","10:00:00","BST","Ann Lee","Website Payment","Completed","GBP",'
        '"1.234,50","-0.90","1.233,60","ann@example.co.uk","shop@example.co.uk","2BB"\n',
        encoding="utf-8",
    )
    err = io.StringIO()
    with pytest.raises(CommandError, match="Nothing was imported"):
        call_command(
            "import_purchases", str(path), "--preset", "paypal", "--create-customers",
            stdout=io.StringIO(), stderr=err,
        )  # fmt: skip
    assert "Row 3, column 'purchased_at': '18/05/2024' has the day first" in err.getvalue()
    assert "%d/%m/%Y" in err.getvalue()
    assert not Purchase.objects.exists()

    run_import(path, "paypal", "--date-format", "%d/%m/%Y")

    first, second = Purchase.objects.order_by("purchased_at")
    assert first.purchased_at == datetime(2024, 5, 3, 10, 0, tzinfo=UTC)
    assert second.purchased_at == datetime(2024, 5, 18, 9, 0, tzinfo=UTC)  # BST is UTC+1
    assert second.amount == Decimal("1234.50")  # "1.234,50" written the European way


def test_a_platform_file_missing_a_column_the_preset_needs_is_refused(tmp_path):
    path = tmp_path / "payments.csv"
    path.write_text(
        "id,Created date (UTC),Amount,Currency,Customer Email\n"
        "pi_1,2024-01-01 10:00:00,10.00,eur,ann@example.com\n",
        encoding="utf-8",
    )
    err = io.StringIO()
    with pytest.raises(CommandError):
        call_command(
            "import_purchases", str(path), "--preset", "stripe",
            stdout=io.StringIO(), stderr=err,
        )  # fmt: skip
    assert "missing column 'Status': the stripe preset reads it" in err.getvalue()


def test_older_stripe_exports_and_unreadable_cells_go_through_the_importers_checks(tmp_path):
    path = tmp_path / "payments.csv"
    path.write_text(
        "id,Created (UTC),Amount,Amount Refunded,Currency,Status,Customer Email\n"
        "ch_1,2014-02-03 01:47,19.00,0.00,usd,Paid,ann@example.com\n"
        "ch_2,yesterday,19.00,0.00,usd,Paid,ann@example.com\n"
        "ch_3,2014-02-05 09:00,nineteen,0.00,usd,Paid,ann@example.com\n",
        encoding="utf-8",
    )
    err = io.StringIO()
    with pytest.raises(CommandError):
        call_command(
            "import_purchases", str(path), "--preset", "stripe", "--create-customers",
            stdout=io.StringIO(), stderr=err,
        )  # fmt: skip
    assert "Row 3, column 'purchased_at': 'yesterday' is not a date and time" in err.getvalue()
    assert "Row 4, column 'amount': 'nineteen' is not an amount" in err.getvalue()

    run_import(path, "stripe", "--only-valid")
    assert purchases("stripe") == {"ch_1": ("ann@example.com", "sale", Decimal("19"), "USD")}


def test_admin_import_reads_a_day_first_paypal_file_with_its_date_format(
    staff_client, monkeypatch, settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.VAR_DIR = tmp_path
    # The worker's steps, run at once in this process.
    monkeypatch.setattr(
        import_jobs,
        "_enqueue",
        lambda task, job_id: getattr(import_jobs, task)(job=ImportJob.objects.get(pk=job_id)),
    )
    text = (
        '"Date","Time","TimeZone","Name","Type","Status","Currency","Gross","Fee","Net",'
        '"From Email Address","To Email Address","Transaction ID"\n'
        '"18/05/2024","10:00:00","CEST","Eva Roth","Express Checkout Payment","Completed",'
        '"EUR","35,00","-1,40","33,60","eva@example.de","shop@example.de","3CC"\n'
    )
    upload = SimpleUploadedFile("Download.CSV", text.encode(), content_type="text/csv")
    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(
            reverse("admin:crm_purchase_import"),
            {
                "file": upload,
                "preset": "paypal",
                "create_customers": "on",
                "date_format": "%d/%m/%Y",
            },
        )
    job = ImportJob.objects.get()
    assert job.status == ImportJob.Status.READY, job.error
    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(
            reverse("admin:crm_purchase_import_confirm", args=[job.pk]), {"confirm": "1"}
        )

    purchase = Purchase.objects.get()
    assert (purchase.amount, purchase.currency) == (Decimal("35.00"), "EUR")
    assert purchase.purchased_at == datetime(2024, 5, 18, 8, 0, tzinfo=UTC)
