"""The business settings: the owner's name, currency and time zone, and where they show."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from crm.models import BusinessSettings
from crm.selectors import business_get
from crm.services import business_settings_update
from tests.factories import CustomerFactory, FeedbackFactory, UserFactory

SETTINGS_URL = "/settings/"


def _user_of(role: str):
    user = UserFactory(username=role.lower(), is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return user


def test_without_a_saved_row_the_environment_values_are_the_business(db, settings):
    settings.BUSINESS_NAME, settings.DEFAULT_CURRENCY = "Corner Bakery", "GBP"
    settings.TIME_ZONE = "Europe/London"

    business = business_get()

    assert (business.name, business.currency, business.time_zone) == (
        "Corner Bakery",
        "GBP",
        "Europe/London",
    )


def test_saved_settings_win_over_the_environment_at_once(db, settings):
    settings.DEFAULT_CURRENCY = "EUR"
    business_get()  # cached with the environment's values

    business_settings_update(name="  Ann's   Books ", currency="usd", time_zone="America/New_York")

    assert business_get().name == "Ann's Books"
    assert business_get().currency == "USD"
    assert business_get().time_zone == "America/New_York"


def test_the_settings_are_read_without_a_query_once_cached(db, django_assert_num_queries):
    business_get()

    with django_assert_num_queries(0):
        business_get()


@pytest.mark.parametrize(
    ("field", "values"),
    [
        ("currency", {"currency": "EURO"}),
        ("currency", {"currency": "XYZ"}),
        ("currency", {"currency": ""}),
        ("time_zone", {"time_zone": "Mars/Olympus"}),
        ("time_zone", {"time_zone": ""}),
        ("name", {"name": "   "}),
        ("name", {"name": "x" * 101}),
    ],
)
def test_a_wrong_value_is_refused_by_name_and_nothing_is_saved(db, field, values):
    good = {"name": "Shop", "currency": "EUR", "time_zone": "Europe/Paris"}

    with pytest.raises(ValidationError) as error:
        business_settings_update(**(good | values))

    assert field in error.value.message_dict
    assert not BusinessSettings.objects.exists()


def test_saving_twice_keeps_a_single_row(db):
    business_settings_update(name="One", currency="EUR", time_zone="Europe/Paris")
    business_settings_update(name="Two", currency="CHF", time_zone="Europe/Zurich")

    assert list(BusinessSettings.objects.values_list("name", "currency")) == [("Two", "CHF")]


def test_the_owner_saves_the_settings_page(client, db):
    client.force_login(_user_of("Owner"))

    response = client.post(
        SETTINGS_URL, {"name": "Green Grocer", "currency": "sek", "time_zone": "Europe/Stockholm"}
    )

    assert response.status_code == 302
    assert business_get().currency == "SEK"
    page = client.get(SETTINGS_URL).content.decode()
    assert "Settings saved." in page and 'value="Green Grocer"' in page


def test_a_wrong_currency_on_the_page_says_what_is_wrong(client, db):
    client.force_login(_user_of("Owner"))

    response = client.post(
        SETTINGS_URL, {"name": "Shop", "currency": "ABC", "time_zone": "Europe/Paris"}
    )

    assert response.status_code == 400
    assert "ABC is not a currency code" in response.content.decode()
    assert not BusinessSettings.objects.exists()


def test_only_the_owner_sees_the_settings_link(client, db):
    for role, shown in (("Owner", True), ("Assistant", False), ("Viewer", False)):
        client.force_login(_user_of(role))

        page = client.get(reverse("pages:today")).content.decode()

        assert (f'href="{SETTINGS_URL}"' in page) is shown, role


def test_pages_show_dates_in_the_business_time_zone(staff_client, db):
    business_settings_update(name="Shop", currency="EUR", time_zone="Pacific/Auckland")
    customer = CustomerFactory()
    # 23:30 in London on 1 March is already 2 March in Auckland.
    FeedbackFactory(
        customer=customer,
        comment="late",
        created_at=datetime(2026, 3, 1, 23, 30, tzinfo=ZoneInfo("Europe/London")),
    )

    page = staff_client.get(reverse("pages:customer_detail", args=[customer.pk])).content.decode()

    assert "2 Mar 2026" in page and "1 Mar 2026" not in page
    assert timezone.get_current_timezone_name() != "Pacific/Auckland"  # only for the request


def test_offer_emails_sign_with_the_saved_business_name(db):
    from offers.mailing import offer_message_values
    from tests.factories import OfferFactory

    business_settings_update(name="Bloom & Co", currency="EUR", time_zone="Europe/Paris")

    values = offer_message_values(offer=OfferFactory(), customer=CustomerFactory())

    assert values["business_name"] == "Bloom & Co"


def test_a_sale_without_a_currency_is_recorded_in_the_business_currency(db):
    from decimal import Decimal

    from crm.services import purchase_record

    business_settings_update(name="Shop", currency="NOK", time_zone="Europe/Oslo")

    purchase = purchase_record(customer=CustomerFactory(), amount=Decimal("12"))

    assert purchase.currency == "NOK"


def test_a_new_purchase_in_the_admin_starts_in_the_business_currency(staff_client, db):
    business_settings_update(name="Shop", currency="NOK", time_zone="Europe/Oslo")

    page = staff_client.get(reverse("admin:crm_purchase_add")).content.decode()

    assert 'name="currency" value="NOK"' in page


def test_pages_fall_back_on_the_environment_while_the_database_cannot_be_read(
    rf, settings, monkeypatch
):
    from django.db import OperationalError

    from config import context_processors, middleware

    def unreadable():
        raise OperationalError("disk I/O error")

    settings.BUSINESS_NAME, settings.TIME_ZONE = "Corner Shop", "Europe/Lisbon"
    monkeypatch.setattr(context_processors, "business_get", unreadable)
    monkeypatch.setattr(middleware, "business_get", unreadable)
    zones = []

    def page(request):
        zones.append(timezone.get_current_timezone_name())
        return context_processors.business(request)

    shown = middleware.BusinessTimeZoneMiddleware(page)(rf.get("/"))

    assert shown["business"].name == "Corner Shop"
    assert zones == ["Europe/Lisbon"]
