"""Staff pages of the CRM: Today, the dashboard, the customer page and the offers."""

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from crm.models import Feedback, Purchase
from offers.models import OfferResponse
from offers.services import offer_holds_out
from pages import dashboard
from tests.factories import CustomerFactory, OfferFactory
from tests.pages_data import customers_add, respond, shop_create

pytestmark = pytest.mark.django_db

# Upper bounds on queries per page; the tests also check they do not grow with customers.
MAX_QUERIES = {
    "today": 25,
    "dashboard": 27,  # the two-step sign-in check and the run watch: one query each
    "customer": 25,
    "offers": 10,
    "offer": 12,
}


@pytest.fixture
def shop():
    return shop_create(customers=10)


def _urls(shop) -> dict[str, str]:
    return {
        "today": reverse("pages:today"),
        "dashboard": reverse("pages:dashboard"),
        "customer": reverse("pages:customer_detail", args=[shop.regular.pk]),
        "offers": reverse("offers:offer_list"),
        "offer": reverse("offers:offer_detail", args=[shop.offer.pk]),
    }


def _queries(client, url: str) -> int:
    cache.clear()
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200
    return len(ctx.captured_queries)


# --- every page ------------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["today", "dashboard", "customer", "offers", "offer"])
def test_page_renders_for_staff(staff_client, shop, page):
    response = staff_client.get(_urls(shop)[page])
    assert response.status_code == 200
    assert b"Customer CRM" in response.content


@pytest.mark.parametrize("page", ["today", "dashboard", "customer", "offers", "offer"])
def test_page_redirects_anonymous_users_to_the_login(client, shop, page):
    url = _urls(shop)[page]
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


@pytest.mark.parametrize(
    ("name", "args", "method"),
    [
        ("pages:customer_detail", [999_999], "get"),
        ("offers:offer_detail", [999_999], "get"),
        ("offers:offer_edit", [999_999], "get"),
        ("pages:customer_feedback_add", [999_999], "post"),
        ("pages:feedback_answered", [999_999, 1], "post"),
        ("pages:customer_segment_pin", [999_999], "post"),
        ("pages:customer_segment_unpin", [999_999], "post"),
    ],
)
def test_unknown_ids_answer_404(staff_client, shop, name, args, method):
    response = getattr(staff_client, method)(reverse(name, args=args), {"rating": "5"})
    assert response.status_code == 404


def test_recording_an_outcome_for_an_unknown_offer_answers_404(staff_client, shop):
    url = reverse("pages:customer_offer_record", args=[shop.regular.pk, 999_999])
    assert staff_client.post(url, {"outcome": "accepted"}).status_code == 404


@pytest.mark.parametrize("page", ["today", "dashboard", "customer", "offers", "offer"])
def test_page_runs_the_same_number_of_queries_at_10_and_1000_customers(staff_client, page):
    shop = shop_create(customers=10)
    respond(shop, shop.unhappy, OfferResponse.Outcome.ACCEPTED)
    url = _urls(shop)[page]
    small = _queries(staff_client, url)
    customers_add(shop, 990)
    large = _queries(staff_client, url)
    assert small == large
    assert large <= MAX_QUERIES[page]


def test_post_only_actions_refuse_get(staff_client, shop):
    url = reverse("pages:customer_offer_record", args=[shop.regular.pk, shop.offer.pk])
    assert staff_client.get(url).status_code == 405


# --- Today -----------------------------------------------------------------------------------


def test_today_lists_who_to_act_on_with_links_to_them(staff_client, shop):
    response = staff_client.get(reverse("pages:today"))
    html = response.content.decode()
    sections = {
        "overdue": shop.regular,
        "unhappy": shop.unhappy,
        "welcome": shop.newcomer,
        "risk": shop.lapsing,
    }
    for kind, customer in sections.items():
        start = html.index(f'id="today-{kind}"')
        section = html[start : html.index("</section>", start)]
        assert customer.name in section, kind
        assert reverse("pages:customer_detail", args=[customer.pk]) in section
    assert "Usually buys every 20 days, last bought 45 days ago." in html


