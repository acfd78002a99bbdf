"""Reads behind the customer and segment pages: each page calls one of these."""

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.core.cache import cache
from django.db.models import Avg, Count, Max, Q
from django.utils import timezone

from crm.cache import pages_cache_version
from crm.models import Activity, Customer, Feedback, FollowUp, Purchase, Tag
from crm.money import money_text
from crm.selectors import business_get
from offers import services as offer_services
from offers.metrics import SegmentResults, segment_results
from offers.models import OfferResponse
from segmentation import selectors as segment_selectors
from segmentation.feature_store import (
    customer_features_get,
    customer_figures,
    segment_reason_words,
)
from segmentation.models import (
    Membership,
    Segment,
    SegmentationRun,
    SegmentMembershipChange,
    SegmentTransition,
)

RECENT_ROWS = 20
MOVERS_SHOWN = 8
RESULTS_CACHE_SECONDS = 300


@dataclass(frozen=True)
class CustomerPage:
    """Everything the customer page shows about one customer."""

    customer: Customer
    membership: Membership | None
    tags: list[Tag]
    purchases: list[Purchase]
    feedback: list[Feedback]
    scores: dict  # answers, avg_rating, avg_nps over all the customer's feedback
    history: list[SegmentMembershipChange]
    responses: list[OfferResponse]
    response_counts: dict  # presented (held-out customers aside), accepted
    ranked: list[offer_services.RankedOffer]
    rhythm_days: float | None  # mean days between purchases
    average_order: Decimal | None
    activities: list[Activity] = field(default_factory=list)
    follow_ups: list[FollowUp] = field(default_factory=list)  # open ones, soonest first
    timeline: list["TimelineEvent"] = field(default_factory=list)


@dataclass(frozen=True)
class TimelineEvent:
    """One line of the customer's timeline."""

    at: datetime
    kind: str  # purchase | refund | feedback | offer | segment | call | email | note
    title: str
    detail: str = ""


def customers_exist() -> bool:
    """Whether anyone was imported or added yet: an empty database gets a welcome."""
    return Customer.objects.exists()


def customer_page(*, customer: Customer, recent: int = RECENT_ROWS) -> CustomerPage:
    """The customer's latest purchases, feedback, segment changes and offers, their scores,
    and the offers ranked for them. Bounded queries whatever the customer's history (read
    ``customer`` with select_related("membership__segment"))."""
    rhythm_days = None
    if customer.purchase_count > 1 and customer.first_purchase_at and customer.last_purchase_at:
        span = customer.last_purchase_at - customer.first_purchase_at
        rhythm_days = span.total_seconds() / 86400 / (customer.purchase_count - 1)
    purchases = list(customer.purchases.order_by("-purchased_at", "-id")[:recent])
    feedback = list(customer.feedback.order_by("-created_at", "-id")[:recent])
    history = list(segment_selectors.customer_segment_history(customer=customer, limit=recent))
    responses = list(
        customer.offer_responses.select_related("offer", "segment").order_by(
            "-presented_at", "-id"
        )[:recent]
    )
    activities = list(
        customer.activities.select_related("created_by").order_by("-happened_at", "-id")[:recent]
    )
    return CustomerPage(
        customer=customer,
        membership=segment_selectors.customer_membership(customer=customer),
        tags=list(customer.tags.all()),
        purchases=purchases,
        feedback=feedback,
        scores=customer.feedback.aggregate(
            answers=Count("pk"), avg_rating=Avg("rating"), avg_nps=Avg("nps")
        ),
        history=history,
        responses=responses,
        response_counts=customer.offer_responses.aggregate(
            presented=Count("pk", filter=~Q(outcome=OfferResponse.Outcome.HOLDOUT)),
            accepted=Count("pk", filter=Q(outcome=OfferResponse.Outcome.ACCEPTED)),
        ),
        ranked=offer_services.offers_ranked_for_customer(customer=customer),
        rhythm_days=rhythm_days,
        average_order=(
            customer.total_spent / customer.purchase_count if customer.purchase_count else None
        ),
        activities=activities,
        follow_ups=list(customer.follow_ups.open().order_by("due_on", "id")[:recent]),
        timeline=customer_timeline_events(
            purchases=purchases,
            feedback=feedback,
            history=history,
            responses=responses,
            activities=activities,
            limit=recent * 2,
        ),
    )


