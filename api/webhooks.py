"""Stripe and Shopify webhooks: check the signature, store the event once, record it."""

import json
import logging
import time
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db.models import Sum
from django.http import HttpRequest, JsonResponse
from django.utils.dateparse import parse_datetime
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from api import services
from api.signatures import SignatureError, shopify_signature_verify, stripe_signature_verify
from crm.models import Customer, Purchase
from crm.selectors import business_get

logger = logging.getLogger(__name__)

_NAME_MAX = Customer._meta.get_field("name").max_length


def _decimal(value: Any, *, what: str) -> Decimal:
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValueError(f"{what} is not a number: {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"{what} is not a number: {value!r}")
    return amount


def _cents(value: Any, *, what: str) -> Decimal:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{what} must be a whole number of cents.")
    return Decimal(value) / 100


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, int) and 0 < value < 253402300799:
        return datetime.fromtimestamp(value, tz=UTC)
    return None


def _customer_fields(*, email: Any, name: Any, source: str, external_id: Any) -> dict[str, str]:
    fields = {"customer_name": str(name or "")[:_NAME_MAX]}
    if email:
        fields["customer_email"] = str(email)
    if external_id:
        fields["customer_external_source"] = source
        fields["customer_external_id"] = str(external_id)
    return fields


def stripe_items(event: dict[str, Any]) -> list[dict[str, Any]]:
    """The purchases a Stripe event means (none for types we do not record)."""
    obj = (event.get("data") or {}).get("object") or {}
    if not isinstance(obj, dict):
        raise ValueError("data.object is not an object.")
    if event.get("type") == "checkout.session.completed":
        details = obj.get("customer_details") or {}
        # The payment intent is the id Stripe's payment exports show, and what a refund's
        # charge points back to; a session without one (a free order) keeps its own id.
        order_id = obj.get("payment_intent") or obj.get("id")
        item = {
            "kind": Purchase.Kind.SALE,
            "amount": _cents(obj.get("amount_total"), what="amount_total"),
            "currency": str(obj.get("currency") or business_get().currency).upper(),
            "external_source": "stripe",
            "external_order_id": str(order_id or ""),
            "channel": Purchase.Channel.ONLINE,
            **_customer_fields(
                email=details.get("email"),
                name=details.get("name"),
                source="stripe",
                external_id=obj.get("customer"),
            ),
        }
        if when := _timestamp(obj.get("created")):
            item["purchased_at"] = when
        return [item]
    if event.get("type") == "charge.refunded":
        charge_id = str(obj.get("id") or "")
        refunded = _cents(obj.get("amount_refunded"), what="amount_refunded")
        # amount_refunded is the charge's running total: record only what is new, under an
        # id that includes the total so the same notice twice is one row.
        prefix = f"{charge_id}:refund:"
        already = Purchase.objects.filter(
            external_source="stripe", external_order_id__startswith=prefix
        ).aggregate(total=Sum("amount"))["total"] or Decimal(0)
        if refunded <= already:
            return []
        billing = obj.get("billing_details") or {}
        item = {
            "kind": Purchase.Kind.REFUND,
            "amount": refunded - already,
            "currency": str(obj.get("currency") or business_get().currency).upper(),
            "external_source": "stripe",
            "external_order_id": f"{prefix}{refunded}",
            **_customer_fields(
                email=billing.get("email"),
                name=billing.get("name"),
                source="stripe",
                external_id=obj.get("customer"),
            ),
        }
        sale = _sale("stripe", obj.get("payment_intent"))
        if sale is not None:
            item["customer_id"] = sale.customer_id
        return [item]
    return []


def _sale(source: str, order_id: Any) -> Purchase | None:
    if not order_id:
        return None
    return Purchase.objects.filter(external_source=source, external_order_id=str(order_id)).first()


