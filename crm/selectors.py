"""Reads for customers: index-backed search and the customer timeline."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache
from django.db import connections
from django.db.models import Count, Q, QuerySet, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import StrIndex
from django.urls import reverse

from crm import search_index
from crm.models import (
    NPS_DETRACTOR,
    NPS_PROMOTER,
    BusinessSettings,
    Customer,
    Feedback,
    Purchase,
)
from crm.search import search_needle
from crm.search_index import (
    PHONE_TAIL_DIGITS,
    SearchTextTail,
    search_index_many_match,
    search_index_match_sql,
)

BUSINESS_CACHE_KEY = "crm:business"
# With the default per-process cache, another web worker keeps the old values this long after
# the owner saves the Settings page (a shared cache, CACHE_URL, follows at once).
BUSINESS_CACHE_SECONDS = 60


@dataclass(frozen=True)
class Business:
    """What every page, e-mail and public page says about the business itself."""

    name: str
    currency: str
    time_zone: str


def business_from_environment() -> Business:
    """The business as the environment describes it: the Settings page's first values, and
    what pages fall back on while the database cannot be read."""
    return Business(
        name=settings.BUSINESS_NAME,
        currency=settings.DEFAULT_CURRENCY,
        time_zone=settings.TIME_ZONE,
    )


def business_get() -> Business:
    """The business's name, currency and time zone: the Settings page's row, or the
    environment's values (BUSINESS_NAME, DEFAULT_CURRENCY, TIME_ZONE) while there is none.

    Cached: most requests read it (the time zone middleware, the currency of every page)
    without a query; crm.services.business_settings_update forgets the cached copy.
    """
    business = cache.get(BUSINESS_CACHE_KEY)
    if business is None:
        row = BusinessSettings.objects.filter(pk=BusinessSettings.SINGLE_ID).first()
        business = (
            Business(name=row.name, currency=row.currency, time_zone=row.time_zone)
            if row
            else business_from_environment()
        )
        cache.set(BUSINESS_CACHE_KEY, business, BUSINESS_CACHE_SECONDS)
    return business


def feedback_nps_counts() -> dict[str, Count]:
    """Aggregates of Feedback rows for ``crm.metrics.nps_value``: answers, promoters and
    detractors, to pass to ``.aggregate(**...)`` or ``.annotate(**...)``."""
    return {
        "nps_answers": Count("nps"),
        "promoters": Count("pk", filter=NPS_PROMOTER),
        "detractors": Count("pk", filter=NPS_DETRACTOR),
    }


def customer_search(
    *, queryset: QuerySet[Customer], term: str, walk_when_common: bool = True
) -> QuerySet[Customer]:
    """Customers whose name or e-mail contains the term, case- and accent-insensitively, or
    whose phone ends with the last digits of a phone-like term of 7+ digits (when nobody's
    does: whose phone contains them).

    Substring search on the folded Customer.search_text: PostgreSQL answers it from a
    trigram GIN index (LIKE '%...%' uses gin_trgm_ops), SQLite from its FTS5 trigram copy
    (crm.search_index) for needles of 3+ characters matching up to DENSE_MATCHES customers,
    checking the column row by row otherwise.
    Any term also finds the customer whose external id it is, exactly.

    ``walk_when_common=False`` for a caller that fences the matches itself (the admin takes
    the first SEARCH_LIMIT ids, then orders them): SQLite then always reads its index.
    """
    term = " ".join(term.split())
    if not term:
        return queryset
    needle = search_needle(term)
    if not needle:
        return queryset.filter(external_id=term)
    if needle.isdigit() and len(needle) >= PHONE_TAIL_DIGITS:
        # A number: the people whose phone ends with it, from the index on the last digits;
        # only if nobody's does, every phone containing it (a fragment of a number).
        ends_with = Q(phone_tail=needle[-PHONE_TAIL_DIGITS:], search_text__endswith=needle)
        by_phone = queryset.alias(phone_tail=SearchTextTail("search_text")).filter(
            ends_with | Q(external_id=term)
        )
        if by_phone.filter(ends_with).exists():
            return by_phone
    sqlite = connections[queryset.db].vendor == "sqlite"
    match = search_index_match_sql(needle) if sqlite else None
    if match and not (walk_when_common and search_index_many_match(match, using=queryset.db)):
        found = Q(pk__in=RawSQL(*match))
    elif not sqlite and walk_when_common and _many_match(queryset, needle):
        # PostgreSQL rates any LIKE '%…%' at about a hundred rows, so it fetches and sorts
        # every match even when a page of them turns up in the list's first thousand rows
        # (a surname shared by 20,000 of a million: 160 ms, its rows read from disk). The
        # same test the index cannot answer makes it walk the list's own order instead.
        return queryset.alias(needle_at=StrIndex("search_text", Value(needle))).filter(
            Q(needle_at__gt=0) | Q(external_id=term)
        )
    else:
        # `contains`, not `icontains`: the column is already folded, and PostgreSQL's
        # UPPER(...) LIKE UPPER(...) could not use the trigram index. (SQLite: a needle too
        # short for its index, or one so common that the list's order finds a page soon.)
        found = Q(search_text__contains=needle)
    return queryset.filter(found | Q(external_id=term))


def _many_match(queryset: QuerySet[Customer], needle: str) -> bool:
    """Whether more than search_index.DENSE_MATCHES customers' search text contains
    ``needle`` (counted through the trigram index, no further)."""
    many = search_index.DENSE_MATCHES
    matches = Customer.objects.using(queryset.db).filter(search_text__contains=needle)
    return matches.order_by().values("pk")[: many + 1].count() > many


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
