"""The staff pages in a real browser: headless Chromium driven by Playwright against the
live test server. Screenshots land in screenshots/ (not versioned)."""

import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from crm.feedback_link import feedback_link_url
from crm.models import Customer, Feedback
from crm.services import customers_search_text_refresh
from offers.models import OfferResponse
from offers.services import offer_holds_out
from tests.crm.test_roundtrip import _snapshot as customers_snapshot
from tests.factories import CustomerPredictionFactory, SegmentationRunFactory, UserFactory
from tests.pages_data import shop_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(settings.BASE_DIR) / "screenshots"
PASSWORD = "a long and correct passphrase"

# Every chart on the dashboard: drawn by Chart.js, with data points, and pixels on the canvas.
CHARTS_READY = """
() => typeof Chart !== "undefined"
  && Array.from(document.querySelectorAll("canvas")).every((canvas) => Chart.getChart(canvas))
"""
CHARTS_DRAWN = """
() => Array.from(document.querySelectorAll("canvas")).map((canvas) => {
  const chart = Chart.getChart(canvas);
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let painted = 0;
  for (let i = 3; i < pixels.length; i += 4) { if (pixels[i] > 0) painted++; }
  return {
    id: canvas.id,
    points: chart ? chart.data.datasets.reduce((n, d) => n + d.data.length, 0) : 0,
    painted: painted,
  };
})
"""


