"""The staff customer list, the new-customer form, editing and recording a sale."""

import csv
import io
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from crm import tables as crm_tables
from crm.models import Customer, Purchase
from tests.factories import CustomerFactory, PurchaseFactory, SegmentFactory, TagFactory

pytestmark = pytest.mark.django_db

LIST = "pages:customer_list"


def _names(response) -> list[str]:
    """The customers the list shows, in order."""
    return [row.record.name for row in response.context["table"].page.object_list]


def _list(client, **params):
    response = client.get(reverse(LIST), params)
    assert response.status_code == 200
    return _names(response)


def test_customer_list_finds_people_by_surname_and_phone_without_prefix(staff_client):
    CustomerFactory(name="Nina Newcomer", phone="+44 7700 900123")
    CustomerFactory(name="Other Person", phone="+44 20 7946 0000")

    assert _list(staff_client, q="Newcomer") == ["Nina Newcomer"]
    assert _list(staff_client, q="7700 900123") == ["Nina Newcomer"]


def test_a_page_never_shows_more_rows_than_the_bound_whatever_the_address_asks(
    staff_client, monkeypatch
):
    monkeypatch.setattr(crm_tables, "MAX_PER_PAGE", 3)  # the bound, not its size, is tested
    CustomerFactory.create_batch(5)

    assert len(_list(staff_client, per_page=2)) == 2
    assert len(_list(staff_client, per_page=1_000_000)) == 3
    assert len(_list(staff_client, per_page="lots")) == 3  # the page's own size, bounded
    assert len(_list(staff_client, per_page=0)) == 1
    assert len(_list(staff_client)) == 5  # nothing asked: the page's own size (50)


def test_each_filter_of_the_list_returns_the_right_customers(staff_client):
    vip = TagFactory(name="vip")
    segment = SegmentFactory(name="Loyal")
    buyer = CustomerFactory(name="Buyer", marketing_consent=False, segment=segment)
    buyer.tags.add(vip)
    PurchaseFactory(customer=buyer)
    Customer.objects.filter(pk=buyer.pk).update(purchase_count=1)
    CustomerFactory(name="Browser", marketing_consent=True)
    CustomerFactory(name="Gone", is_archived=True)

    assert set(_list(staff_client)) == {"Buyer", "Browser"}  # archived stay out
    assert _list(staff_client, segment=segment.pk) == ["Buyer"]
    assert _list(staff_client, tag=vip.pk) == ["Buyer"]
    assert _list(staff_client, consent="true") == ["Browser"]
    assert _list(staff_client, has_purchased="true") == ["Buyer"]
    assert _list(staff_client, has_purchased="false") == ["Browser"]
    assert _list(staff_client, archived="only") == ["Gone"]
    assert set(_list(staff_client, archived="all")) == {"Buyer", "Browser", "Gone"}


def test_sorting_on_total_spent_shows_the_highest_first_on_the_first_click(staff_client):
    CustomerFactory(name="Small", total_spent=Decimal("10"), purchase_count=1)
    CustomerFactory(name="Big", total_spent=Decimal("900"), purchase_count=3)
    CustomerFactory(name="Middle", total_spent=Decimal("100"), purchase_count=2)

    assert _list(staff_client) == ["Big", "Middle", "Small"]
    assert _list(staff_client, sort="total_spent") == ["Big", "Middle", "Small"]
    assert _list(staff_client, sort="-total_spent") == ["Small", "Middle", "Big"]
    assert _list(staff_client, sort="purchase_count") == ["Big", "Middle", "Small"]
    assert _list(staff_client, sort="name") == ["Big", "Middle", "Small"]
    assert _list(staff_client, sort="-name") == ["Small", "Middle", "Big"]


def test_sorting_on_email_and_last_purchase(staff_client):
    now = timezone.now()
    CustomerFactory(name="B", email="b@example.com", last_purchase_at=now - timedelta(days=1))
    CustomerFactory(name="A", email="a@example.com", last_purchase_at=now - timedelta(days=9))

    assert _list(staff_client, sort="email") == ["A", "B"]
    assert _list(staff_client, sort="last_purchase_at") == ["A", "B"]
    assert _list(staff_client, sort="-last_purchase_at") == ["B", "A"]


def test_the_list_runs_a_fixed_number_of_queries(staff_client, django_assert_max_num_queries):
    segment = SegmentFactory()
    CustomerFactory.create_batch(30, segment=segment)
    with django_assert_max_num_queries(10):
        response = staff_client.get(reverse(LIST))
    assert len(_names(response)) == 30
    assert segment.name in response.content.decode()


def test_bulk_tag_tags_only_the_ticked_customers(staff_client):
    ticked = CustomerFactory.create_batch(2)
    left = CustomerFactory()

    response = staff_client.post(
        reverse("pages:customers_bulk"),
        {"selected": [c.pk for c in ticked], "action": "tag", "tag_name": "spring fair"},
    )

    assert response.status_code == 302
    tagged = Customer.objects.filter(tags__name="spring fair")
    assert set(tagged) == set(ticked)
    assert left not in tagged


