"""The owner's admin in a real browser at a laptop's width: the customer list and a
customer's page fit 1,366 px without sideways scrolling. Screenshots in screenshots/."""

from importlib import import_module

import pytest
from django.apps import apps as django_apps
from django.contrib.auth.models import Group, Permission
from django.urls import reverse

from crm.services import business_settings_update
from tests.browser.test_pages import PASSWORD, _shot, browser, page  # noqa: F401 (fixtures)
from tests.factories import UserFactory
from tests.pages_data import shop_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LAPTOP = 1366
NBSP = "\u00a0"


@pytest.fixture
def owner(settings):
    """The Owner role, not a superuser: the admin as the business's owner sees it."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # A transactional test empties the tables, the roles too: the Owner's as migrations make it.
    roles = import_module("pages.migrations.0001_roles")
    trimmed = import_module("pages.migrations.0002_owner_settings_no_plumbing")
    group, _ = Group.objects.get_or_create(name="Owner")
    group.permissions.set(Permission.objects.filter(content_type__app_label__in=roles.OWNER_APPS))
    group.permissions.remove(*trimmed._permissions(django_apps, trimmed.OWNER_LOSES, models=True))
    user = UserFactory(username="owner", is_staff=True, password=PASSWORD)
    user.groups.add(group)
    return user


def _admin_log_in(tab, live_server) -> None:
    tab.goto(f"{live_server.url}{reverse('admin:index')}")
    tab.fill("#id_username", "owner")
    tab.fill("#id_password", PASSWORD)
    tab.click("input[type=submit]")
    tab.wait_for_url(f"{live_server.url}{reverse('admin:index')}")


def _scroll_width(tab) -> int:
    return tab.evaluate("document.documentElement.scrollWidth")


def test_the_admin_customer_list_and_page_fit_a_laptop(page, live_server, owner):  # noqa: F811
    shop = shop_create(customers=40)
    business_settings_update(name="Nordic Knits", currency="SEK", time_zone="Europe/Stockholm")
    _admin_log_in(page, live_server)

    page.goto(f"{live_server.url}{reverse('admin:crm_customer_changelist')}")
    _shot(page, "30-admin-customers-1366")
    list_width = _scroll_width(page)
    text = page.locator("#result_list").inner_text()
    lapsing = page.locator("#result_list tr", has_text="Lars Lapsing")
    lapsing_text = lapsing.inner_text()
    staff_links = lapsing.locator(
        f'a[href="{reverse("pages:customer_detail", args=[shop.lapsing.pk])}"]'
    ).count()

    page.goto(f"{live_server.url}{reverse('admin:crm_customer_change', args=[shop.lapsing.pk])}")
    _shot(page, "31-admin-customer-1366")
    change_width = _scroll_width(page)

    assert list_width <= LAPTOP, f"the customer list is {list_width} px wide"
    assert change_width <= LAPTOP, f"the customer page is {change_width} px wide"
    assert "False" not in text and "True" not in text
    assert f"2,400.00{NBSP}SEK" in lapsing_text
    assert staff_links == 1


def test_the_owner_admin_home_lists_no_plumbing(page, live_server, owner):  # noqa: F811
    _admin_log_in(page, live_server)
    _shot(page, "32-admin-home-owner")
    home = page.locator("#content-main").inner_text()

    assert "Customers" in home and "Periodic tasks" in home
    for plumbing in ("Access attempts", "Access logs", "Crontabs", "Intervals", "Solar"):
        assert plumbing not in home, plumbing