@pytest.fixture(scope="module")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"Chromium is needed at {CHROMIUM} (apt-get install chromium).")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread, and Django refuses
    # ORM calls under a running loop unless told otherwise. The ORM calls these tests make
    # are plain synchronous ones, so allow them, for this module only: the browser and the
    # setting both end with it and never reach other tests or their subprocesses.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # The Content-Security-Policy must never block the product's own pages.
    page.on(
        "console",
        lambda message: (
            errors.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    yield page
    context.close()
    assert not errors, f"JavaScript or CSP errors: {errors}"


@pytest.fixture
def owner(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return UserFactory(username="owner", is_staff=True, is_superuser=True, password=PASSWORD)


def _shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _log_in(page, live_server) -> None:
    page.goto(f"{live_server.url}{reverse('pages:today')}")
    assert "/admin/login/" in page.url  # anonymous: sent to the login form
    page.fill("#id_username", "owner")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/")


def _charts_drawn(page) -> list[dict]:
    # The chart script is deferred: on a busy machine the canvases are there before it ran.
    page.wait_for_function(CHARTS_READY)
    return page.evaluate(CHARTS_DRAWN)


def _kpi(page, name: str) -> str:
    return page.locator(f'[data-kpi="{name}"]').inner_text().strip()


def test_owner_works_through_the_morning_in_the_browser(page, live_server, owner):
    shop = shop_create(customers=40)
    customer = next(
        c
        for c in (shop.regular, shop.unhappy, shop.newcomer)
        if not offer_holds_out(offer=shop.offer, customer_id=c.pk)
    )

    _log_in(page, live_server)
    assert page.locator("h1").inner_text() == "Today"
    overdue = page.locator("#today-overdue")
    assert "Rita Regular" in overdue.inner_text()
    assert "Una Unhappy" in page.locator("#today-unhappy").inner_text()
    _shot(page, "01-today")

    page.click("nav.mainnav >> text=Dashboard")
    page.wait_for_selector("#chart-transitions")
    assert _kpi(page, "customers") == "40"
    charts = {c["id"]: c for c in _charts_drawn(page)}
    assert set(charts) == {
        "chart-sizes",
        "chart-scatter",
        "chart-revenue",
        "chart-satisfaction",
        "chart-transitions",
    }
    for chart in charts.values():
        assert chart["points"] > 0, chart
        assert chart["painted"] > 500, chart
    assert charts["chart-scatter"]["points"] == 40
    ratings_before = page.locator(".kpi", has_text="Average rating").inner_text()
    _shot(page, "02-dashboard")

    page.click("a.segcard >> text=Loyal regulars")
    page.wait_for_selector("#members table")
    assert page.locator("h1").inner_text().strip() == "Loyal regulars"
    members = Customer.objects.filter(membership__segment=shop.loyal).count()
    assert page.locator("#members tbody tr").count() == members
    drawn = _charts_drawn(page)
    assert all(c["points"] > 0 for c in drawn), drawn
    _shot(page, "03-segment")

    page.click(f"#members a:text-is('{customer.name}')")
    page.wait_for_selector("#offers")
    assert page.locator("h1").inner_text().strip() == customer.name
    assert _kpi(page, "offers-accepted") == "0"
    feedback_before = int(_kpi(page, "feedback-count"))
    offer = page.locator(f'#offers li[data-offer="{shop.offer.pk}"]')
    assert "Loyalty thank-you" in offer.inner_text()
    _shot(page, "04-customer")

    offer.locator("button", has_text="Accepted").click()
    page.wait_for_selector(".message.success")
    assert _kpi(page, "offers-accepted") == "1"
    assert "Accepted" in page.locator(f'#offers tr[data-response="{shop.offer.pk}"]').inner_text()
    assert OfferResponse.objects.get(offer=shop.offer, customer=customer).outcome == "accepted"

    page.select_option("#id_rating", "5")
    page.fill("#id_nps", "10")
    page.fill("#id_comment", "Lovely service, <b>thank you</b>!")
    page.click("#feedback button[type=submit]")
    page.wait_for_selector(".message.success")
    assert int(_kpi(page, "feedback-count")) == feedback_before + 1
    assert "Lovely service, <b>thank you</b>!" in page.locator("#feedback").inner_text()
    assert Feedback.objects.filter(customer=customer, rating=5, nps=10).exists()
    _shot(page, "05-customer-after")

    page.click("nav.mainnav >> text=Dashboard")
    page.wait_for_selector("#chart-sizes")
    assert page.locator(".kpi", has_text="Average rating").inner_text() != ratings_before


def test_a_bad_feedback_shows_the_error_in_the_browser(page, live_server, owner):
    shop = shop_create(customers=10)
    _log_in(page, live_server)
    page.goto(f"{live_server.url}{reverse('pages:customer_detail', args=[shop.newcomer.pk])}")
    page.fill("#id_nps", "42")
    page.click("#feedback button[type=submit]")
    page.wait_for_selector("#feedback .errorlist")
    assert "less than or equal to 10" in page.locator("#feedback .errorlist").inner_text()
    assert not Feedback.objects.filter(customer=shop.newcomer).exists()
    _shot(page, "06-feedback-error")


def test_a_customer_sends_feedback_through_the_link_once(browser, live_server):
    shop = shop_create(customers=10)
    link = f"{live_server.url}{feedback_link_url(customer=shop.newcomer)}"
    # The customer's own browser: no login, no cookies of the owner.
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(link)
        page.check("input[name=rating][value='2']")
        page.fill("textarea[name=comment]", "Delivery was <b>late</b>")
        page.click("button[type=submit]")
        page.wait_for_load_state("networkidle")
        assert page.locator("h1").inner_text() == "Thank you!", page.content()[:500]
        _shot(page, "07-feedback-link-thanks")

        page.goto(link)
        assert page.locator("h1").inner_text() == "Sorry"  # a link works once
    finally:
        context.close()
    feedback = Feedback.objects.get(customer=shop.newcomer)
    assert (feedback.rating, feedback.source) == (2, Feedback.Source.LINK)
    assert feedback.comment == "Delivery was <b>late</b>"


def test_the_pages_fit_a_phone_screen(browser, live_server, owner):
    shop = shop_create(customers=10)
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    try:
        _log_in(page, live_server)
        for name, url in (
            ("07-phone-today", reverse("pages:today")),
            ("08-phone-customer", reverse("pages:customer_detail", args=[shop.regular.pk])),
        ):
            page.goto(f"{live_server.url}{url}")
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{name} scrolls sideways by {overflow}px"
            _shot(page, name)
    finally:
        context.close()


def test_the_owner_sees_the_predictions_in_words_and_a_chart(page, live_server, owner):
    shop = shop_create(customers=10)
    CustomerPredictionFactory(customer=shop.regular, p_alive=0.3, value_12m=300.0)
    SegmentationRunFactory(
        predictions={
            "status": "ok",
            "as_of": "2026-01-01",
            "expected_purchases_30d_total": 8.0,
            "actual_purchases_30d": 7,
        }
    )

    _log_in(page, live_server)
    slipping = page.locator("#today-slipping").inner_text()
    assert "Rita Regular" in slipping
    assert "70% chance they have already gone" in slipping

    page.goto(f"{live_server.url}{reverse('pages:customer_detail', args=[shop.regular.pk])}")
    outlook = page.locator("#outlook").inner_text()
    assert "Likely gone" in outlook
    assert "over the next year" in outlook
    _shot(page, "06-customer-outlook")

    page.goto(f"{live_server.url}{reverse('pages:dashboard')}")
    page.wait_for_selector("#chart-predictions")
    charts = {c["id"]: c for c in _charts_drawn(page)}
    assert charts["chart-predictions"]["points"] == 2  # predicted and actual, one run
    assert charts["chart-predictions"]["painted"] > 500


def test_the_whole_morning_find_sell_call_follow_up_today_export_and_import_back(
    page, live_server, owner, gated_worker, tmp_path
):
    shop = shop_create(customers=40)
    nina = shop.newcomer
    Customer.objects.filter(pk=nina.pk).update(phone="+44 7700 900123")
    customers_search_text_refresh(customer_ids=[nina.pk])

    _log_in(page, live_server)
    page.click("nav.mainnav >> text=Customers")
    assert page.locator("h1").inner_text() == "Customers"

    # By surname, then by phone without its country code.
    page.fill("#id_q", "newcomer")
    page.click("form.filters >> text=Filter")
    rows = page.locator("#customers table.data tbody tr")
    assert rows.count() == 1 and "Nina Newcomer" in rows.first.inner_text()
    page.fill("#id_q", "7700 900123")
    page.click("form.filters >> text=Filter")
    assert rows.count() == 1 and "Nina Newcomer" in rows.first.inner_text()
    _shot(page, "20-customers-found")

    page.click("#customers table.data >> text=Nina Newcomer")
    before = _kpi(page, "total-spent")
    page.click("text=Record a sale")
    page.fill("#sale-form [name=amount]", "125.00")
    page.fill("#sale-form [name=product]", "Gift box")
    page.click("#sale-form >> text=Record sale")
    page.wait_for_url("**#purchases")
    assert _kpi(page, "total-spent") != before
    assert "Gift box" in page.locator("#purchases").inner_text()

    page.select_option("#activity-form [name=kind]", "call")
    page.fill("#activity-form [name=summary]", "Thanked her for the order")
    page.click("#activity-form >> text=Log it")
    assert "Thanked her for the order" in page.locator("#timeline").inner_text()

    due = (timezone.localdate() + timedelta(days=3)).isoformat()
    page.fill("#followup-form [name=due_on]", due)
    page.fill("#followup-form [name=note]", "Ask how the gift went")
    page.click("#followup-form >> text=Set follow-up")
    assert "Ask how the gift went" in page.locator("#follow-ups").inner_text()
    _shot(page, "21-customer-after-sale-call-follow-up")
    nina.refresh_from_db()
    assert nina.purchase_count == 2
    assert nina.activities.get().kind == "call"
    assert nina.follow_ups.get().note == "Ask how the gift went"

    # Today: Rita is late by her rhythm; a call logged from there takes her off the list.
    page.click("nav.mainnav >> text=Today")
    rita = f'#today-overdue li[data-customer="{shop.regular.pk}"]'
    assert page.locator(rita).count() == 1
    page.locator(rita).locator("select[name=kind]").select_option("call")
    page.locator(rita).locator("button", has_text="Got in touch").click()
    page.wait_for_selector(".message.success")
    assert page.locator("h1").inner_text() == "Today"
    assert page.locator(rita).count() == 0
    assert shop.regular.activities.get().kind == "call"

    # Export the customers ticked on the list, import the file back: nothing changes.
    before = customers_snapshot()
    page.click("nav.mainnav >> text=Customers")
    ticked = page.locator("input[name=selected]")
    for box in ticked.all():
        box.check()
    exported_count = ticked.count()
    with page.expect_download() as download:
        page.click("#bulk-form >> text=Export CSV")
    exported = tmp_path / "customers.csv"
    download.value.save_as(exported)
    assert exported.read_text().count("\n") == exported_count + 1 > 1
    page.goto(f"{live_server.url}{reverse('admin:crm_customer_import')}")
    page.set_input_files("#id_file", str(exported))
    page.click("input[type=submit][value=Preview]")
    gated_worker.set()
    page.wait_for_selector("#import-preview", timeout=30_000)
    page.click("input[name=confirm]")
    page.wait_for_selector(f"text=Customers already up to date: {exported_count}.", timeout=30_000)
    summary = page.locator(".import-summary").inner_text()
    assert "Customers were created: 0." in summary and "Customers were updated: 0." in summary
    _shot(page, "22-export-imported-back")
    assert customers_snapshot() == before


@pytest.mark.parametrize("width", [390, 1366])
def test_the_customer_list_fits_a_phone_and_a_laptop(browser, live_server, owner, width):
    shop_create(customers=40)
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    try:
        _log_in(page, live_server)
        page.goto(f"{live_server.url}{reverse('pages:customer_list')}")
        # The page itself never scrolls sideways; only the table does, inside its container.
        page_width = page.evaluate("document.documentElement.scrollWidth")
        assert page_width <= width
        container = page.locator("#customers .table-container")
        overflow = container.evaluate("(el) => getComputedStyle(el).overflowX")
        assert overflow == "auto"
        _shot(page, f"22-customers-{width}")
    finally:
        context.close()
