"""Reading the platforms' own ways of writing amounts, dates and lines (no database)."""

import pytest

from crm.importers.platforms import (
    FileLayoutError,
    PayPalActivity,
    ShopifyOrders,
    SkipLine,
    moment_text,
    plain_amount,
    time_zone,
)
from crm.importers.purchase_lines import PURCHASE_COLUMNS


@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("1,250.00", "1250.00"),
        ("1.250,00", "1250.00"),
        ("23,00", "23.00"),
        ("-1,000.00", "-1000.00"),
        ("1,250", "1250"),  # a currency without cents
        ("1.234.567", "1234567"),
        ("1 250,00", "1250.00"),
        ("19.00", "19.00"),
        ("twelve", "twelve"),  # left for the importer to report as written
        ("1,23.45", "1,23.45"),
    ],
)
def test_plain_amount_reads_thousands_separators_and_decimal_commas(written, read):
    assert plain_amount(written) == read


def test_time_zones_by_abbreviation_or_name():
    assert time_zone("PDT").utcoffset(None).total_seconds() == -7 * 3600
    assert time_zone("cest").utcoffset(None).total_seconds() == 2 * 3600
    assert time_zone("Europe/Berlin") is not None
    assert time_zone("Mars/Olympus") is None


def test_shopify_offsets_become_iso_and_other_text_is_left_for_the_importer():
    shopify = "2024-03-02 10:15:03 +0100"
    assert moment_text(shopify, date_format="", zone=None) == ("2024-03-02 10:15:03+01:00", [])
    assert moment_text("soon", date_format="", zone=None) == ("soon", [])
    assert moment_text("soon", date_format="%d/%m/%Y", zone=None) == (
        "soon",
        [("purchased_at", "'soon' is not a date and time; use %d/%m/%Y")],
    )


def paypal_line(**values: str) -> dict[str, str]:
    return {
        "purchased_at": "03/05/2024",
        "Time": "10:00:00",
        "TimeZone": "GMT",
        "Type": "Website Payment",
        "Status": "Completed",
        "amount": "20.00",
        "customer_email": "ann@example.com",
        **values,
    }


def test_paypal_reads_dates_month_first_unless_told_otherwise():
    us = PayPalActivity(date_format="", ours=PURCHASE_COLUMNS)
    uk = PayPalActivity(date_format="%d/%m/%Y", ours=PURCHASE_COLUMNS)

    assert us.lines(paypal_line())[0].values["purchased_at"] == "2024-03-05 10:00:00+00:00"
    assert uk.lines(paypal_line())[0].values["purchased_at"] == "2024-05-03 10:00:00+00:00"
    with pytest.raises(FileLayoutError, match="day first"):
        us.lines(paypal_line(purchased_at="15.02.2024"))


def test_paypal_unknown_time_zone_is_a_problem_on_the_line():
    paypal = PayPalActivity(date_format="", ours=PURCHASE_COLUMNS)
    (line,) = paypal.lines(paypal_line(TimeZone="XYZ"))
    assert line.problems == [
        ("purchased_at", "'XYZ' is not a time zone (e.g. PST, CET or Europe/Paris)")
    ]


def test_paypal_holds_and_authorisations_are_no_sales():
    paypal = PayPalActivity(date_format="", ours=PURCHASE_COLUMNS)
    with pytest.raises(SkipLine, match="not a sale"):
        paypal.lines(paypal_line(Type="Reversal of General Account Hold"))
    with pytest.raises(SkipLine, match="not a sale"):
        paypal.lines(paypal_line(Type="Shopping Cart Item"))  # the items of a cart payment


def test_shopify_further_lines_take_the_order_values_of_the_first_and_add_nothing():
    shopify = ShopifyOrders(date_format="", ours=PURCHASE_COLUMNS)
    first = {
        "Name": "#1001",
        "Id": "42",
        "Financial Status": "paid",
        "customer_email": "ann@example.com",
        "purchased_at": "2024-01-01 10:00:00 +0000",
        "currency": "EUR",
        "amount": "30.00",
        "product": "Mug",
    }
    further = {"Name": "#1001", "customer_email": "ann@example.com", "product": "Pen"}

    (sale,) = shopify.lines(first)
    (item,) = shopify.lines(further)

    assert (sale.values["order_id"], sale.values["amount"]) == ("42", "30.00")
    assert item.values["order_id"] == "42" and item.values["amount"] == "0"
    assert item.values["currency"] == "EUR" and item.values["purchased_at"].startswith("2024")
