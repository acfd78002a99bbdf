import logging
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from api.models import ApiToken
from crm.models import AuditEntry, Customer, Feedback, Purchase
from pages.today import customers_overdue
from tests.factories import (
    CustomerFactory,
    CustomerPredictionFactory,
    PurchaseFactory,
    SegmentFactory,
)

pytestmark = pytest.mark.django_db


def test_requests_without_a_token_are_refused(db):
    response = APIClient().get("/api/v1/customers/")
    assert response.status_code == 401


def test_a_revoked_token_is_refused(api, write_token):
    ApiToken.objects.filter(pk=write_token[0].pk).update(revoked_at=timezone.now())
    assert api.get("/api/v1/customers/").status_code == 401


def test_a_read_only_token_reads_but_cannot_write(read_api):
    assert read_api.get("/api/v1/customers/").status_code == 200
    response = read_api.post("/api/v1/customers/", {"email": "a@example.com"}, format="json")
    assert response.status_code == 403
    assert not Customer.objects.exists()


def test_the_token_is_stored_hashed_and_last_use_is_recorded(api, write_token):
    api_token, token = write_token
    assert token not in str(ApiToken.objects.values_list().get(pk=api_token.pk))
    api.get("/api/v1/customers/")
    api_token.refresh_from_db()
    assert api_token.last_used_at is not None
    first = api_token.last_used_at
    api.get("/api/v1/customers/")
    api_token.refresh_from_db()
    assert api_token.last_used_at == first  # at most once a minute


def test_staff_session_reads_but_writes_need_csrf(alice):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.get("/api/v1/customers/").status_code == 200
    response = client.post("/api/v1/customers/", {"email": "a@example.com"}, format="json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]


def test_a_session_of_a_user_who_is_not_staff_is_refused(bob):
    client = APIClient()
    client.force_login(bob)
    assert client.get("/api/v1/customers/").status_code == 403


def test_requests_beyond_the_rate_limit_are_throttled(api, settings):
    settings.API_RATE_LIMIT = "2/min"
    assert api.get("/api/v1/segments/").status_code == 200
    assert api.get("/api/v1/segments/").status_code == 200
    assert api.get("/api/v1/segments/").status_code == 429


def test_customer_list_filters_by_email_segment_and_update_time(api):
    segment = SegmentFactory()
    ann = CustomerFactory(email="Ann@Example.com", segment=segment)
    CustomerFactory(email="bo@example.com")
    by_email = api.get("/api/v1/customers/", {"email": "ann@example.com"}).json()
    assert [c["id"] for c in by_email["results"]] == [ann.pk]
    by_segment = api.get("/api/v1/customers/", {"segment": segment.pk}).json()
    assert [c["segment"] for c in by_segment["results"]] == [segment.pk]
    later = api.get("/api/v1/customers/", {"updated_since": "2999-01-01T00:00:00Z"}).json()
    assert later["results"] == []
    assert api.get("/api/v1/customers/", {"updated_since": "soon"}).status_code == 400


def test_customer_list_pages_with_a_cursor(api):
    CustomerFactory.create_batch(3)
    first = api.get("/api/v1/customers/", {"page_size": 2}).json()
    assert len(first["results"]) == 2
    second = api.get(first["next"]).json()
    assert len(second["results"]) == 1


def test_customer_create_update_and_field_errors(api):
    response = api.post(
        "/api/v1/customers/", {"email": "ann@example.com", "name": "Ann"}, format="json"
    )
    assert response.status_code == 201, response.json()
    pk = response.json()["id"]
    response = api.patch(f"/api/v1/customers/{pk}/", {"city": "Leeds"}, format="json")
    assert response.json()["city"] == "Leeds"
    clash = api.post("/api/v1/customers/", {"email": "ANN@example.com"}, format="json")
    assert clash.status_code == 400 and "email" in clash.json()
    bad = api.post("/api/v1/customers/", {"age": 400, "name": "x" * 201}, format="json")
    assert set(bad.json()) == {"age", "name"}
    nul = api.post("/api/v1/customers/", {"name": "a\x00b"}, format="json")
    assert nul.status_code == 400 and "name" in nul.json()


def test_a_second_customer_with_the_same_external_id_is_refused(api):
    CustomerFactory(external_source="shop", external_id="42")
    body = {"external_source": "shop", "external_id": "42"}
    response = api.post("/api/v1/customers/", body, format="json")
    assert response.status_code == 400
    assert "non_field_errors" in response.json()
    assert Customer.objects.count() == 1


def test_put_on_a_customer_is_not_allowed(api):
    customer = CustomerFactory()
    response = api.put(f"/api/v1/customers/{customer.pk}/", {"name": "x"}, format="json")
    assert response.status_code == 405


def test_customer_upsert_finds_by_external_id_then_email(api):
    body = {"external_source": "shop", "external_id": "42", "name": "Ann"}
    assert api.put("/api/v1/customers/upsert/", body, format="json").status_code == 201
    again = api.put("/api/v1/customers/upsert/", {**body, "city": "York"}, format="json")
    assert again.status_code == 200 and again.json()["city"] == "York"
    CustomerFactory(email="bo@example.com")
    by_email = api.put(
        "/api/v1/customers/upsert/", {"email": "BO@example.com", "city": "Bath"}, format="json"
    )
    assert by_email.status_code == 200
    assert Customer.objects.count() == 2


def test_a_purchase_creates_its_customer_and_refreshes_statistics(api):
    body = {"customer_email": "new@example.com", "amount": "25.50", "external_order_id": "A1"}
    response = api.post("/api/v1/purchases/", body, format="json")
    assert response.status_code == 201, response.json()
    customer = Customer.objects.get(email="new@example.com")
    assert customer.purchase_count == 1
    assert customer.total_spent == Decimal("25.50")


def test_the_same_order_sent_twice_is_one_purchase(api):
    customer = CustomerFactory()
    body = {"customer_id": customer.pk, "amount": "10", "external_order_id": "A1"}
    first = api.post("/api/v1/purchases/", body, format="json")
    second = api.post("/api/v1/purchases/", body, format="json")
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert Purchase.objects.count() == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", 10**10),
        ("amount", "1.234"),
        ("amount", -5),
        ("purchased_at", "2999-01-01T00:00:00Z"),
        ("currency", "EURO"),
        ("kind", "gift"),
        ("product", "a\x00b"),
        ("customer_id", 2**70),
    ],
)
def test_a_bad_purchase_value_is_a_field_error(api, field, value):
    customer = CustomerFactory()
    body = {"customer_id": customer.pk, "amount": "10", field: value}
    response = api.post("/api/v1/purchases/", body, format="json")
    assert response.status_code == 400, response.content
    body = response.json()
    assert field in body or field in {e["field"] for e in body.get("errors", [])}
    assert not Purchase.objects.exists()


