"""The audit trail: record who did what with customer data; prune it after its retention."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from ipaddress import ip_address

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone

from config.client_ip import client_ip
from crm.models import AuditEntry


@dataclass(frozen=True)
class Actor:
    """Who acts and from where; user None for commands and scheduled tasks."""

    user: object | None = None
    address: str | None = None


SYSTEM = Actor()


def audit_actor(request: HttpRequest) -> Actor:
    address = client_ip(request)
    try:
        ip_address(address)
    except ValueError:
        address = None  # "unknown": no address to store
    user = getattr(request, "user", None)
    return Actor(user=user if user is not None and user.is_authenticated else None, address=address)


def audit_record(
    *,
    actor: Actor,
    action: str,
    obj: models.Model | None = None,
    object_type: str = "",
    object_id: str = "",
    count: int | None = None,
    detail: str = "",
) -> AuditEntry:
    """Append one entry. Side effect: one INSERT (in the caller's transaction, if any)."""
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or str(obj.pk)
    user = actor.user
    return AuditEntry.objects.create(
        user_id=getattr(user, "pk", None),
        username=getattr(user, "username", "")[:150] if user else "",
        address=actor.address,
        action=action,
        object_type=object_type[:100],
        object_id=str(object_id)[:100],
        object_repr=str(obj)[:200] if obj is not None else "",
        count=count,
        detail=detail,
    )


def audit_prune(*, now=None) -> int:
    """Delete the entries older than AUDIT_RETENTION_DAYS; returns how many went."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.AUDIT_RETENTION_DAYS)
    deleted, _ = AuditEntry.objects.filter(at__lt=cutoff).delete()
    return deleted


ERASED = "[erased]"


def erased_customer_label(customer_id: int) -> str:
    """What the trail says instead of an erased customer's name."""
    return f"erased customer #{customer_id}"


def audit_customer_anonymise(*, customer_id: int, identifiers: list[str]) -> int:
    """Rewrite the entries that name an erased customer: those about them say
    "erased customer #<id>", and each identifier (name, e-mail, phone) in any entry's
    description or detail becomes "[erased]". Who did what, when and from where stays.

    The one UPDATE the database allows on the trail (crm migration 0021). Returns the
    entries rewritten.
    """
    label = erased_customer_label(customer_id)
    about = Q(object_type="crm.customer", object_id=str(customer_id))
    naming = Q()
    for text in identifiers:
        naming |= Q(object_repr__icontains=text) | Q(detail__icontains=text)
    rewritten = 0
    for entry in AuditEntry.objects.filter(about | naming):
        fields = {}
        is_about = entry.object_type == "crm.customer" and entry.object_id == str(customer_id)
        if entry.object_repr and (is_about or _names(entry.object_repr, identifiers)):
            fields["object_repr"] = label
        detail = _erased(entry.detail, identifiers)
        if detail != entry.detail:
            fields["detail"] = detail
        if fields.get("object_repr") == entry.object_repr:
            del fields["object_repr"]
        if fields:
            AuditEntry.objects.filter(pk=entry.pk).update(**fields)
            rewritten += 1
    return rewritten


def _names(text: str, identifiers: list[str]) -> bool:
    folded = text.casefold()
    return any(i.casefold() in folded for i in identifiers)


def _erased(text: str, identifiers: list[str]) -> str:
    """The text with every identifier, in any case, replaced by "[erased]"."""
    for identifier in sorted(identifiers, key=len, reverse=True):
        text = re.sub(re.escape(identifier), ERASED, text, flags=re.IGNORECASE)
    return text
