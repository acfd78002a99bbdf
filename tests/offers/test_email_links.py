"""The public pages behind offer e-mails: one-click unsubscribe and the personal offer link."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import signing
from django.test import Client
from django.urls import reverse

from offers.links import (
    LinkInvalid,
    offer_token_make,
    offer_token_read,
    unsubscribe_token_make,
    unsubscribe_token_read,
)
from offers.models import OfferResponse
from tests.factories import CustomerFactory, OfferFactory

pytestmark = pytest.mark.django_db


def _unsubscribe_path(customer, offer=None):
    token = unsubscribe_token_make(customer_id=customer.pk, offer_id=offer and offer.pk)
    return reverse("offer_public:unsubscribe", args=[token])


def _offer_path(customer, offer):
    return reverse(
        "offer_public:offer", args=[offer_token_make(customer_id=customer.pk, offer_id=offer.pk)]
    )


def test_an_unsubscribe_token_cannot_pass_as_an_offer_token_or_be_tampered_with():
    token = unsubscribe_token_make(customer_id=7, offer_id=3)
    assert unsubscribe_token_read(token=token).customer_id == 7
    with pytest.raises(LinkInvalid):
        offer_token_read(token=token)
    with pytest.raises(LinkInvalid):
        unsubscribe_token_read(token=token.replace(":", "x:", 1))
    other = signing.dumps({"c": 8, "o": 3})  # no salt: signed for something else
    with pytest.raises(LinkInvalid):
        unsubscribe_token_read(token=other)


def test_an_offer_link_expires(settings, monkeypatch):
    token = offer_token_make(customer_id=7, offer_id=3)
    assert offer_token_read(token=token).offer_id == 3
    settings.OFFER_LINK_MAX_AGE_DAYS = 1
    real_time = signing.time.time
    monkeypatch.setattr(
        signing.time, "time", lambda: real_time() + timedelta(days=2).total_seconds()
    )
    with pytest.raises(LinkInvalid):
        offer_token_read(token=token)


def test_opening_the_unsubscribe_link_unsubscribes_at_once_without_login():
    customer = CustomerFactory(name="Ada Lovelace")
    response = Client().get(_unsubscribe_path(customer))
    assert response.status_code == 200
    assert "You are unsubscribed" in response.content.decode()
    assert response["X-Robots-Tag"] == "noindex, nofollow"
    customer.refresh_from_db()
    first = customer.unsubscribed_at
    assert first is not None
    Client().get(_unsubscribe_path(customer))  # a second click keeps the first time
    customer.refresh_from_db()
    assert customer.unsubscribed_at == first


def test_the_one_click_post_of_rfc_8058_unsubscribes_without_a_csrf_token():
    customer = CustomerFactory()
    offer = OfferFactory()
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        _unsubscribe_path(customer, offer),
        "List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    customer.refresh_from_db()
    assert customer.unsubscribed_at is not None


def test_a_tampered_unsubscribe_link_changes_nothing():
    customer = CustomerFactory()
    path = _unsubscribe_path(customer)
    response = Client().get(path[:-3] + "xx/")
    assert response.status_code == 400
    customer.refresh_from_db()
    assert customer.unsubscribed_at is None


def test_the_customer_page_shows_when_the_customer_unsubscribed(staff_client):
    customer = CustomerFactory()
    Client().get(_unsubscribe_path(customer))
    html = staff_client.get(customer.get_absolute_url()).content.decode()
    assert "data-unsubscribed" in html
    assert "unsubscribed" in html


def test_the_offer_link_shows_the_offer_and_accepting_records_the_answer():
    customer = CustomerFactory(name="Ada Lovelace")
    # No control group: whether a customer is held out depends on their id (a hash).
    offer = OfferFactory(title="Tea for two", holdout_share=Decimal("0"))
    client = Client(enforce_csrf_checks=True)
    path = _offer_path(customer, offer)

    page = client.get(path)
    assert page.status_code == 200
    html = page.content.decode()
    assert "Tea for two" in html and "Hello Ada," in html
    assert "Lovelace" not in html  # no more about the customer than a first name
    csrf = page.cookies["csrftoken"].value

    response = client.post(path, {"csrfmiddlewaretoken": csrf})
    assert response.status_code == 200
    assert 'data-state="accepted"' in response.content.decode()
    answer = OfferResponse.objects.get(offer=offer, customer=customer)
    assert answer.outcome == OfferResponse.Outcome.ACCEPTED
    assert answer.responded_at is not None


def test_accepting_needs_the_csrf_token_of_the_page():
    customer = CustomerFactory()
    offer = OfferFactory()
    response = Client(enforce_csrf_checks=True).post(_offer_path(customer, offer))
    assert response.status_code == 403
    assert not OfferResponse.objects.exists()


def test_an_offer_that_has_ended_cannot_be_accepted():
    customer = CustomerFactory()
    offer = OfferFactory(is_active=False)
    path = _offer_path(customer, offer)
    assert 'data-state="closed"' in Client().get(path).content.decode()
    response = Client().post(path)
    assert response.status_code == 400
    assert not OfferResponse.objects.exists()


def test_a_customer_of_the_control_group_cannot_accept(monkeypatch):
    customer = CustomerFactory()
    offer = OfferFactory()
    OfferResponse.objects.create(
        offer=offer, customer=customer, outcome=OfferResponse.Outcome.HOLDOUT
    )
    response = Client().post(_offer_path(customer, offer))
    assert response.status_code == 400
    assert OfferResponse.objects.get().outcome == OfferResponse.Outcome.HOLDOUT