def test_a_year_one_purchase_date_is_a_field_error_not_a_server_error(api, settings):
    settings.TIME_ZONE = "Asia/Tokyo"
    customer = CustomerFactory()
    for moment in ("0001-01-01T00:00:00Z", "0001-01-01T05:00:00+09:00", "2201-01-01T00:00:00Z"):
        body = {"customer_id": customer.pk, "amount": "1", "purchased_at": moment}
        response = api.post("/api/v1/purchases/", body, format="json")
        assert response.status_code == 400, moment
        assert "purchased_at" in response.json()
    assert not Purchase.objects.exists()


def test_an_income_of_a_trillion_and_a_year_one_birth_date_are_field_errors(api):
    body = {
        "email": "ann@example.com",
        "annual_income": "1000000000000",
        "birth_date": "0001-01-01",
    }
    response = api.post("/api/v1/customers/", body, format="json")
    assert response.status_code == 400
    assert {"annual_income", "birth_date"} <= set(response.json())
    assert not Customer.objects.exists()


def test_bulk_purchases_are_all_or_nothing_and_name_the_item(api):
    customer = CustomerFactory()
    items = [{"customer_id": customer.pk, "amount": "5"} for _ in range(3)]
    items[2]["amount"] = "-1"
    response = api.post("/api/v1/purchases/bulk/", {"purchases": items}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"index": 2, "field": "amount", "message": response.json()["errors"][0]["message"]}
    ]
    assert not Purchase.objects.exists()


def test_bulk_purchases_create_customers_once_and_skip_known_orders(api):
    PurchaseFactory(external_source="shop", external_order_id="known")
    items = [
        {
            "customer_email": "a@example.com",
            "amount": "5",
            "external_source": "shop",
            "external_order_id": f"o{n}",
        }
        for n in range(3)
    ] + [
        {
            "customer_external_source": "shop",
            "customer_external_id": "c9",
            "amount": "1",
            "kind": "refund",
        },
        {
            "customer_email": "a@example.com",
            "amount": "5",
            "external_source": "shop",
            "external_order_id": "known",
        },
    ]
    response = api.post("/api/v1/purchases/bulk/", {"purchases": items}, format="json")
    assert response.status_code == 200, response.json()
    assert (response.json()["created"], response.json()["existing"]) == (4, 1)
    customer = Customer.objects.get(email="a@example.com")
    assert (customer.purchase_count, customer.total_spent) == (3, Decimal("15"))
    refunded = Customer.objects.get(external_id="c9")
    assert refunded.total_spent == Decimal("-1")


