"""The public pages customers open say whose they are: the business's name from Settings."""

from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from crm.feedback_link import (
    feedback_link_url,
    feedback_short_link_create,
    feedback_short_link_url,
)
from crm.services import business_settings_update
from offers.links import offer_token_make, unsubscribe_token_make
from tests.factories import CustomerFactory, OfferFactory

pytestmark = pytest.mark.django_db

NAME = "Bloom &amp; Co"  # as the page writes "Bloom & Co"


@pytest.fixture(autouse=True)
def _business():
    business_settings_update(name="Bloom & Co", currency="EUR", time_zone="Europe/Paris")


def _html(path: str) -> str:
    response = Client().get(path)
    assert response.status_code == 200
    return response.content.decode()


def test_the_feedback_pages_show_the_business_name():
    customer = CustomerFactory()
    short = feedback_short_link_url(link=feedback_short_link_create(customer=customer))

    for html in (
        _html(feedback_link_url(customer=customer)),
        _html(short),
        _html(reverse("feedback:thanks")),
    ):
        assert f'<p class="business" data-business-name>{NAME}</p>' in html
        assert f"· {NAME}</title>" in html


def test_a_broken_feedback_link_still_says_whose_it_is():
    response = Client().get("/f/AAAAAAAAAAAA")

    assert response.status_code == 400
    assert NAME in response.content.decode()


def test_the_offer_and_unsubscribe_pages_show_the_business_name():
    customer = CustomerFactory(name="Ada Lovelace")
    offer = OfferFactory(title="Tea for two", holdout_share=Decimal("0"))
    offer_path = reverse(
        "offer_public:offer", args=[offer_token_make(customer_id=customer.pk, offer_id=offer.pk)]
    )
    unsubscribe_path = reverse(
        "offer_public:unsubscribe", args=[unsubscribe_token_make(customer_id=customer.pk)]
    )

    assert NAME in _html(offer_path)
    unsubscribed = _html(unsubscribe_path)
    assert f"you will not receive offers from {NAME} by e-mail" in unsubscribed
