"""The audit trail: record who did what with customer data; prune it after its retention."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from ipaddress import ip_address

from django.conf import settings
from django.db import models
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
