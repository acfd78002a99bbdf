"""The customer admin: pages, search, filters, bounded queries, inlines, actions, export."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from crm.admin import LargeTablePaginator, TagFilter
from crm.models import Purchase
from crm.selectors import business_get
from crm.services import customer_stats_refresh
from segmentation.models import SegmentMembershipChange
from tests.factories import (
    CustomerFactory,
    FeedbackFactory,
    PurchaseFactory,
    SegmentationRunFactory,
    SegmentFactory,
    TagFactory,
)

CHANGELIST = "admin:crm_customer_changelist"


def changelist_names(client, **params) -> set[str]:
    response = client.get(reverse(CHANGELIST), params)
    assert response.status_code == 200
    return {str(c) for c in response.context["cl"].result_list}


def test_customer_pages_render_for_staff(staff_client):
    segment = SegmentFactory(name="Loyal regulars")
    customer = CustomerFactory(name="Ann Lee", segment=segment, segment_reason="buys monthly")
    PurchaseFactory(customer=customer, product="Coaching session")
    FeedbackFactory(customer=customer, comment="Lovely time")
    SegmentMembershipChange.objects.create(
        customer=customer, run=SegmentationRunFactory(), to_segment=segment, reason="first run"
    )
    customer_stats_refresh(customer_ids=[customer.pk])

    assert staff_client.get(reverse(CHANGELIST)).status_code == 200
    assert staff_client.get(reverse("admin:crm_customer_add")).status_code == 200
    page = staff_client.get(reverse("admin:crm_customer_change", args=[customer.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Loyal regulars" in html and "buys monthly" in html  # the segment, read-only
    assert "Coaching session" in html and "Lovely time" in html  # the timeline
    assert "first run" in html  # the segment history
    for name in ("crm_purchase", "crm_feedback", "crm_tag", "offers_offer", "offers_offerresponse"):
        assert staff_client.get(reverse(f"admin:{name}_changelist")).status_code == 200


def test_non_staff_users_cannot_open_the_customer_admin(client, bob):
    client.force_login(bob)
    response = client.get(reverse(CHANGELIST))

    assert response.status_code == 302 and "/login/" in response["Location"]


def test_timeline_merges_purchases_and_feedback_newest_first(staff_client):
    customer = CustomerFactory()
    now = timezone.now()
    PurchaseFactory(customer=customer, product="Oldest", purchased_at=now - timedelta(days=9))
    FeedbackFactory(customer=customer, comment="Middle", created_at=now - timedelta(days=5))
    PurchaseFactory(customer=customer, product="Newest", purchased_at=now - timedelta(days=1))

    html = staff_client.get(reverse("admin:crm_customer_change", args=[customer.pk])).content
    html = html.decode()
    assert html.index("Newest") < html.index("Middle") < html.index("Oldest")


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("ann", {"Ann Lee", "Annabel Grey"}),
        ("ANNA", {"Annabel Grey"}),
        ("lee", {"Ann Lee"}),  # any part of the name
        ("zoe", {"Zoé Martin"}),  # accents folded
        ("bob.s@", {"Bob Stone"}),
        ("BOB", {"Bob Stone"}),  # names and e-mails
        ("+44 20", {"Ann Lee"}),
        ("0612", {"Zoé Martin"}),
        ("X-77", {"Zoé Martin"}),  # an external id, exactly
    ],
)
def test_search_finds_customers_by_part_of_name_email_or_phone(staff_client, term, expected):
    CustomerFactory(name="Ann Lee", email="ann@example.com", phone="+44 20 7000 0001")
    CustomerFactory(name="Annabel Grey", email="grey@example.com", phone="+44 161 000")
    CustomerFactory(name="Bob Stone", email="Bob.S@Example.com", phone="07700 900")
    CustomerFactory(
        name="Zoé Martin", email="", phone="06123", external_source="shop", external_id="X-77"
    )

    assert changelist_names(staff_client, q=term) == expected


def test_each_filter_returns_the_right_customers(staff_client):
    vip = TagFactory(name="vip")
    segment = SegmentFactory()
    buyer = CustomerFactory(name="Buyer", marketing_consent=False, segment=segment)
    buyer.tags.add(vip)
    PurchaseFactory(customer=buyer)
    customer_stats_refresh(customer_ids=[buyer.pk])
    CustomerFactory(name="Prospect", marketing_consent=True)
    CustomerFactory(
        name="Old archived",
        is_archived=True,
        marketing_consent=False,
        created_at=timezone.now() - timedelta(days=400),
    )

    assert changelist_names(staff_client, tag=vip.pk) == {"Buyer"}
    assert changelist_names(staff_client, marketing_consent=0) == {"Buyer", "Old archived"}
    assert changelist_names(staff_client, purchased="yes") == {"Buyer"}
    assert changelist_names(staff_client, purchased="no") == {"Prospect", "Old archived"}
    assert changelist_names(staff_client, marketing_consent=1) == {"Prospect"}
    assert changelist_names(staff_client, membership__segment__id__exact=segment.pk) == {"Buyer"}
    assert changelist_names(staff_client, is_archived=1) == {"Old archived"}
    # As the filter's "Past 7 days" link passes it: an aware midnight.
    midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    since = str(midnight - timedelta(days=7))
    assert changelist_names(staff_client, created_at__gte=since) == {"Buyer", "Prospect"}


def test_tag_filter_gives_the_same_customers_for_large_tags(staff_client, monkeypatch):
    vip = TagFactory(name="vip")
    tagged = CustomerFactory(name="Tagged")
    tagged.tags.add(vip)
    CustomerFactory(name="Untagged")
    monkeypatch.setattr(TagFilter, "SMALL_TAG", 0)  # take the large-tag plan

    assert changelist_names(staff_client, tag=vip.pk) == {"Tagged"}
    assert changelist_names(staff_client, tag="nonsense") == set()


def test_changelist_sorts_by_total_spend_and_last_purchase(staff_client):
    now = timezone.now()
    for name, amount, days in (("Small", "10", 1), ("Big", "900", 30), ("Mid", "50", 5)):
        customer = CustomerFactory(name=name)
        PurchaseFactory(
            customer=customer, amount=Decimal(amount), purchased_at=now - timedelta(days=days)
        )
        customer_stats_refresh(customer_ids=[customer.pk])
    list_display = list(staff_client.get(reverse(CHANGELIST)).context["cl"].list_display)
    by_spend = list_display.index("spent")
    by_last = list_display.index("last_purchase")

    def order(o):
        response = staff_client.get(reverse(CHANGELIST), {"o": o})
        return [c.name for c in response.context["cl"].result_list]

    assert order(f"-{by_spend}") == ["Big", "Mid", "Small"]
    assert order(f"-{by_last}") == ["Small", "Mid", "Big"]


def _changelist_queries(client) -> int:
    business_get()  # read once a minute at most, by whichever page comes first
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse(CHANGELIST), {"purchased": "yes", "o": "-6"})
    assert response.status_code == 200
    return len(queries)


def test_changelist_runs_the_same_bounded_number_of_queries_at_any_size(
    staff_client, django_assert_max_num_queries
):
    segments = SegmentFactory.create_batch(3)
    TagFactory.create_batch(3)

    def add(n):
        for i in range(n):
            customer = CustomerFactory(segment=segments[i % 3])
            PurchaseFactory(customer=customer)
        customer_stats_refresh()

    add(5)
    with django_assert_max_num_queries(10):
        small = _changelist_queries(staff_client)
    add(195)
    with django_assert_max_num_queries(10):
        large = _changelist_queries(staff_client)
    assert small == large


def test_paginator_never_counts_beyond_its_cap(staff_client, monkeypatch):
    monkeypatch.setattr(LargeTablePaginator, "COUNT_CAP", 3)
    CustomerFactory.create_batch(6)

    with CaptureQueriesContext(connection) as queries:
        response = staff_client.get(reverse(CHANGELIST), {"marketing_consent": 1})
    cl = response.context["cl"]
    assert cl.paginator.is_estimate and cl.result_count == 4  # cap + 1: "more than 3"
    assert "more than 3 customers" in response.content.decode()
    count_sql = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]
    assert count_sql and all("LIMIT 4" in sql for sql in count_sql)


def _inline_management(prefix: str, total: int, initial: int) -> dict:
    return {
        f"{prefix}-TOTAL_FORMS": str(total),
        f"{prefix}-INITIAL_FORMS": str(initial),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }


def _customer_form(customer) -> dict:
    return {
        "name": customer.name,
        "email": customer.email,
        "phone": customer.phone,
        "notes": "Prefers mornings",
        "city": customer.city,
        "country": customer.country,
        "marketing_consent": "on",
        "external_source": "",
        "external_id": "",
    }


def test_purchase_added_inline_refreshes_the_customer_statistics(staff_client):
    customer = CustomerFactory()
    url = reverse("admin:crm_customer_change", args=[customer.pk])
    data = {
        **_customer_form(customer),
        **_inline_management("purchases", 1, 0),
        "purchases-0-purchased_at_0": "2024-05-01",
        "purchases-0-purchased_at_1": "10:00:00",
        "purchases-0-kind": "sale",
        "purchases-0-amount": "120.50",
        "purchases-0-currency": "EUR",
        "purchases-0-product": "Workshop",
        "purchases-0-category": "",
        "purchases-0-channel": "online",
        **_inline_management("feedback", 1, 0),
        "feedback-0-created_at_0": "2024-05-02",
        "feedback-0-created_at_1": "09:00:00",
        "feedback-0-rating": "4",
        "feedback-0-nps": "",
        "feedback-0-comment": "Good",
        "feedback-0-source": "staff",
        "feedback-0-purchase": "",
    }
    response = staff_client.post(url, data)

    assert response.status_code == 302, response.context["errors"]
    customer.refresh_from_db()
    assert customer.notes == "Prefers mornings"
    assert customer.purchase_count == 1 and customer.total_spent == Decimal("120.50")
    assert customer.feedback.get().rating == 4


def test_purchase_deleted_inline_refreshes_the_customer_statistics(staff_client):
    customer = CustomerFactory()
    purchase = PurchaseFactory(customer=customer, amount=Decimal("30"))
    customer_stats_refresh(customer_ids=[customer.pk])
    url = reverse("admin:crm_customer_change", args=[customer.pk])
    moment = timezone.localtime(purchase.purchased_at)
    data = {
        **_customer_form(customer),
        **_inline_management("purchases", 1, 1),
        "purchases-0-id": str(purchase.pk),
        "purchases-0-customer": str(customer.pk),
        "purchases-0-purchased_at_0": moment.strftime("%Y-%m-%d"),
        "purchases-0-purchased_at_1": moment.strftime("%H:%M:%S"),
        "purchases-0-kind": "sale",
        "purchases-0-amount": "30",
        "purchases-0-currency": "EUR",
        "purchases-0-channel": "online",
        "purchases-0-DELETE": "on",
        **_inline_management("feedback", 0, 0),
    }
    response = staff_client.post(url, data)

    assert response.status_code == 302, response.context["errors"]
    customer.refresh_from_db()
    assert customer.purchase_count == 0 and customer.total_spent == Decimal("0")


def test_purchase_admin_edits_and_deletes_refresh_the_statistics(staff_client):
    ann, bob = CustomerFactory(), CustomerFactory()
    purchase = PurchaseFactory(customer=ann, amount=Decimal("40"))
    customer_stats_refresh()
    moment = timezone.localtime(purchase.purchased_at)
    response = staff_client.post(
        reverse("admin:crm_purchase_change", args=[purchase.pk]),
        {
            "customer": str(bob.pk),
            "kind": "sale",
            "amount": "40",
            "currency": "EUR",
            "purchased_at_0": moment.strftime("%Y-%m-%d"),
            "purchased_at_1": moment.strftime("%H:%M:%S"),
            "channel": "online",
        },
    )
    assert response.status_code == 302
    ann.refresh_from_db()
    bob.refresh_from_db()
    assert (ann.purchase_count, bob.purchase_count) == (0, 1)

    staff_client.post(
        reverse("admin:crm_purchase_changelist"),
        {"action": "delete_selected", ACTION_CHECKBOX_NAME: [purchase.pk], "post": "yes"},
    )
    bob.refresh_from_db()
    assert not Purchase.objects.exists() and bob.total_spent == Decimal("0")


def test_customer_page_shows_only_the_latest_purchases_with_a_link_to_all(staff_client):
    customer = CustomerFactory()
    now = timezone.now()
    for day in range(15):
        PurchaseFactory(customer=customer, purchased_at=now - timedelta(days=day + 1))
    customer_stats_refresh(customer_ids=[customer.pk])

    response = staff_client.get(reverse("admin:crm_customer_change", args=[customer.pk]))
    formset = response.context["inline_admin_formsets"][0].formset
    assert len(formset.initial_forms) == 10
    assert f"?customer__id__exact={customer.pk}" in response.content.decode()


def test_all_purchases_link_lists_only_that_customers_purchases(staff_client):
    ann, bob = CustomerFactory(), CustomerFactory()
    mine = PurchaseFactory(customer=ann)
    PurchaseFactory(customer=bob)

    response = staff_client.get(
        reverse("admin:crm_purchase_changelist"), {"customer__id__exact": ann.pk}
    )
    assert list(response.context["cl"].result_list) == [mine]


def test_tag_action_tags_the_selected_customers(staff_client):
    chosen, other = CustomerFactory(), CustomerFactory()
    url = reverse(CHANGELIST)
    page = staff_client.post(
        url, {"action": "tag_selected", ACTION_CHECKBOX_NAME: [chosen.pk], "index": 0}
    )
    assert page.status_code == 200 and b"Add tags" in page.content

    staff_client.post(
        url,
        {
            "action": "tag_selected",
            ACTION_CHECKBOX_NAME: [chosen.pk],
            "apply": "Add tags",
            "tag_names": "vip, spring 2025",
        },
    )
    assert sorted(chosen.tags.values_list("name", flat=True)) == ["spring 2025", "vip"]
    assert not other.tags.exists()


def test_export_action_streams_the_selected_customers_as_safe_csv(staff_client):
    chosen = CustomerFactory(name="=HYPERLINK(1)", email="a@example.com")
    CustomerFactory(name="Not selected")
    response = staff_client.post(
        reverse(CHANGELIST),
        {"action": "export_selected_csv", ACTION_CHECKBOX_NAME: [chosen.pk], "index": 0},
    )

    assert response["Content-Type"].startswith("text/csv")
    body = b"".join(response.streaming_content).decode()
    assert "'=HYPERLINK(1)" in body and "Not selected" not in body
