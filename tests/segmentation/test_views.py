"""Segment pages: the list, one segment with members, movements, offers and results."""

import csv
import io

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from crm.models import Customer
from offers.models import OfferResponse
from segmentation.models import SegmentationRun
from tests.factories import OfferFactory, SegmentationRunFactory, SegmentFactory
from tests.pages_data import customers_add, respond, shop_create

pytestmark = pytest.mark.django_db

MAX_QUERIES = {"segment": 30, "segments": 10}


@pytest.fixture
def shop():
    return shop_create(customers=10)


def _detail(shop, **query) -> str:
    url = reverse("pages:segment_detail", args=[shop.loyal.pk])
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def _members(response) -> list[Customer]:
    return [row.record for row in response.context["table"].paginated_rows]


def _member_names(response) -> list[str]:
    return [c.name for c in _members(response)]


# The segment page combines segments and offers, so the top app serves it; presenting an
# offer to a segment belongs to offers.
URL_NAMES = {
    "segment_list": "segmentation:segment_list",
    "segment_detail": "pages:segment_detail",
    "segment_members_export": "segmentation:segment_members_export",
    "segment_offer_present": "offers:segment_offer_present",
}


def _export(staff_client, shop, **query) -> list[dict]:
    url = reverse("segmentation:segment_members_export", args=[shop.loyal.pk])
    response = staff_client.get(url, query)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


# --- every page ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["segment_list", "segment_detail"])
def test_segment_pages_render_for_staff(staff_client, shop, name):
    args = [shop.loyal.pk] if name == "segment_detail" else []
    response = staff_client.get(reverse(URL_NAMES[name], args=args))
    assert response.status_code == 200
    assert "Loyal regulars" in response.content.decode()


@pytest.mark.parametrize("name", ["segment_list", "segment_detail", "segment_members_export"])
def test_segment_pages_redirect_anonymous_users_to_the_login(client, shop, name):
    args = [] if name == "segment_list" else [shop.loyal.pk]
    response = client.get(reverse(URL_NAMES[name], args=args))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


@pytest.mark.parametrize(
    ("name", "method"),
    [
        ("segment_detail", "get"),
        ("segment_members_export", "get"),
        ("segment_offer_present", "post"),
    ],
)
def test_unknown_segment_answers_404(staff_client, shop, name, method):
    url = reverse(URL_NAMES[name], args=[999_999])
    assert getattr(staff_client, method)(url).status_code == 404


@pytest.mark.parametrize("page", ["segment", "segments"])
def test_segment_pages_run_the_same_number_of_queries_at_10_and_1000_customers(staff_client, page):
    shop = shop_create(customers=10)
    respond(shop, shop.regular, OfferResponse.Outcome.ACCEPTED)
    url = _detail(shop) if page == "segment" else reverse("segmentation:segment_list")

    def count() -> int:
        cache.clear()
        with CaptureQueriesContext(connection) as ctx:
            assert staff_client.get(url).status_code == 200
        return len(ctx.captured_queries)

    small = count()
    customers_add(shop, 990)
    large = count()
    assert small == large
    assert large <= MAX_QUERIES[page]


# --- the segment page ------------------------------------------------------------------------


def test_segment_page_explains_the_segment_and_its_movements(staff_client, shop):
    html = staff_client.get(_detail(shop)).content.decode()
    assert "Buy every few weeks and spend well" in html  # profile
    assert "total spend &gt; 300 and last purchase &lt;= 60 days ago" in html  # rules
    assert "93% of customers" in html  # rule fidelity
    start = html.index('id="movements"')
    movements = html[start : html.index("</section>", start)]
    assert "1</span> left" in movements
    assert "to At risk" in movements
    assert "Lars Lapsing" in movements


def test_segment_members_sort_by_spend_by_default_and_by_name_on_request(staff_client, shop):
    response = staff_client.get(_detail(shop))
    spent = [c.total_spent for c in _members(response)]
    assert spent == sorted(spent, reverse=True)
    names = _member_names(staff_client.get(_detail(shop, sort="name")))
    assert names == sorted(names)
    by_last = staff_client.get(_detail(shop, sort="-last_purchase_at"))
    dates = [c.last_purchase_at for c in _members(by_last)]
    assert dates == sorted(dates, reverse=True)


