"""The offer pages: list, detail, form."""

from decimal import Decimal

import pytest
from django.urls import reverse

from offers.models import Offer, OfferResponse
from tests.pages_data import respond, shop_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop():
    return shop_create(customers=10)


def test_offer_list_shows_acceptance_with_its_interval(staff_client, shop):
    respond(shop, shop.regular, OfferResponse.Outcome.ACCEPTED)
    respond(shop, shop.unhappy, OfferResponse.Outcome.DECLINED)
    html = staff_client.get(reverse("offers:offer_list")).content.decode()
    assert "Loyalty thank-you" in html
    assert "50% (9%\u201391%)" in html


def test_offer_detail_shows_results_per_segment(staff_client, shop):
    respond(shop, shop.regular, OfferResponse.Outcome.ACCEPTED)
    response = staff_client.get(reverse("offers:offer_detail", args=[shop.offer.pk]))
    html = response.content.decode()
    assert 'data-kpi="accepted">1<' in html
    assert "Loyal regulars" in html
    assert response.context["results"].total.cost == Decimal("5.00")


def test_offer_can_be_created_and_edited_on_the_pages(staff_client, shop):
    response = staff_client.post(
        reverse("offers:offer_create"),
        {
            "title": "Free coffee",
            "description": "A coffee on the house.",
            "segments": [shop.at_risk.pk],
            "channel": "in_person",
            "fixed_cost": "2.50",
            "holdout_share": "0.2",
            "attribution_days": "14",
            "is_active": "on",
        },
    )
    offer = Offer.objects.get(title="Free coffee")
    assert response["Location"] == reverse("offers:offer_detail", args=[offer.pk])
    assert list(offer.segments.all()) == [shop.at_risk]
    response = staff_client.post(
        reverse("offers:offer_edit", args=[offer.pk]),
        {
            "title": "Free coffee and cake",
            "channel": "in_person",
            "holdout_share": "0.2",
            "attribution_days": "14",
        },
    )
    assert response.status_code == 302
    offer.refresh_from_db()
    assert (offer.title, offer.is_active, list(offer.segments.all())) == (
        "Free coffee and cake",
        False,
        [],
    )


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"title": ""}, "This field is required."),
        ({"starts_on": "2026-05-10", "ends_on": "2026-05-01"}, "cannot end before it starts"),
        ({"holdout_share": "0.95"}, "less than or equal to 0.9"),
        ({"discount_percent": "150"}, "less than or equal to 100"),
    ],
)
def test_bad_offer_input_shows_the_form_again_with_errors(staff_client, shop, data, error):
    base = {"title": "Spring", "channel": "email", "holdout_share": "0.1", "attribution_days": "30"}
    response = staff_client.post(reverse("offers:offer_create"), {**base, **data})
    assert response.status_code == 400
    assert error in response.content.decode()
    assert not Offer.objects.filter(title="Spring").exists()
