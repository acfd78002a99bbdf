"""An offer by e-mail in a real browser: the owner writes it, previews it and sends it to a
segment; a customer accepts it and unsubscribes through the links of the message received."""

import re

import pytest
from django.urls import reverse

from crm.models import Customer
from offers import tasks
from offers.models import Delivery, Offer, OfferResponse
from tests.browser import test_pages as staff_pages
from tests.offers.smtp import SmtpServer
from tests.pages_data import shop_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# The staff pages' browser fixtures and functions, shared rather than copied.
browser, page, owner = staff_pages.browser, staff_pages.page, staff_pages.owner
_log_in, _shot = staff_pages._log_in, staff_pages._shot


@pytest.fixture
def smtp(settings, live_server):
    with SmtpServer() as server:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.port
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        settings.DEFAULT_FROM_EMAIL = "shop@example.com"
        settings.PUBLIC_BASE_URL = live_server.url
        yield server


def test_an_offer_goes_out_by_email_and_comes_back_accepted(
    page, browser, live_server, owner, smtp, monkeypatch
):
    shop = shop_create(customers=20)
    # The queueing and the send run at once in the web process here; a real worker runs it in
    # tests/offers/test_email_worker.py.
    monkeypatch.setattr(
        tasks.offer_email_send, "delay", lambda offer_id: tasks.offer_email_send.apply((offer_id,))
    )
    monkeypatch.setattr(
        tasks.offer_email_queue,
        "delay",
        lambda offer_id, segment_id: tasks.offer_email_queue.apply((offer_id, segment_id)),
    )
    _log_in(page, live_server)

    page.goto(f"{live_server.url}{reverse('offers:offer_create')}")
    page.fill("#id_title", "Tea for two")
    page.fill("#id_description", "Two teas for the price of one.")
    page.select_option("#id_segments", str(shop.loyal.pk))
    page.fill("#id_email_subject", "{first_name}, {offer_title}")
    page.fill("#id_email_body", "Hello {name},\n{offer_terms}\nAccept here: {offer_link}\n")
    page.click("button:has-text('Save offer')")
    page.wait_for_selector("#email [data-preview]")
    offer = Offer.objects.get(title="Tea for two")
    assert "Tea for two" in page.locator("[data-preview-subject]").inner_text()
    assert "Unsubscribe with one click" in page.locator("[data-preview-body]").inner_text()
    _shot(page, "20-offer-email-preview")

    page.click("#email button:has-text('Send me a test')")
    page.wait_for_selector(".message.success")
    assert [m["To"] for m in smtp.received.messages] == [owner.email]

    page.click(
        f"#email a[href='{reverse('offers:offer_email_send', args=[offer.pk, shop.loyal.pk])}']"
    )
    recipients = int(page.locator("[data-recipients]").get_attribute("data-recipients"))
    assert recipients > 0
    _shot(page, "21-offer-send")
    page.click("button:has-text('Send to')")
    page.wait_for_selector(".message.success")
    sent = Delivery.objects.filter(offer=offer, status=Delivery.Status.SENT)
    assert sent.count() == recipients == len(smtp.received.messages) - 1

    delivery = sent.select_related("customer").first()
    [message] = smtp.received.to(delivery.customer.email)
    body = message.get_content()
    offer_link = re.search(r"Accept here: (\S+)", body).group(1)
    unsubscribe_link = re.search(r"Unsubscribe with one click: (\S+)", body).group(1)
    assert message["List-Unsubscribe"].strip() == f"<{unsubscribe_link}>"

    # The customer's own browser: no login, no cookies of the owner.
    context = browser.new_context()
    customer_page = context.new_page()
    try:
        customer_page.goto(offer_link)
        assert "Tea for two" in customer_page.locator("h1").inner_text()
        customer_page.click("button:has-text('Accept the offer')")
        customer_page.wait_for_selector('[data-state="accepted"]')
        _shot(customer_page, "22-offer-accepted")
        customer_page.goto(unsubscribe_link)
        assert "You are unsubscribed" in customer_page.locator("h1").inner_text()
    finally:
        context.close()

    answer = OfferResponse.objects.get(offer=offer, customer=delivery.customer)
    assert answer.outcome == OfferResponse.Outcome.ACCEPTED
    assert Customer.objects.get(pk=delivery.customer_id).unsubscribed_at is not None
    page.goto(f"{live_server.url}{delivery.customer.get_absolute_url()}")
    assert "unsubscribed" in page.locator("[data-unsubscribed]").inner_text()