def test_bulk_export_writes_the_ticked_customers_as_csv(staff_client):
    ticked = CustomerFactory(name="Ticked", email="t@example.com")
    CustomerFactory(name="Not ticked")

    response = staff_client.post(
        reverse("pages:customers_bulk"), {"selected": [ticked.pk], "action": "export"}
    )

    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["name"] for r in rows] == ["Ticked"]
    assert rows[0]["email"] == "t@example.com"


def test_bulk_action_without_a_selection_says_so(staff_client):
    response = staff_client.post(reverse("pages:customers_bulk"), {"action": "tag"}, follow=True)
    assert "Tick at least one customer" in response.content.decode()


def test_new_customer_form_creates_the_customer_through_the_service(staff_client):
    response = staff_client.post(
        reverse("pages:customer_new"),
        {
            "name": "Zoë Ólafsdóttir",
            "email": "zoe@example.com",
            "phone": "+354 555 1234",
            "tag_names": "vip, fair",
            "marketing_consent": "on",
        },
    )

    customer = Customer.objects.get(email="zoe@example.com")
    assert response.status_code == 302
    assert response["Location"] == customer.get_absolute_url()
    assert customer.marketing_consent
    assert set(customer.tags.values_list("name", flat=True)) == {"vip", "fair"}
    assert customer.search_text == "zoe olafsdottir|zoe@example.com|3545551234"


def test_new_customer_form_shows_the_services_refusal_on_the_field(staff_client):
    CustomerFactory(email="taken@example.com")

    response = staff_client.post(
        reverse("pages:customer_new"), {"name": "Again", "email": "TAKEN@example.com"}
    )

    assert response.status_code == 400
    assert "already has the e-mail" in str(response.context["form"].errors["email"])
    assert Customer.objects.count() == 1


def test_editing_on_the_customer_page_updates_only_what_changed(staff_client):
    customer = CustomerFactory(name="Ann Old", email="ann@example.com", city="Leeds")
    page = staff_client.get(customer.get_absolute_url())
    assert 'id="edit-form"' in page.content.decode()

    data = {f: getattr(customer, f) or "" for f in ("name", "email", "phone", "city", "country")}
    data |= {"name": "Ann New", "marketing_consent": "on"}
    response = staff_client.post(reverse("pages:customer_edit", args=[customer.pk]), data)

    assert response.status_code == 302
    customer.refresh_from_db()
    assert (customer.name, customer.city) == ("Ann New", "Leeds")
    assert customer.search_text.startswith("ann new|")


def test_editing_refuses_an_invalid_value_and_keeps_the_stored_one(staff_client):
    customer = CustomerFactory(name="Ann", age=30)
    response = staff_client.post(
        reverse("pages:customer_edit", args=[customer.pk]), {"name": "Ann", "age": "500"}
    )
    assert response.status_code == 400
    assert response.context["edit_open"]
    customer.refresh_from_db()
    assert customer.age == 30


def test_recording_a_sale_refreshes_the_customers_figures(staff_client):
    customer = CustomerFactory()

    response = staff_client.post(
        reverse("pages:customer_sale_record", args=[customer.pk]),
        {"amount": "49.90", "product": "Candle", "channel": "in_person"},
    )

    assert response.status_code == 302
    customer.refresh_from_db()
    assert customer.purchase_count == 1
    assert customer.total_spent == Decimal("49.90")
    sale = Purchase.objects.get(customer=customer)
    assert (sale.product, sale.channel) == ("Candle", "in_person")
    page = staff_client.get(customer.get_absolute_url()).content.decode()
    assert "Candle" in page


def test_recording_a_sale_dated_another_day_keeps_that_day(staff_client):
    customer = CustomerFactory()
    day = timezone.localdate() - timedelta(days=3)
    staff_client.post(
        reverse("pages:customer_sale_record", args=[customer.pk]),
        {"amount": "10", "purchased_on": day.isoformat()},
    )
    customer.refresh_from_db()
    assert timezone.localtime(customer.last_purchase_at).date() == day


def test_recording_a_sale_refuses_a_zero_amount(staff_client):
    customer = CustomerFactory()
    response = staff_client.post(
        reverse("pages:customer_sale_record", args=[customer.pk]), {"amount": "0"}
    )
    assert response.status_code == 400
    assert not Purchase.objects.filter(customer=customer).exists()


def test_the_top_navigation_leads_to_the_customer_list(staff_client):
    html = staff_client.get(reverse(LIST)).content.decode()
    assert f'href="{reverse(LIST)}" aria-current="page">Customers' in html


def test_the_total_spent_header_shows_a_downward_arrow_when_highest_come_first(staff_client):
    CustomerFactory()
    html = staff_client.get(reverse(LIST)).content.decode()
    th = re.search(r'<th class="([^"]*)"[^>]*>\s*<a [^>]*>Total spent', html)
    # The declared descending order read "ascending" (highest first): app.css draws it ▼.
    assert {"desc-first", "asc"} <= set(th.group(1).split())
