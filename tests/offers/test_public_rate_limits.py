"""The public pages behind offer e-mails answer 429 to an address that asks too often."""

import pytest
from django.test import Client
from django.urls import reverse

from crm.models import Customer
from offers.links import offer_token_make, unsubscribe_token_make
from tests.factories import CustomerFactory, OfferFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def three_per_window(settings):
    settings.PUBLIC_LINK_RATE_PER_IP = (3, 600)


def _offer_path(customer, offer):
    token = offer_token_make(customer_id=customer.pk, offer_id=offer.pk)
    return reverse("offer_public:offer", args=[token])


def _unsubscribe_path(customer):
    return reverse(
        "offer_public:unsubscribe", args=[unsubscribe_token_make(customer_id=customer.pk)]
    )


def test_the_offer_link_answers_429_with_a_plain_page_after_the_limit_per_address():
    customer, offer = CustomerFactory(), OfferFactory()
    browser = Client()
    path = _offer_path(customer, offer)

    codes = [browser.get(path).status_code for _ in range(4)]
    refused = browser.get(path)

    assert codes == [200, 200, 200, 429]
    assert refused["Content-Type"].startswith("text/plain")
    assert refused["Retry-After"] == "600"
    assert "Too many requests" in refused.content.decode()
    assert browser.get(path, REMOTE_ADDR="203.0.113.9").status_code == 200


def test_accepting_is_limited_too_and_records_nothing_once_refused():
    customer, offer = CustomerFactory(), OfferFactory()
    browser = Client()
    path = _offer_path(customer, offer)
    for _ in range(3):
        browser.get(path)

    assert browser.post(path).status_code == 429
    assert not offer.responses.exists()


def test_the_unsubscribe_link_opened_in_a_browser_is_limited_per_address():
    customers = CustomerFactory.create_batch(4)
    browser = Client()

    codes = [browser.get(_unsubscribe_path(c)).status_code for c in customers]

    assert codes == [200, 200, 200, 429]
    assert not Customer.objects.get(pk=customers[3].pk).unsubscribed_at


def test_a_mail_providers_one_click_unsubscribes_always_go_through_but_bad_tokens_do_not():
    customers = CustomerFactory.create_batch(5)
    provider = Client()  # one address posting for many recipients

    codes = [provider.post(_unsubscribe_path(c)).status_code for c in customers]

    assert codes == [200] * 5
    assert Customer.objects.filter(unsubscribed_at__isnull=False).count() == 5
    assert provider.post("/u/not-a-token/").status_code == 429
