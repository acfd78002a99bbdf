"""Celery entry points of the offers app."""

from celery import shared_task
from django.db import OperationalError

from offers.models import Offer
from segmentation.models import Segment


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=3)
def offer_present_to_segment(offer_id: int, segment_id: int) -> dict:
    """Present an offer to a large segment outside the web request (idempotent: retry-safe)."""
    # Imported on use: offers.services imports this module to enqueue.
    from offers import services

    done = services.offer_present(
        offer=Offer.objects.get(pk=offer_id), segment=Segment.objects.get(pk=segment_id)
    )
    return {"presented": done.presented, "held_out": done.held_out, "already": done.already}