def customer_timeline_events(
    *,
    purchases: list[Purchase],
    feedback: list[Feedback],
    history: list[SegmentMembershipChange],
    responses: list[OfferResponse],
    activities: list[Activity],
    limit: int,
) -> list[TimelineEvent]:
    """Purchases, feedback, offers, segment moves and activities as one list, newest first
    (from rows the page has already read: no query of its own)."""
    events = [
        TimelineEvent(
            p.purchased_at,
            p.kind,
            f"{p.get_kind_display()}: {money_text(p.amount, p.currency)}",
            " · ".join(x for x in (p.product, p.get_channel_display() or "") if x),
        )
        for p in purchases
    ]
    events += [
        TimelineEvent(f.created_at, "feedback", f"Feedback: {f}", f.comment) for f in feedback
    ]
    events += [
        TimelineEvent(
            r.presented_at,
            "offer",
            f"Offer “{r.offer.title}”: {r.get_outcome_display().lower()}",
        )
        for r in responses
    ]
    events += [
        TimelineEvent(
            h.changed_at,
            "segment",
            f"Segment: {h.from_segment or 'none'} → {h.to_segment or 'none'}",
            h.reason,
        )
        for h in history
    ]
    events += [
        TimelineEvent(
            a.happened_at,
            a.kind,
            a.get_kind_display() + (f" by {a.created_by.get_username()}" if a.created_by else ""),
            a.summary,
        )
        for a in activities
    ]
    events.sort(key=lambda e: e.at, reverse=True)
    return events[:limit]


def segment_results_cached(*, segment: Segment) -> SegmentResults:
    """``segment_results``, cached briefly: its satisfaction and retention figures read every
    member of the segment, which must not happen on every page view of a big segment. The
    key changes with the run, new responses and feedback, and every service's writes
    (``crm.cache.pages_cache_changed``)."""
    bucket = int(timezone.now().timestamp()) // RESULTS_CACHE_SECONDS
    version = (
        pages_cache_version(),
        OfferResponse.objects.aggregate(m=Max("pk"))["m"] or 0,
        Feedback.objects.aggregate(m=Max("pk"))["m"] or 0,
    )
    key = "segment-results:{}:{}:{}:{}:{}:{}".format(
        segment.pk, segment.last_run_id, bucket, *version
    )
    results = cache.get(key)
    if results is None:
        results = segment_results(segment=segment)
        cache.set(key, results, RESULTS_CACHE_SECONDS)
    return results


def segment_movements(*, segment: Segment, run: SegmentationRun | None) -> dict:
    """What the run moved into and out of the segment: flows largest first, their totals,
    and a few customers behind the biggest flow each way."""
    if run is None:
        return {"run": None, "into": [], "out_of": [], "in_count": 0, "out_count": 0}
    flows = list(
        SegmentTransition.objects.filter(run=run)
        .filter(Q(from_segment=segment) | Q(to_segment=segment))
        .select_related("from_segment", "to_segment")
    )
    into = [f for f in flows if f.to_segment_id == segment.pk and f.from_segment_id != segment.pk]
    out_of = [f for f in flows if f.from_segment_id == segment.pk and f.to_segment_id != segment.pk]
    into = sorted(into, key=lambda f: -f.count)
    out_of = sorted(out_of, key=lambda f: -f.count)
    movers_in = movers_out = []
    if into:
        movers_in = list(
            segment_selectors.segment_movers(
                run=run,
                from_segment_id=into[0].from_segment_id,
                to_segment_id=segment.pk,
                limit=MOVERS_SHOWN,
            )
        )
    if out_of:
        movers_out = list(
            segment_selectors.segment_movers(
                run=run,
                from_segment_id=segment.pk,
                to_segment_id=out_of[0].to_segment_id,
                limit=MOVERS_SHOWN,
            )
        )
    return {
        "run": run,
        "into": into,
        "out_of": out_of,
        "in_count": sum(f.count for f in into),
        "out_count": sum(f.count for f in out_of),
        "movers_in": movers_in,
        "movers_out": movers_out,
    }


def segment_why(*, customer: Customer, segment: Segment | None) -> dict | None:
    """Why the customer is in their segment, in words and numbers: the figures the last run
    segmented them on beside the segment's typical member (None before a run placed them)."""
    figures = customer_features_get(customer_id=customer.pk)
    if figures is None or segment is None:
        return None
    run = segment_selectors.run_latest()
    values = customer_figures(figures)
    as_of = values.pop("as_of")
    return {
        "as_of": as_of,
        "sentences": segment_reason_words(
            figures=values,
            typical=segment.profile_values or {},
            rhythm_days=(run.params or {}).get("rhythm_days") if run else None,
            currency=business_get().currency,
            as_of=as_of,
            last_sale=figures.last_purchase_at,
            first_sale=figures.first_purchase_at,
        ),
    }
