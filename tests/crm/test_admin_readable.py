"""The customer admin reads like the rest of the product: words, rounded figures with the
currency, a way to the customer's page; the Owner's admin home shows no plumbing."""

from decimal import Decimal

from django.contrib.auth.models import Group
from django.urls import reverse

from crm.services import business_settings_update, customer_stats_refresh
from tests.factories import CustomerFactory, PurchaseFactory, SegmentFactory, UserFactory

NBSP = "\u00a0"
CHANGELIST = "admin:crm_customer_changelist"


def _owner_client(client):
    owner = UserFactory(username="olga", is_staff=True)
    owner.groups.add(Group.objects.get(name="Owner"))
    client.force_login(owner)
    return client


def test_the_customer_list_speaks_in_words_and_amounts_with_the_currency(client, db):
    business_settings_update(name="Shop", currency="CHF", time_zone="Europe/Zurich")
    ann = CustomerFactory(name="Ann", marketing_consent=True, segment=SegmentFactory())
    PurchaseFactory(customer=ann, amount=Decimal("1234.5"))
    PurchaseFactory(customer=ann, amount=Decimal("0.975896860986547"))
    CustomerFactory(name="Ben", marketing_consent=False)
    customer_stats_refresh()

    page = _owner_client(client).get(reverse(CHANGELIST)).content.decode()
    table = page[page.index('id="result_list"') : page.index("</table>")]

    assert f"1,235.48{NBSP}CHF" in page
    assert "0.975896860986547" not in page and "1235.48" not in page
    assert ">Yes<" in table and ">No<" in table
    assert "False" not in table and "True" not in table
    assert f'href="{reverse("pages:customer_detail", args=[ann.pk])}"' in table


def test_the_customer_change_page_shows_the_total_with_the_currency(client, db):
    ann = CustomerFactory(name="Ann")
    PurchaseFactory(customer=ann, amount=Decimal("80"))
    customer_stats_refresh()

    page = (
        _owner_client(client)
        .get(reverse("admin:crm_customer_change", args=[ann.pk]))
        .content.decode()
    )

    assert f"80.00{NBSP}EUR" in page


def test_the_owner_admin_home_lists_the_business_not_the_plumbing(client, db):
    response = _owner_client(client).get(reverse("admin:index"))

    models = {
        (app["app_label"], model["object_name"])
        for app in response.context["app_list"]
        for model in app["models"]
    }
    assert ("crm", "Customer") in models
    assert ("django_celery_beat", "PeriodicTask") in models
    for plumbing in (
        ("axes", "AccessAttempt"),
        ("axes", "AccessLog"),
        ("axes", "AccessFailureLog"),
        ("django_celery_beat", "IntervalSchedule"),
        ("django_celery_beat", "CrontabSchedule"),
        ("django_celery_beat", "SolarSchedule"),
        ("django_celery_beat", "ClockedSchedule"),
    ):
        assert plumbing not in models, plumbing