def test_marking_feedback_answered_takes_it_off_today(staff_client, shop):
    feedback = Feedback.objects.get(customer=shop.unhappy)
    url = reverse("pages:feedback_answered", args=[shop.unhappy.pk, feedback.pk])
    response = staff_client.post(url, {"next": reverse("pages:today")}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("pages:today")
    assert "marked as answered" in response.content.decode()
    feedback.refresh_from_db()
    assert feedback.answered_at is not None
    html = response.content.decode()
    start = html.index('id="today-unhappy"')
    assert shop.unhappy.name not in html[start : html.index("</section>", start)]


def test_a_next_address_on_another_site_is_ignored(staff_client, shop):
    feedback = Feedback.objects.get(customer=shop.unhappy)
    url = reverse("pages:feedback_answered", args=[shop.unhappy.pk, feedback.pk])
    response = staff_client.post(url, {"next": "https://evil.example.com/"})
    assert response["Location"] == reverse("pages:customer_detail", args=[shop.unhappy.pk])


# --- Dashboard -------------------------------------------------------------------------------


def _chart_data(response) -> dict:
    html = response.content.decode()
    start = html.index('<script id="dashboard-data" type="application/json">') + len(
        '<script id="dashboard-data" type="application/json">'
    )
    return json.loads(html[start : html.index("</script>", start)])


def test_dashboard_shows_the_kpis_from_the_data(staff_client, shop):
    response = staff_client.get(reverse("pages:dashboard"))
    kpis = response.context["kpis"]
    assert kpis.customers == 10
    # Sales within the last 30 days: the unhappy customer's 35 and the newcomer's 60, plus
    # the ordinary customers' second purchases that fall in the window.
    recent = sum(
        Purchase.objects.filter(purchased_at__gt=timezone.now() - timedelta(days=30)).values_list(
            "amount", flat=True
        )
    )
    assert kpis.revenue_30.current == recent
    assert kpis.avg_rating == pytest.approx(
        sum(Feedback.objects.values_list("rating", flat=True)) / Feedback.objects.count()
    )
    html = response.content.decode()
    assert 'data-kpi="customers">10<' in html
    assert "High confidence" in html
    assert "Loyal regulars" in html


def test_dashboard_charts_carry_real_data(staff_client, shop):
    data = _chart_data(staff_client.get(reverse("pages:dashboard")))
    assert dict(zip(data["sizes"]["labels"], data["sizes"]["sizes"], strict=True)) == {
        "Loyal regulars": shop.loyal.size,
        "At risk": shop.at_risk.size,
    }
    points = [p for d in data["scatter"]["datasets"] for p in d["data"]]
    assert len(points) == 10
    assert {d["label"] for d in data["scatter"]["datasets"]} == {"Loyal regulars", "At risk"}
    assert len(data["trends"]["labels"]) == 2
    loyal = next(s for s in data["trends"]["segments"] if s["label"] == "Loyal regulars")
    assert loyal["rating"] == [3.8, 4.1]
    moves = data["transitions"]
    assert moves["labels"] == ["Loyal regulars"]
    assert {d["label"]: d["data"] for d in moves["datasets"]} == {
        "Loyal regulars": [3],
        "At risk": [1],
    }


def test_dashboard_scatter_reads_a_bounded_reproducible_sample_of_a_big_shop(shop):
    customers_add(shop, 100)
    ranges = dashboard.customer_sample_ranges(size=50, blocks=5, seed=1)
    assert len(ranges) == 5
    assert all(last - first + 1 == 10 for first, last in ranges)
    assert ranges == dashboard.customer_sample_ranges(size=50, blocks=5, seed=1)
    assert ranges != dashboard.customer_sample_ranges(size=50, blocks=5, seed=2)
    assert dashboard.customer_sample_ranges(size=2000, seed=1) is None  # 110 fit in one
    data = dashboard.chart_recency_monetary(segments=[shop.loyal, shop.at_risk], seed=1)
    assert data["sampled"] is False
    assert sum(len(d["data"]) for d in data["datasets"]) == 110


def test_dashboard_kpis_follow_a_new_purchase_at_once(staff_client, shop):
    before = staff_client.get(reverse("pages:dashboard")).context["kpis"].revenue_30.current
    Purchase.objects.create(customer=shop.regular, amount=Decimal("100.00"))
    after = staff_client.get(reverse("pages:dashboard")).context["kpis"].revenue_30.current
    assert after == before + Decimal("100.00")


def test_dashboard_without_any_run_invites_to_recluster(staff_client):
    CustomerFactory()
    response = staff_client.get(reverse("pages:dashboard"))
    assert response.status_code == 200
    assert "No segmentation yet" in response.content.decode()


# --- Customer page ---------------------------------------------------------------------------


def test_customer_page_shows_profile_purchases_feedback_segment_and_offers(staff_client, shop):
    response = staff_client.get(reverse("pages:customer_detail", args=[shop.lapsing.pk]))
    html = response.content.decode()
    assert "Lars Lapsing" in html
    assert "2,400.00" in html  # six purchases of 400
    assert "usually buys every 15 days" in html
    assert "In At risk because last purchase &gt; 120 days ago." in html  # history, escaped
    assert "/feedback/" in html  # the public link to copy
    regular = staff_client.get(reverse("pages:customer_detail", args=[shop.regular.pk]))
    if not offer_holds_out(offer=shop.offer, customer_id=shop.regular.pk):
        assert "Loyalty thank-you" in regular.content.decode()
        assert escape(regular.context["ranking_method"]) in regular.content.decode()


def _outcome_customer(shop):
    """A loyal customer outside the offer's control group."""
    for c in (shop.regular, shop.unhappy, shop.newcomer):
        if not offer_holds_out(offer=shop.offer, customer_id=c.pk):
            return c
    raise AssertionError("every loyal customer is held out")


def test_recording_an_accepted_offer_changes_the_customer_page(staff_client, shop):
    customer = _outcome_customer(shop)
    page = reverse("pages:customer_detail", args=[customer.pk])
    assert 'data-kpi="offers-accepted">0<' in staff_client.get(page).content.decode()
    url = reverse("pages:customer_offer_record", args=[customer.pk, shop.offer.pk])
    response = staff_client.post(url, {"outcome": "accepted"}, follow=True)
    html = response.content.decode()
    assert response.redirect_chain[0][0] == f"{page}#offers"
    assert 'data-kpi="offers-accepted">1<' in html
    assert "accepted by" in html.lower()
    assert OfferResponse.objects.get(offer=shop.offer, customer=customer).outcome == "accepted"


def test_recording_an_outcome_for_a_held_out_customer_explains_why_not(staff_client, shop):
    offer = OfferFactory(title="Held", holdout_share=Decimal("0.9"))
    customer = next(
        c
        for c in (shop.regular, shop.unhappy, shop.newcomer, shop.lapsing)
        if offer_holds_out(offer=offer, customer_id=c.pk)
    )
    url = reverse("pages:customer_offer_record", args=[customer.pk, offer.pk])
    response = staff_client.post(url, {"outcome": "accepted"}, follow=True)
    assert response.status_code == 200
    assert "control group" in response.content.decode()
    assert not OfferResponse.objects.filter(offer=offer).exists()


def test_an_unknown_outcome_is_refused_with_a_message(staff_client, shop):
    url = reverse("pages:customer_offer_record", args=[shop.regular.pk, shop.offer.pk])
    response = staff_client.post(url, {"outcome": "maybe"}, follow=True)
    assert "Choose presented, accepted or declined." in response.content.decode()
    assert not OfferResponse.objects.exists()


def test_recording_feedback_shows_it_on_the_customer_page(staff_client, shop):
    url = reverse("pages:customer_feedback_add", args=[shop.newcomer.pk])
    response = staff_client.post(
        url, {"rating": "4", "nps": "9", "comment": "Lovely <b>shop</b>"}, follow=True
    )
    html = response.content.decode()
    assert 'data-kpi="feedback-count">1<' in html
    assert "Lovely &lt;b&gt;shop&lt;/b&gt;" in html
    feedback = Feedback.objects.get(customer=shop.newcomer)
    assert (feedback.rating, feedback.nps, feedback.source) == (4, 9, "staff")


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"rating": "9"}, "Select a valid choice"),
        ({"nps": "11"}, "less than or equal to 10"),
        ({"nps": "ten"}, "Enter a whole number"),
        ({"comment": "no score"}, "Give a rating, a 0-10 score, or both."),
        ({"rating": "3", "comment": "x" * 2001}, "at most 2000 characters"),
    ],
)
def test_bad_feedback_shows_the_form_again_with_errors(staff_client, shop, data, error):
    url = reverse("pages:customer_feedback_add", args=[shop.newcomer.pk])
    response = staff_client.post(url, data)
    assert response.status_code == 400
    assert error in response.content.decode()
    assert not Feedback.objects.filter(customer=shop.newcomer).exists()


