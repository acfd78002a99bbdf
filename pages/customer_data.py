"""A customer's privacy rights: everything held about them in one file, and their erasure.

Both walk every model that points at a customer (Customer._meta.related_objects), so a table
added later is exported and erased without anyone remembering to add it here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.apps import apps
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from django.db.models import F, Q, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from crm.audit import (
    ERASED,
    Actor,
    audit_customer_anonymise,
    audit_record,
)
from crm.cache import pages_cache_changed
from crm.models import AuditEntry, Customer
from segmentation.feature_store import customer_features_get, customer_figures
from segmentation.models import CustomerFeatures, Membership, Segment

FORMAT_VERSION = 1
# Identifiers shorter than this are not searched for in free text: "Al" is in too many words.
MIN_NAME_LENGTH = 4
MIN_PHONE_LENGTH = 6


def _related_rows(customer: Customer) -> list[tuple[str, models.QuerySet]]:
    """(section name, the customer's rows) for every model that points at a customer."""
    sections = []
    for relation in Customer._meta.related_objects:
        model = relation.related_model
        name = relation.get_accessor_name()  # purchases, feedback, membership...
        if relation.many_to_many:
            continue  # tags, below
        rows = model._default_manager.filter(**{relation.field.name: customer.pk})
        pointers = [
            f.name
            for f in model._meta.concrete_fields
            if f.is_relation and f.related_model is not Customer
        ]
        rows = rows.select_related(*pointers).order_by("pk")
        sections.append((name, rows))
    return sections


def _row_dict(obj: models.Model) -> dict[str, Any]:
    """A row's columns, each foreign key with the text of what it points at."""
    out: dict[str, Any] = {}
    for f in obj._meta.concrete_fields:
        value = getattr(obj, f.attname)
        out[f.attname] = value
        if f.is_relation and value is not None and f.related_model is not Customer:
            related = getattr(obj, f.name, None)
            out[f.name] = str(related) if related is not None else None
    return out


def customer_data(*, customer: Customer) -> dict[str, Any]:
    """Everything held about one customer: the profile, every row that points at them
    (purchases, feedback, activities, follow-ups, offers and deliveries, segment and its
    history, stored figures, predictions...) and the audit entries about them."""
    profile = {f.attname: getattr(customer, f.attname) for f in customer._meta.concrete_fields}
    data: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "exported_at": timezone.now(),
        "customer": profile,
        "tags": sorted(customer.tags.values_list("name", flat=True)),
    }
    for name, rows in _related_rows(customer):
        data[name] = [_row_dict(obj) for obj in rows]
    figures = customer_features_get(customer_id=customer.pk)
    if figures is not None:
        # The row keeps the sales its days count from; say the days too, as the customer
        # page and the export give them: as of the run.
        extra = customer_figures(figures)
        data["segment_features"] = [{**row, **extra} for row in data["segment_features"]]
    data["audit_entries"] = list(
        AuditEntry.objects.filter(object_type="crm.customer", object_id=str(customer.pk))
        .order_by("at", "id")
        .values("at", "username", "action", "detail", "count")
    )
    return data


def customer_data_json(*, customer: Customer, actor: Actor) -> bytes:
    """The customer's data as one JSON file. Side effect: an "exported" audit entry."""
    data = customer_data(customer=customer)
    audit_record(
        actor=actor,
        action=AuditEntry.Action.EXPORTED,
        obj=customer,
        count=1,
        detail="all data held about this customer",
    )
    return json.dumps(data, cls=DjangoJSONEncoder, indent=2, ensure_ascii=False).encode()


# --- erasure ---------------------------------------------------------------------------------


@dataclass
class Erasure:
    customer_id: int
    rows_deleted: dict[str, int] = field(default_factory=dict)
    audit_entries_anonymised: int = 0
    other_rows_scrubbed: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """In words, without any personal data (it goes to the audit trail)."""
        deleted = sum(self.rows_deleted.values())
        scrubbed = sum(self.other_rows_scrubbed.values())
        return (
            f"{deleted} rows deleted, {self.audit_entries_anonymised} audit entries and "
            f"{scrubbed} other rows anonymised"
        )


def customer_identifiers(customer: Customer) -> list[str]:
    """The texts that name this customer, searched for in free text when they are erased."""
    found = []
    if customer.email:
        found.append(customer.email)
    name = customer.name.strip()
    if len(name) >= MIN_NAME_LENGTH:
        found.append(name)
    phone = customer.phone.strip()
    if len(re.sub(r"\D", "", phone)) >= MIN_PHONE_LENGTH:
        found.append(phone)
    return found


