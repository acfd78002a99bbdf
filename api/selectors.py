"""Reads behind the API."""

from datetime import datetime

from django.db.models import QuerySet
from django.db.models.functions import Lower

from crm.models import Customer


def customer_list(
    *,
    email: str | None = None,
    external_source: str | None = None,
    external_id: str | None = None,
    updated_since: datetime | None = None,
    segment: int | None = None,
) -> QuerySet[Customer]:
    """Customers with their segment and tags, filtered by whichever arguments are given."""
    queryset = Customer.objects.select_related("membership").prefetch_related("tags")
    if email is not None:
        queryset = queryset.alias(email_lower=Lower("email")).filter(email_lower=email.lower())
    if external_id is not None:
        queryset = queryset.filter(external_id=external_id)
    if external_source is not None:
        queryset = queryset.filter(external_source=external_source)
    if updated_since is not None:
        queryset = queryset.filter(updated_at__gte=updated_since)
    if segment is not None:
        queryset = queryset.filter(membership__segment_id=segment)
    return queryset


def customer_find(
    *, external_source: str = "", external_id: str = "", email: str = ""
) -> Customer | None:
    """The customer with this (external_source, external_id), else with this e-mail."""
    customer = None
    if external_id:
        customer = Customer.objects.filter(
            external_source=external_source, external_id=external_id
        ).first()
    if customer is None and email:
        customer = customer_list(email=email).first()
    return customer