# --- Offers ----------------------------------------------------------------------------------


def test_pinning_a_customer_to_another_segment_moves_them_and_unpinning_frees_them(
    staff_client, shop
):
    customer = shop.regular
    page = reverse("pages:customer_detail", args=[customer.pk])

    response = staff_client.post(
        reverse("pages:customer_segment_pin", args=[customer.pk]),
        {"segment": shop.at_risk.pk},
        follow=True,
    )

    customer.refresh_from_db()
    assert (customer.membership.segment, customer.membership.pinned) == (shop.at_risk, True)
    assert response.redirect_chain[-1][0] == f"{page}#segment"
    html = response.content.decode()
    assert "pinned to At risk" in html
    assert "Loyal regulars → <b>At risk</b>" in html  # the history shows the move

    staff_client.post(reverse("pages:customer_segment_unpin", args=[customer.pk]))
    customer.refresh_from_db()
    assert (customer.membership.segment, customer.membership.pinned) == (shop.at_risk, False)


def test_pinning_to_a_segment_that_does_not_exist_is_refused_with_a_message(staff_client, shop):
    url = reverse("pages:customer_segment_pin", args=[shop.regular.pk])

    response = staff_client.post(url, {"segment": 999_999}, follow=True)

    assert "Choose one of the active segments." in response.content.decode()
    shop.regular.refresh_from_db()
    assert (shop.regular.membership.segment, shop.regular.membership.pinned) == (shop.loyal, False)
