import json
import time
from decimal import Decimal

import pytest
from django.test import Client

from api.models import WebhookEvent
from api.signatures import shopify_signature, stripe_signature_header
from crm.models import Customer, Purchase

pytestmark = pytest.mark.django_db

STRIPE_SECRET = "whsec_test_secret"
SHOPIFY_SECRET = "shpss_test_secret"


@pytest.fixture(autouse=True)
def _secrets(settings):
    settings.STRIPE_WEBHOOK_SECRET = STRIPE_SECRET
    settings.SHOPIFY_WEBHOOK_SECRET = SHOPIFY_SECRET


def checkout_completed(event_id="evt_1", *, amount=4200, email="ann@example.com"):
    """A checkout.session.completed event as Stripe documents it (fields we read)."""
    return {
        "id": event_id,
        "object": "event",
        "type": "checkout.session.completed",
        "created": 1764000000,
        "data": {
            "object": {
                "id": "cs_test_a1",
                "object": "checkout.session",
                "amount_total": amount,
                "currency": "eur",
                "created": 1764000000,
                "customer": "cus_9",
                "customer_details": {"email": email, "name": "Ann Lee"},
                "payment_intent": "pi_3",
                "payment_status": "paid",
            }
        },
    }


def charge_refunded(event_id="evt_2", *, refunded=1000):
    return {
        "id": event_id,
        "object": "event",
        "type": "charge.refunded",
        "data": {
            "object": {
                "id": "ch_7",
                "object": "charge",
                "amount": 4200,
                "amount_refunded": refunded,
                "currency": "eur",
                "customer": "cus_9",
                "billing_details": {"email": None, "name": None},
                "payment_intent": "pi_3",
                "refunded": refunded == 4200,
            }
        },
    }


def stripe_post(event, *, secret=STRIPE_SECRET, timestamp=None):
    body = json.dumps(event).encode()
    header = stripe_signature_header(
        payload=body, secret=secret, timestamp=timestamp or int(time.time())
    )
    return Client().post(
        "/api/v1/webhooks/stripe/",
        body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=header,
    )


def shopify_order(order_id=820982911946154508):
    """An orders/create payload as Shopify documents it (fields we read)."""
    return {
        "id": order_id,
        "email": "jon@example.com",
        "created_at": "2026-11-05T10:00:00-05:00",
        "total_price": "199.65",
        "currency": "USD",
        "customer": {
            "id": 115310627314723954,
            "email": "jon@example.com",
            "first_name": "Jon",
            "last_name": "Snow",
        },
    }


def shopify_refund(order_id=820982911946154508):
    return {
        "id": 509562969,
        "order_id": order_id,
        "created_at": "2026-11-06T10:00:00-05:00",
        "transactions": [
            {"id": 1, "kind": "refund", "status": "success", "amount": "41.94"},
            {"id": 2, "kind": "refund", "status": "failure", "amount": "5.00"},
        ],
    }


def shopify_post(body, *, topic, webhook_id, secret=SHOPIFY_SECRET):
    raw = json.dumps(body).encode()
    return Client().post(
        "/api/v1/webhooks/shopify/",
        raw,
        content_type="application/json",
        HTTP_X_SHOPIFY_HMAC_SHA256=shopify_signature(payload=raw, secret=secret),
        HTTP_X_SHOPIFY_TOPIC=topic,
        HTTP_X_SHOPIFY_WEBHOOK_ID=webhook_id,
    )


def test_a_signed_stripe_checkout_records_the_customer_and_the_purchase():
    response = stripe_post(checkout_completed())
    assert response.status_code == 200, response.json()
    purchase = Purchase.objects.get()
    assert (purchase.amount, purchase.currency) == (Decimal("42.00"), "EUR")
    assert (purchase.external_source, purchase.external_order_id) == ("stripe", "pi_3")
    customer = Customer.objects.get()
    assert (customer.email, customer.name, customer.external_id) == (
        "ann@example.com",
        "Ann Lee",
        "cus_9",
    )
    assert customer.purchase_count == 1
    assert WebhookEvent.objects.get().processed_at is not None


def test_a_wrong_stripe_signature_writes_nothing():
    response = stripe_post(checkout_completed(), secret="whsec_other")
    assert response.status_code == 400
    assert not WebhookEvent.objects.exists() and not Purchase.objects.exists()


def test_a_missing_stripe_signature_writes_nothing():
    response = Client().post(
        "/api/v1/webhooks/stripe/", checkout_completed(), content_type="application/json"
    )
    assert response.status_code == 400
    assert not WebhookEvent.objects.exists()


