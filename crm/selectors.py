"""Reads for customers: index-backed search and the customer timeline."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import connection
from django.db.models import Count, Q, QuerySet
from django.db.models.functions import Lower
from django.urls import reverse

from crm.models import NPS_DETRACTOR, NPS_PROMOTER, Customer, Feedback, Purchase

# Higher than any code point: "abc" <= s < "abc" + _TOP holds exactly for strings that
# start with "abc" under a binary collation (SQLite's default).
_TOP = "\U0010ffff"


def feedback_nps_counts() -> dict[str, Count]:
    """Aggregates of Feedback rows for ``crm.metrics.nps_value``: answers, promoters and
    detractors, to pass to ``.aggregate(**...)`` or ``.annotate(**...)``."""
    return {
        "nps_answers": Count("nps"),
        "promoters": Count("pk", filter=NPS_PROMOTER),
        "detractors": Count("pk", filter=NPS_DETRACTOR),
    }


def _prefix_q(lookup: str, prefix: str) -> Q:
    """Strings starting with `prefix`, in a form the database answers from a btree index.

    PostgreSQL uses the text_pattern_ops indexes for LIKE 'abc%'; SQLite does not use an
    index for LIKE on an expression, but does for a range on the same expression.
    """
    if connection.vendor == "postgresql":
        return Q(**{f"{lookup}__startswith": prefix})
    return Q(**{f"{lookup}__gte": prefix, f"{lookup}__lt": prefix + _TOP})


def customer_search(*, queryset: QuerySet[Customer], term: str) -> QuerySet[Customer]:
    """Customers whose name, e-mail or phone starts with the term (case-insensitively).

    Prefix search, not substring: it stays an index lookup at a million customers on both
    databases. A term with "@" searches e-mails; one made of digits, spaces and + - ( )
    searches phones; anything else searches names and e-mails. Any term also finds the
    customer whose external id it is, exactly.
    """
    term = " ".join(term.split())
    if not term:
        return queryset
    lowered = term.lower()
    queryset = queryset.alias(name_lower=Lower("name"), email_lower=Lower("email"))
    by_external_id = Q(external_id=term)
    if "@" in term:
        return queryset.filter((~Q(email="") & _prefix_q("email_lower", lowered)) | by_external_id)
    if re.fullmatch(r"[+\d][\d\s()+-]*", term):
        return queryset.filter(_prefix_q("phone", term) | by_external_id)
    return queryset.filter(
        _prefix_q("name_lower", lowered)
        | (~Q(email="") & _prefix_q("email_lower", lowered))
        | by_external_id
    )


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
