"""Writes behind the API: tokens, purchases in bulk, webhook events."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models.functions import Lower
from django.utils import timezone

from api.models import ApiToken, WebhookEvent, token_generate, token_hash
from crm.models import Customer, Purchase
from crm.services import customer_stats_refresh, purchase_check

audit = logging.getLogger("api.audit")

# Most purchases one bulk request may carry: one transaction, one statistics refresh.
BULK_MAX = 1000

_BATCH = 500


@transaction.atomic
def api_token_create(*, user, name: str, scope: str) -> tuple[ApiToken, str]:
    """Create a token for a user; returns it with the full token, which is never stored.

    Side effects: inserts one ApiToken holding the token's sha256 and its prefix.
    """
    token, prefix = token_generate()
    api_token = ApiToken(user=user, name=name, scope=scope, prefix=prefix)
    api_token.token_hash = token_hash(token)
    api_token.full_clean()
    api_token.save()
    return api_token, token


def api_token_revoke(*, api_token: ApiToken) -> ApiToken:
    """Revoke a token (idempotent: the first revocation time is kept)."""
    ApiToken.objects.filter(pk=api_token.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    api_token.refresh_from_db(fields=["revoked_at"])
    return api_token


class ItemErrors(Exception):
    """Validation errors of a list of items: (index, field, message) triples."""

    def __init__(self, errors: list[tuple[int, str, str]]):
        super().__init__(f"{len(errors)} invalid item(s)")
        self.errors = errors


@dataclass
class PurchaseWritten:
    purchase: Purchase
    created: bool


def _error_triples(index: int, error: ValidationError) -> list[tuple[int, str, str]]:
    if hasattr(error, "error_dict"):
        return [
            (index, field, message)
            for field, errors in error.message_dict.items()
            for message in errors
        ]
    return [(index, "non_field_errors", message) for message in error.messages]


def _customer_key(item: dict[str, Any]) -> tuple[str, Any] | None:
    if item.get("customer_id"):
        return ("id", item["customer_id"])
    if item.get("customer_external_id"):
        source = item.get("customer_external_source", "")
        return ("external", (source, item["customer_external_id"]))
    if item.get("customer_email"):
        return ("email", item["customer_email"].lower())
    return None


def _customers_find(items: list[dict[str, Any]]) -> dict[tuple[str, Any], Customer]:
    """Existing customers for the items' references, in a few queries whatever the count."""
    ids = sorted({i["customer_id"] for i in items if i.get("customer_id")})
    emails = sorted({i["customer_email"].lower() for i in items if i.get("customer_email")})
    externals = sorted(
        {
            (i.get("customer_external_source", ""), i["customer_external_id"])
            for i in items
            if i.get("customer_external_id")
        }
    )
    found: dict[tuple[str, Any], Customer] = {}
    for start in range(0, len(ids), _BATCH):
        for c in Customer.objects.filter(pk__in=ids[start : start + _BATCH]):
            found[("id", c.pk)] = c
    for start in range(0, len(emails), _BATCH):
        for c in Customer.objects.alias(e=Lower("email")).filter(
            e__in=emails[start : start + _BATCH]
        ):
            found[("email", c.email.lower())] = c
    for source, values in _by_source(externals).items():
        for start in range(0, len(values), _BATCH):
            for c in Customer.objects.filter(
                external_source=source, external_id__in=values[start : start + _BATCH]
            ):
                found[("external", (c.external_source, c.external_id))] = c
    return found


