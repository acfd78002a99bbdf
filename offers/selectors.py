"""Reads of offers that pages, tasks and admin share."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from offers.models import TREATED_OUTCOMES, Delivery, Offer, OfferResponse
from segmentation.models import Segment


def offers_with_counts() -> QuerySet[Offer]:
    """Offers annotated with presented, accepted and held-out counts (one query)."""
    outcome = OfferResponse.Outcome
    return Offer.objects.annotate(
        presented=Count("responses", filter=Q(responses__outcome__in=TREATED_OUTCOMES)),
        accepted=Count("responses", filter=Q(responses__outcome=outcome.ACCEPTED)),
        holdout=Count("responses", filter=Q(responses__outcome=outcome.HOLDOUT)),
    )


def offers_open_for_segment(*, segment: Segment, on: date | None = None) -> QuerySet[Offer]:
    """Offers open on ``on`` (today by default) and meant for the segment, newest first."""
    return (
        Offer.objects.open_on(on or timezone.localdate())
        .targeting([segment.pk])
        .order_by("-created_at", "-id")
    )


@dataclass(frozen=True)
class Acceptance:
    """How one offer fared in one segment: treated customers and those who accepted."""

    accepted: int = 0
    presented: int = 0  # presented, accepted or declined (held-out customers are not counted)


def acceptance_by_segment_offer(
    *, segment_ids: Iterable[int], offer_ids: Iterable[int] | None = None
) -> dict[tuple[int, int], Acceptance]:
    """Acceptance per (segment id, offer id), from the responses recorded with that segment.

    ``offer_ids`` None means every offer. Pairs with no treated customer are absent (read
    them with ``.get(key, Acceptance())``). One grouped query.
    """
    rows = OfferResponse.objects.filter(
        segment_id__in=list(segment_ids), outcome__in=TREATED_OUTCOMES
    )
    if offer_ids is not None:
        rows = rows.filter(offer_id__in=list(offer_ids))
    return {
        (row["segment_id"], row["offer_id"]): Acceptance(
            accepted=row["accepted"], presented=row["presented"]
        )
        for row in rows.values("segment_id", "offer_id")
        .annotate(
            presented=Count("pk"),
            accepted=Count("pk", filter=Q(outcome=OfferResponse.Outcome.ACCEPTED)),
        )
        .order_by()
    }


def offer_delivery_counts(*, offer: Offer) -> dict[str, int]:
    """The offer's e-mail deliveries per status (every status present, 0 when none)."""
    counts = dict.fromkeys(Delivery.Status.values, 0)
    rows = Delivery.objects.filter(offer=offer).values("status").annotate(n=Count("pk"))
    counts.update({row["status"]: row["n"] for row in rows.order_by()})
    return counts


def customer_email_bounce(*, customer) -> Delivery | None:
    """The bounce that stops offer e-mails to the customer's current address, or None."""
    if not customer.email:
        return None
    return (
        Delivery.objects.filter(customer=customer)
        .bounced_to(customer.email)
        .order_by("-pk")
        .first()
    )