def _segment_figures_without(customer: Customer) -> None:
    """Take the customer out of their segment's precomputed size and revenue, as the next run
    would, so segment pages add up until then."""
    membership = Membership.objects.filter(customer_id=customer.pk).first()
    if membership is None or membership.segment_id is None:
        return
    # The run summed each member's figure as it stored it (refunds may make it negative).
    figures = CustomerFeatures.objects.filter(customer_id=customer.pk).first()
    revenue = Decimal(str(round(figures.monetary_total, 2))) if figures is not None else 0
    Segment.objects.filter(pk=membership.segment_id, size__gt=0).update(
        size=F("size") - 1, revenue=F("revenue") - revenue
    )


def _text_fields(model: type[models.Model]) -> list[models.Field]:
    return [
        f
        for f in model._meta.concrete_fields
        if isinstance(f, models.CharField | models.TextField | models.JSONField)
        and not f.is_relation
    ]


def _others_scrub(identifiers: list[str]) -> dict[str, int]:
    """Replace the identifiers in every text column of the tables that do not point at a
    customer (their rows of this customer are deleted): offers' texts, webhook payloads,
    the admin's own log... The audit trail and other customers are left to their own rules."""
    linked = {r.related_model for r in Customer._meta.related_objects}
    scrubbed: dict[str, int] = {}
    for model in apps.get_models():
        if model in linked or model in (Customer, AuditEntry) or model._meta.proxy:
            continue
        if not model._meta.managed:
            continue
        fields = _text_fields(model)
        if not fields:
            continue
        manager = model._default_manager
        annotated = manager.annotate(
            **{f"_t_{f.attname}": Cast(f.attname, TextField()) for f in fields}
        )
        match = Q()
        for f in fields:
            for text in identifiers:
                match |= Q(**{f"_t_{f.attname}__icontains": text})
                if isinstance(f, models.JSONField):
                    # SQLite keeps JSON with non-ASCII characters escaped ("\u00e9").
                    escaped = json.dumps(text)[1:-1]
                    match |= Q(**{f"_t_{f.attname}__icontains": escaped})
        count = 0
        for obj in annotated.filter(match):
            for f in fields:
                value = getattr(obj, f.attname)
                setattr(obj, f.attname, _scrubbed(value, identifiers))
            obj.save(update_fields=[f.attname for f in fields])
            count += 1
        if count:
            scrubbed[model._meta.label_lower] = count
    return scrubbed


def _scrubbed(value: Any, identifiers: list[str]) -> Any:
    if value is None:
        return value
    if isinstance(value, str):
        for identifier in sorted(identifiers, key=len, reverse=True):
            value = re.sub(re.escape(identifier), ERASED, value, flags=re.IGNORECASE)
        return value
    # JSON: scrub its text (as the database casts it: characters unescaped) and read it back.
    text = json.dumps(value, cls=DjangoJSONEncoder, ensure_ascii=False)
    return json.loads(_scrubbed(text, identifiers))


def customer_erase(*, customer: Customer, actor: Actor) -> Erasure:
    """Erase a customer: delete them and every row that points at them (purchases, feedback,
    activities, follow-ups, offer responses and deliveries, membership, segment history,
    stored figures, predictions), anonymise the audit entries about or naming them, and
    replace their name, e-mail and phone wherever else they appear in text.

    Their segment's size and revenue drop by them; offer results are counted from the
    remaining responses. One transaction; side effects: an "erased" audit entry without
    personal data, the pages' cached figures invalidated.
    """
    erasure = Erasure(customer_id=customer.pk)
    identifiers = customer_identifiers(customer)
    with transaction.atomic():
        customer = Customer.objects.select_for_update().get(pk=customer.pk)
        _segment_figures_without(customer)
        for name, rows in _related_rows(customer):
            count = rows.count()
            if count:
                erasure.rows_deleted[name] = count
        _, per_model = customer.delete()
        erasure.rows_deleted["customers"] = per_model.get(Customer._meta.label, 0)
        erasure.audit_entries_anonymised = audit_customer_anonymise(
            customer_id=erasure.customer_id, identifiers=identifiers
        )
        if identifiers:
            erasure.other_rows_scrubbed = _others_scrub(identifiers)
        audit_record(
            actor=actor,
            action=AuditEntry.Action.ERASED,
            object_type="crm.customer",
            object_id=str(erasure.customer_id),
            detail=erasure.summary(),
        )
        transaction.on_commit(pages_cache_changed)
    return erasure
