"""Reads of offers that pages, tasks and admin share."""

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from offers.models import Offer, OfferResponse
from offers.services import TREATED_OUTCOMES
from segmentation.models import Segment


def offers_with_counts() -> QuerySet[Offer]:
    """Offers annotated with presented, accepted and held-out counts (one query)."""
    outcome = OfferResponse.Outcome
    return Offer.objects.annotate(
        presented=Count("responses", filter=Q(responses__outcome__in=TREATED_OUTCOMES)),
        accepted=Count("responses", filter=Q(responses__outcome=outcome.ACCEPTED)),
        holdout=Count("responses", filter=Q(responses__outcome=outcome.HOLDOUT)),
    )


def offers_open_for_segment(*, segment: Segment) -> QuerySet[Offer]:
    """Active offers open today that target the segment or no segment at all, newest first."""
    today = timezone.localdate()
    return (
        Offer.objects.filter(is_active=True)
        .filter(Q(segments=segment) | Q(segments__isnull=True))
        .filter(Q(starts_on__isnull=True) | Q(starts_on__lte=today))
        .filter(Q(ends_on__isnull=True) | Q(ends_on__gte=today))
        .distinct()
        .order_by("-created_at", "-id")
    )
