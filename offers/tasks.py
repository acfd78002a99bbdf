"""Celery entry points of the offers app."""

from celery import shared_task
from django.conf import settings
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


@shared_task(acks_late=True, autoretry_for=(OSError,), retry_backoff=60, max_retries=10)
def offer_email_send(offer_id: int) -> dict:
    """Send the offer's queued e-mails, a batch at a time; enqueues itself while some remain.

    Safe to run twice or after a worker died: each message is claimed before it is sent and
    never sent again (offers.mailing). SMTP errors (OSError's subclasses) retry the rest.
    """
    # Imported on use: offers.mailing imports this module to enqueue.
    from offers import mailing

    counts = mailing.offer_deliveries_send(
        offer_id=offer_id, limit=settings.EMAIL_SEND_BATCH, rate=settings.EMAIL_SEND_RATE
    )
    if counts.remaining:
        offer_email_send.delay(offer_id)
    return {"sent": counts.sent, "failed": counts.failed, "bounced": counts.bounced}
