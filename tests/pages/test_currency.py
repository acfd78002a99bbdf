"""Every amount on the staff pages says its currency: the one of the Settings page."""

import re

import pytest
from django.urls import reverse

from crm.services import business_settings_update
from tests.pages_data import shop_create

NBSP = "\u00a0"


@pytest.fixture
def shop(db):
    shop = shop_create(customers=10)
    business_settings_update(name="Nordic Knits", currency="SEK", time_zone="Europe/Stockholm")
    return shop


def _page(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


def _amounts_without_currency(html: str) -> list[str]:
    """Figures with two decimals (amounts) in the page's text that no currency code follows."""
    text = re.sub(r"<[^>]*>", " ", html)  # not the attributes (a form's min="0.01")
    return [
        m.group(0)
        for m in re.finditer(r"\d[\d,]*\.\d\d(?![\d%a-z])(?!\u00a0(M\u00a0)?[A-Z]{3})", text)
    ]


def test_the_dashboard_kpis_say_the_currency(staff_client, shop):
    page = _page(staff_client, reverse("pages:dashboard"))

    revenue = re.search(r'data-kpi="revenue-90"[^>]*>([^<]*)<', page).group(1)
    assert revenue.endswith(f"{NBSP}SEK"), revenue
    assert '"currency": "SEK"' in page  # the charts' amounts
    assert not _amounts_without_currency(page)


def test_the_customer_page_says_the_currency_of_each_amount(staff_client, shop):
    page = _page(staff_client, reverse("pages:customer_detail", args=[shop.lapsing.pk]))

    total = re.search(r'data-kpi="total-spent"[^>]*>([^<]*)<', page).group(1)
    assert total == f"2,400.00{NBSP}SEK"
    # A purchase keeps the currency it was recorded in.
    assert f"400.00{NBSP}EUR" in page
    assert not _amounts_without_currency(page)


def test_the_customer_list_says_the_currency(staff_client, shop):
    page = _page(staff_client, reverse("pages:customer_list"))

    assert f"2,400.00{NBSP}SEK" in page
    assert not _amounts_without_currency(page)


def test_the_segment_pages_say_the_currency(staff_client, shop):
    listing = _page(staff_client, reverse("segmentation:segment_list"))
    detail = _page(staff_client, reverse("pages:segment_detail", args=[shop.loyal.pk]))

    assert f"{NBSP}SEK" in listing and not _amounts_without_currency(listing)
    assert f"{NBSP}SEK" in detail and not _amounts_without_currency(detail)
    assert f"480.00{NBSP}SEK" in detail  # the segment's profile: total spent


def test_the_offer_results_say_the_currency(staff_client, shop):
    page = _page(staff_client, reverse("offers:offer_detail", args=[shop.offer.pk]))

    assert f"5.00{NBSP}SEK per acceptance" in page
    assert not _amounts_without_currency(page)


def test_today_says_the_currency(staff_client, shop):
    page = _page(staff_client, reverse("pages:today"))

    assert f"after spending 2,400.00{NBSP}SEK in all" in page
    assert not _amounts_without_currency(page)