def test_segment_members_are_paginated_without_counting_them_all(staff_client, shop):
    customers_add(shop, 60)
    first = staff_client.get(_detail(shop))
    table = first.context["table"]
    assert len(table.page.object_list) == 25
    assert table.page.has_next()
    html = first.content.decode()
    assert "Next" in html
    assert "Page 1" in html
    third = staff_client.get(_detail(shop, page=3))
    assert 0 < len(third.context["table"].page.object_list) <= 25


@pytest.mark.parametrize("page", ["abc", "999"])
def test_a_bad_page_number_still_shows_the_members(staff_client, shop, page):
    response = staff_client.get(_detail(shop, page=page))
    assert response.status_code == 200
    assert _member_names(response)


def test_segment_members_filter_by_spend_and_name(staff_client, shop):
    names = _member_names(staff_client.get(_detail(shop, spent_min="300")))
    assert names == ["Rita Regular"]
    assert _member_names(staff_client.get(_detail(shop, q="una"))) == ["Una Unhappy"]


def test_invalid_filter_input_shows_an_error_not_a_crash(staff_client, shop):
    response = staff_client.get(_detail(shop, spent_min="lots", bought_after="yesterday"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Enter a number." in html
    assert "Enter a valid date." in html


def test_export_gives_the_filtered_members_as_csv(staff_client, shop):
    everyone = _export(staff_client, shop)
    assert {row["name"] for row in everyone} == set(
        Customer.objects.filter(membership__segment=shop.loyal).values_list("name", flat=True)
    )
    assert [row["name"] for row in _export(staff_client, shop, spent_min="300")] == ["Rita Regular"]


def test_export_neutralises_spreadsheet_formulas(staff_client, shop):
    Customer.objects.filter(pk=shop.regular.pk).update(name="=HYPERLINK(evil)")
    rows = _export(staff_client, shop, spent_min="300")
    assert rows[0]["name"] == "'=HYPERLINK(evil)"


def test_presenting_an_offer_to_the_segment_leads_to_its_recipients_and_records_nothing(
    staff_client, shop
):
    url = reverse("offers:segment_offer_present", args=[shop.loyal.pk])
    response = staff_client.post(url, {"offer": shop.offer.pk})
    assert response["Location"] == reverse(
        "offers:offer_email_send", args=[shop.offer.pk, shop.loyal.pk]
    )
    assert not OfferResponse.objects.exists()
    shop.offer.channel = "phone"
    shop.offer.save()
    response = staff_client.post(url, {"offer": shop.offer.pk})
    assert response["Location"] == reverse(
        "offers:offer_present_by_hand", args=[shop.offer.pk, shop.loyal.pk]
    )
    assert not OfferResponse.objects.exists()


def test_presenting_an_offer_aimed_at_another_segment_is_refused(staff_client, shop):
    other = OfferFactory(title="Elsewhere")
    other.segments.add(SegmentFactory(name="Elsewhere"))
    url = reverse("offers:segment_offer_present", args=[shop.loyal.pk])
    response = staff_client.post(url, {"offer": other.pk}, follow=True)
    assert "Choose one of the open offers for this segment." in response.content.decode()
    assert not OfferResponse.objects.exists()


def test_segment_list_hides_retired_segments_unless_asked(staff_client, shop):
    SegmentFactory(name="Old group", is_active=False)
    assert (
        "Old group" not in staff_client.get(reverse("segmentation:segment_list")).content.decode()
    )
    shown = staff_client.get(reverse("segmentation:segment_list"), {"retired": "1"})
    assert "Old group" in shown.content.decode()


def test_recluster_now_queues_a_run_and_says_so(staff_client, shop):
    response = staff_client.post(reverse("segmentation:segmentation_run_start"), follow=True)
    run = SegmentationRun.objects.order_by("-pk").first()
    assert run.trigger == SegmentationRun.Trigger.MANUAL
    body = response.content.decode()
    assert f"Run #{run.pk}: Waiting for the worker to start" in body
    assert "queued" not in body


@pytest.mark.django_db
def test_segment_list_says_in_words_how_confident_the_run_is_and_warns_of_stale_data(
    staff_client,
):
    SegmentationRunFactory(
        status=SegmentationRun.Status.SUCCEEDED,
        confidence="low",
        silhouette=0.2804,
        n_clustered=4_339,
        warnings=["The newest purchase is 400 days old \u2014 segment as of that date?"],
    )

    body = staff_client.get(reverse("segmentation:segment_list")).content.decode()

    assert "Low confidence, from the 4,339 customers who have bought." in body
    assert "The groups shade into each other" in body
    assert "The newest purchase is 400 days old" in body
    assert "0.28" not in body and "silhouette" not in body.lower()