def test_bulk_items_naming_one_new_customer_two_ways_create_one_customer(api):
    items = [
        {"customer_email": "a@example.com", "amount": "5"},
        {
            "customer_email": "A@example.com",
            "customer_external_source": "shop",
            "customer_external_id": "c1",
            "amount": "6",
        },
    ]
    response = api.post("/api/v1/purchases/bulk/", {"purchases": items}, format="json")
    assert response.status_code == 200, response.json()
    assert Customer.objects.get().purchase_count == 2


def test_bulk_refuses_more_than_a_thousand_purchases(api):
    items = [{"customer_email": "a@example.com", "amount": "1"}] * 1001
    response = api.post("/api/v1/purchases/bulk/", {"purchases": items}, format="json")
    assert response.status_code == 400 and "purchases" in response.json()


def test_writes_are_audit_logged_without_the_token(api, write_token, caplog):
    customer = CustomerFactory()
    with caplog.at_level(logging.INFO, logger="api.audit"):
        api.post("/api/v1/purchases/", {"customer_id": customer.pk, "amount": "3"}, format="json")
    line = caplog.records[-1].getMessage()
    assert f"token={write_token[0].prefix}" in line and "user=shop" in line
    assert "/api/v1/purchases/" in line and "POST" in line
    assert write_token[1] not in line


def test_feedback_is_recorded_through_the_feedback_service(api):
    customer = CustomerFactory()
    response = api.post(
        "/api/v1/feedback/", {"customer_id": customer.pk, "rating": 5, "nps": 9}, format="json"
    )
    assert response.status_code == 201, response.json()
    assert Feedback.objects.get().source == "import"
    none = api.post("/api/v1/feedback/", {"customer_id": customer.pk}, format="json")
    assert none.status_code == 400 and "rating" in none.json()
    out = api.post("/api/v1/feedback/", {"customer_id": customer.pk, "nps": 11}, format="json")
    assert "nps" in out.json()


def test_segments_and_memberships_are_read_only(api):
    segment = SegmentFactory()
    customer = CustomerFactory(segment=segment)
    assert api.get(f"/api/v1/segments/{segment.pk}/").json()["name"] == segment.name
    members = api.get("/api/v1/memberships/", {"segment": segment.pk}).json()["results"]
    assert members == [
        {"customer_id": customer.pk, "segment_id": segment.pk, "reason": "", "pinned": False}
    ]
    assert api.post("/api/v1/segments/", {"name": "x"}, format="json").status_code == 405


def test_predictions_are_read_per_customer_once_a_run_made_them(read_api):
    prediction = CustomerPredictionFactory(p_alive=0.8, value_12m=120.0)
    CustomerPredictionFactory()

    response = read_api.get(f"/api/v1/predictions/?customer={prediction.customer_id}")

    assert response.status_code == 200
    (row,) = response.json()["results"]
    assert row["customer_id"] == prediction.customer_id
    assert (row["p_alive"], row["value_12m"]) == (0.8, 120.0)


def test_api_writes_go_to_the_audit_trail_with_the_token_user(api):
    body = {"customer_email": "new@example.com", "amount": "25.50", "external_order_id": "A1"}
    response = api.post("/api/v1/purchases/", body, format="json")

    entry = AuditEntry.objects.get(object_type="crm.purchase")
    assert (entry.action, entry.username, entry.object_id, entry.count) == (
        AuditEntry.Action.CREATED,
        "shop",
        str(response.json()["id"]),
        1,
    )
    assert entry.address == "127.0.0.1"


def test_purchases_sent_in_bulk_put_a_lapsed_regular_on_todays_overdue_list(api):
    customer = CustomerFactory()
    now = timezone.now()
    items = [
        {
            "customer_id": customer.pk,
            "amount": "20",
            "purchased_at": (now - timedelta(days=days)).isoformat(),
        }
        for days in (40, 30, 20)  # every 10 days, last 20 days ago: overdue since day 15
    ]
    response = api.post("/api/v1/purchases/bulk/", {"purchases": items}, format="json")
    assert response.status_code == 200, response.json()

    customer.refresh_from_db()
    assert customer.overdue_from is not None and customer.overdue_from < now
    assert [item.customer for item in customers_overdue(now=now)] == [customer]