def test_a_stale_stripe_timestamp_is_refused():
    response = stripe_post(checkout_completed(), timestamp=int(time.time()) - 301)
    assert response.status_code == 400
    assert "tolerance" in response.json()["error"]
    assert not Purchase.objects.exists()


def test_a_replayed_stripe_event_writes_nothing_new():
    stripe_post(checkout_completed())
    again = stripe_post(checkout_completed())
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert Purchase.objects.count() == 1 and WebhookEvent.objects.count() == 1


def test_the_same_order_from_a_second_event_is_still_one_purchase():
    stripe_post(checkout_completed("evt_1"))
    stripe_post(checkout_completed("evt_1b"))
    assert Purchase.objects.count() == 1 and WebhookEvent.objects.count() == 2


def test_a_stripe_refund_records_only_what_is_newly_refunded():
    stripe_post(checkout_completed())
    stripe_post(charge_refunded("evt_2", refunded=1000))
    stripe_post(charge_refunded("evt_3", refunded=1500))
    refunds = Purchase.objects.filter(kind="refund").order_by("id")
    assert [r.amount for r in refunds] == [Decimal("10.00"), Decimal("5.00")]
    customer = Customer.objects.get()
    assert customer.total_spent == Decimal("27.00")
    assert customer.purchase_count == 1


def test_an_unconfigured_secret_answers_503(settings):
    settings.STRIPE_WEBHOOK_SECRET = ""
    response = stripe_post(checkout_completed())
    assert response.status_code == 503 and "STRIPE_WEBHOOK_SECRET" in response.json()["error"]


def test_a_signed_shopify_order_and_refund_are_recorded():
    response = shopify_post(shopify_order(), topic="orders/create", webhook_id="w1")
    assert response.status_code == 200, response.json()
    sale = Purchase.objects.get()
    assert (sale.amount, sale.currency, sale.external_order_id) == (
        Decimal("199.65"),
        "USD",
        "820982911946154508",
    )
    assert sale.purchased_at.isoformat() == "2026-11-05T15:00:00+00:00"
    assert sale.customer.name == "Jon Snow"
    shopify_post(shopify_refund(), topic="refunds/create", webhook_id="w2")
    refund = Purchase.objects.get(kind="refund")
    assert refund.amount == Decimal("41.94") and refund.customer_id == sale.customer_id
    sale.customer.refresh_from_db()
    assert sale.customer.total_spent == Decimal("157.71")


def test_a_wrong_shopify_signature_writes_nothing():
    response = shopify_post(shopify_order(), topic="orders/create", webhook_id="w1", secret="other")
    assert response.status_code == 400
    assert not WebhookEvent.objects.exists()


def test_a_replayed_shopify_webhook_id_writes_nothing_new():
    shopify_post(shopify_order(), topic="orders/create", webhook_id="w1")
    again = shopify_post(shopify_order(order_id=1), topic="orders/create", webhook_id="w1")
    assert again.json()["status"] == "duplicate"
    assert Purchase.objects.count() == 1


def test_a_refund_of_an_unknown_order_is_stored_with_its_error():
    response = shopify_post(shopify_refund(order_id=5), topic="refunds/create", webhook_id="w9")
    assert response.status_code == 200 and response.json()["status"] == "error"
    event = WebhookEvent.objects.get()
    assert "not known" in event.error and event.processed_at is None
    assert not Purchase.objects.exists()


def test_a_webhook_purchase_and_a_csv_import_of_the_same_order_are_one_row():
    import io

    from crm.importers import purchases_import

    shopify_post(shopify_order(), topic="orders/create", webhook_id="w1")
    csv = (
        "order_id,customer_email,amount,purchased_at,currency\n"
        "820982911946154508,jon@example.com,199.65,2026-11-05 15:00,USD\n"
    )
    report = purchases_import(source=io.BytesIO(csv.encode()), external_source="shopify")
    assert report.ok, report.summary()
    assert Purchase.objects.count() == 1


def test_an_amount_beyond_the_purchase_field_is_stored_as_the_event_error():
    response = stripe_post(checkout_completed(amount=10**15))
    assert response.status_code == 200 and response.json()["status"] == "error"
    assert "amount" in WebhookEvent.objects.get().error
    assert not Purchase.objects.exists() and not Customer.objects.exists()


def test_a_signed_body_with_a_nul_character_is_refused_and_not_stored():
    event = checkout_completed()
    event["data"]["object"]["customer_details"]["name"] = "Ann\x00"
    response = stripe_post(event)
    assert response.status_code == 400
    assert not WebhookEvent.objects.exists()