def shopify_items(topic: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The purchases a Shopify webhook means (none for topics we do not record)."""
    if topic == "orders/create":
        customer = body.get("customer") or {}
        if not isinstance(customer, dict):
            customer = {}
        name = " ".join(
            str(customer.get(k) or "") for k in ("first_name", "last_name") if customer.get(k)
        )
        item = {
            "kind": Purchase.Kind.SALE,
            "amount": _decimal(body.get("total_price"), what="total_price"),
            "currency": str(body.get("currency") or business_get().currency).upper(),
            "external_source": "shopify",
            "external_order_id": str(body.get("id") or ""),
            "channel": Purchase.Channel.ONLINE,
            **_customer_fields(
                email=body.get("email") or customer.get("email"),
                name=name,
                source="shopify",
                external_id=customer.get("id"),
            ),
        }
        if when := parse_datetime(str(body.get("created_at") or "")):
            item["purchased_at"] = when
        return [item]
    if topic == "refunds/create":
        transactions = body.get("transactions") or []
        amount = sum(
            (
                _decimal(t.get("amount"), what="transactions[].amount")
                for t in transactions
                if isinstance(t, dict)
                and t.get("kind", "refund") == "refund"
                and t.get("status", "success") == "success"
            ),
            Decimal(0),
        )
        if amount <= 0:
            return []
        sale = _sale("shopify", body.get("order_id"))
        if sale is None:
            raise ValueError(f"Order {body.get('order_id')!r} is not known; refund not recorded.")
        item = {
            "kind": Purchase.Kind.REFUND,
            "amount": amount,
            "currency": sale.currency,
            "external_source": "shopify",
            "external_order_id": f"refund:{body.get('id')}",
            "customer_id": sale.customer_id,
        }
        if when := parse_datetime(str(body.get("created_at") or "")):
            item["purchased_at"] = when
        return [item]
    return []


def _answer(code: int, **body) -> JsonResponse:
    return JsonResponse(body, status=code)


def _receive(*, source: str, event_id: str, type: str, payload: dict, items_of) -> JsonResponse:
    if not event_id or len(event_id) > 100:
        return _answer(400, error="The event has no usable id.")
    event = services.webhook_event_receive(
        source=source, event_id=event_id, type=type[:100], payload=payload
    )
    if event is None:
        return _answer(200, status="duplicate", event_id=event_id)
    try:
        items = items_of()
    except ValueError as e:
        items, event.error = None, str(e)
        event.save(update_fields=["error"])
    if items is not None:
        services.webhook_event_process(event=event, items=items)
    if event.error:
        logger.warning("%s event %s not recorded: %s", source, event_id, event.error)
        return _answer(200, status="error", event_id=event_id, error=event.error)
    return _answer(200, status="processed", event_id=event_id)


def _json(body: bytes) -> dict | None:
    # PostgreSQL's jsonb cannot hold a NUL character; such a body is refused, not stored.
    if b"\\u0000" in body:
        return None
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


@csrf_exempt
@login_not_required
@require_POST
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        return _answer(503, error="Stripe webhooks are not configured (STRIPE_WEBHOOK_SECRET).")
    try:
        stripe_signature_verify(
            payload=request.body,
            header=request.headers.get("Stripe-Signature", ""),
            secret=secret,
            tolerance=settings.STRIPE_WEBHOOK_TOLERANCE,
            now=time.time(),
        )
    except SignatureError as e:
        return _answer(400, error=str(e))
    event = _json(request.body)
    if event is None:
        return _answer(400, error="The body is not a JSON object.")
    return _receive(
        source="stripe",
        event_id=str(event.get("id") or ""),
        type=str(event.get("type") or ""),
        payload=event,
        items_of=lambda: stripe_items(event),
    )


@csrf_exempt
@login_not_required
@require_POST
def shopify_webhook(request: HttpRequest) -> JsonResponse:
    secret = settings.SHOPIFY_WEBHOOK_SECRET
    if not secret:
        return _answer(503, error="Shopify webhooks are not configured (SHOPIFY_WEBHOOK_SECRET).")
    try:
        shopify_signature_verify(
            payload=request.body,
            header=request.headers.get("X-Shopify-Hmac-Sha256", ""),
            secret=secret,
        )
    except SignatureError as e:
        return _answer(400, error=str(e))
    body = _json(request.body)
    if body is None:
        return _answer(400, error="The body is not a JSON object.")
    topic = request.headers.get("X-Shopify-Topic", "")
    return _receive(
        source="shopify",
        event_id=request.headers.get("X-Shopify-Webhook-Id", ""),
        type=topic,
        payload=body,
        items_of=lambda: shopify_items(topic, body),
    )