def _by_source(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    """(source, id) pairs as ids per source: one IN list each instead of an OR per pair."""
    grouped: dict[str, list[str]] = {}
    for source, value in pairs:
        grouped.setdefault(source, []).append(value)
    return grouped


@transaction.atomic
def purchases_write(*, items: list[dict[str, Any]]) -> list[PurchaseWritten]:
    """Record purchases (sales or refunds), all or none, creating customers they name.

    Each item names its customer by `customer_id`, `customer_external_source` +
    `customer_external_id`, or `customer_email` (tried in that order, then the e-mail);
    an unknown e-mail or external id creates the customer (with `customer_name`).
    Idempotent by (external_source, external_order_id): a known order is returned as it is.
    Side effects: bulk-inserts customers and purchases, then refreshes the statistics of
    the customers that got purchases. Raises ItemErrors naming item index and field.
    """
    errors: list[tuple[int, str, str]] = []
    found = _customers_find(items)
    order_keys = sorted(
        {
            (i.get("external_source", ""), i["external_order_id"])
            for i in items
            if i.get("external_order_id")
        }
    )
    existing: dict[tuple[str, str], Purchase] = {}
    for source, values in _by_source(order_keys).items():
        for start in range(0, len(values), _BATCH):
            for p in Purchase.objects.with_order_ids(
                source=source, order_ids=values[start : start + _BATCH]
            ):
                existing[(p.external_source, p.external_order_id)] = p

    new_customers: dict[tuple[str, Any], Customer] = {}
    customer_of: list[Customer | None] = []
    for index, item in enumerate(items):
        key = _customer_key(item)
        customer = found.get(key) if key else None
        if customer is None and key and key[0] == "external" and item.get("customer_email"):
            email_key = ("email", item["customer_email"].lower())
            customer = found.get(email_key) or new_customers.get(email_key)
        if customer is None and key and key[0] != "id":
            customer = new_customers.get(key)
            if customer is None:
                customer = Customer(
                    email=item.get("customer_email", ""),
                    external_source=item.get("customer_external_source", "")
                    if key[0] == "external"
                    else "",
                    external_id=item.get("customer_external_id", ""),
                    name=item.get("customer_name", ""),
                )
                try:
                    customer.full_clean(validate_unique=False, validate_constraints=False)
                except ValidationError as e:
                    errors += [(i, f"customer_{f}", m) for i, f, m in _error_triples(index, e)]
                new_customers[key] = customer
                if customer.email:
                    new_customers[("email", customer.email.lower())] = customer
        if customer is None:
            field = "customer_id" if key else "customer"
            message = (
                "No customer with this id."
                if key
                else "Name the customer by customer_id, customer_email or customer_external_id."
            )
            errors.append((index, field, message))
        customer_of.append(customer)

    created = list({id(c): c for c in new_customers.values()}.values())
    if created and not errors:
        for customer in created:
            customer.search_text_set()
        Customer.objects.bulk_create(created, batch_size=_BATCH)

    results: list[PurchaseWritten | None] = []
    new: list[Purchase] = []
    seen: dict[tuple[str, str], PurchaseWritten] = {}
    for index, (item, customer) in enumerate(zip(items, customer_of, strict=True)):
        order_key = (
            (item.get("external_source", ""), item["external_order_id"])
            if item.get("external_order_id")
            else None
        )
        if order_key in existing:
            results.append(PurchaseWritten(existing[order_key], created=False))
            continue
        if order_key in seen:
            results.append(PurchaseWritten(seen[order_key].purchase, created=False))
            continue
        fields = {k: v for k, v in item.items() if not k.startswith("customer") and v is not None}
        purchase = Purchase(customer=customer, **fields)
        try:
            purchase_check(purchase=purchase)
            purchase.full_clean(
                exclude=["customer"], validate_unique=False, validate_constraints=False
            )
        except ValidationError as e:
            errors += _error_triples(index, e)
        written = PurchaseWritten(purchase, created=True)
        if order_key:
            seen[order_key] = written
        new.append(purchase)
        results.append(written)
    if errors:
        raise ItemErrors(errors)
    for purchase in new:
        purchase.customer_id = purchase.customer.pk
    Purchase.objects.bulk_create(new, batch_size=_BATCH)
    customer_stats_refresh(customer_ids={p.customer_id for p in new})
    return results


def webhook_event_receive(
    *, source: str, event_id: str, type: str, payload: dict[str, Any]
) -> WebhookEvent | None:
    """Store a webhook event once; None when this event id was received before.

    Side effects: inserts one WebhookEvent.
    """
    try:
        with transaction.atomic():
            return WebhookEvent.objects.create(
                source=source, event_id=event_id, type=type, payload=payload
            )
    except IntegrityError:
        if WebhookEvent.objects.filter(source=source, event_id=event_id).exists():
            return None
        raise


def webhook_event_process(*, event: WebhookEvent, items: Iterable[dict[str, Any]]) -> None:
    """Record the purchases an event carries, or its error; the event is marked either way.

    Side effects: purchases and customers (see purchases_write); event.processed_at or
    event.error.
    """
    try:
        with transaction.atomic():
            written = purchases_write(items=list(items))
    except ItemErrors as e:
        event.error = "; ".join(f"{field}: {message}" for _, field, message in e.errors)
    except ValueError as e:  # a payload missing what its type documents
        event.error = str(e)
    else:
        event.processed_at = timezone.now()
        audit.info(
            "webhook %s %s %s purchases=%s",
            event.source,
            event.type,
            event.event_id,
            [w.purchase.pk for w in written],
        )
    event.save(update_fields=["processed_at", "error"])
