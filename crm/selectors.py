"""Reads for customers: index-backed search and the customer timeline."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Count, Q, QuerySet
from django.urls import reverse

from crm.models import NPS_DETRACTOR, NPS_PROMOTER, Customer, Feedback, Purchase
from crm.search import search_needle


def feedback_nps_counts() -> dict[str, Count]:
    """Aggregates of Feedback rows for ``crm.metrics.nps_value``: answers, promoters and
    detractors, to pass to ``.aggregate(**...)`` or ``.annotate(**...)``."""
    return {
        "nps_answers": Count("nps"),
        "promoters": Count("pk", filter=NPS_PROMOTER),
        "detractors": Count("pk", filter=NPS_DETRACTOR),
    }


def customer_search(*, queryset: QuerySet[Customer], term: str) -> QuerySet[Customer]:
    """Customers whose name or e-mail contains the term, case- and accent-insensitively, or
    whose phone ends in (or contains) the last digits of a phone-like term of 7+ digits.

    Substring search on the folded Customer.search_text: PostgreSQL answers it from a
    trigram GIN index (LIKE '%...%' uses gin_trgm_ops); SQLite scans the column. Any term
    also finds the customer whose external id it is, exactly.
    """
    term = " ".join(term.split())
    if not term:
        return queryset
    needle = search_needle(term)
    if not needle:
        return queryset.filter(external_id=term)
    # `contains`, not `icontains`: the column is already folded, and PostgreSQL's
    # UPPER(...) LIKE UPPER(...) could not use the trigram index.
    return queryset.filter(Q(search_text__contains=needle) | Q(external_id=term))


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    kind: str  # "purchase" | "refund" | "feedback"
    title: str
    detail: str
    amount: Decimal | None
    url: str


def customer_timeline(*, customer: Customer, limit: int = 30) -> list[TimelineEntry]:
    """The customer's latest purchases and feedback, merged, newest first (two queries)."""
    purchases = Purchase.objects.filter(customer=customer).order_by("-purchased_at", "-id")[:limit]
    feedback = Feedback.objects.filter(customer=customer).order_by("-created_at", "-id")[:limit]
    entries = [
        TimelineEntry(
            at=p.purchased_at,
            kind=p.kind,
            title=f"{p.get_kind_display()}: {p.amount} {p.currency}",
            detail=" · ".join(
                x for x in (p.product, p.category, p.get_channel_display() or "") if x
            ),
            amount=p.amount,
            url=reverse("admin:crm_purchase_change", args=[p.pk]),
        )
        for p in purchases
    ]
    entries += [
        TimelineEntry(
            at=f.created_at,
            kind="feedback",
            title=f"Feedback: {f}",
            detail=f.comment,
            amount=None,
            url=reverse("admin:crm_feedback_change", args=[f.pk]),
        )
        for f in feedback
    ]
    entries.sort(key=lambda e: e.at, reverse=True)
    return entries[:limit]
