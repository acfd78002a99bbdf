"""Celery entry points of the offers app."""

from pathlib import Path

from celery import shared_task
from django.conf import settings
from django.db import OperationalError

from offers.models import Offer
from segmentation.models import Segment


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=3)
def offer_email_queue(offer_id: int, segment_id: int) -> dict:
    """Write the deliveries of an offer e-mail to a segment, then start sending (idempotent)."""
    # Imported on use: offers.mailing imports this module to enqueue.
    from offers import mailing

    queued = mailing.offer_email_queue(
        offer=Offer.objects.get(pk=offer_id), segment=Segment.objects.get(pk=segment_id)
    )
    return {"queued": queued.queued, "held_out": queued.held_out}


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


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=3)
def bounces_process_maildir() -> dict:
    """Read the bounce reports arrived in EMAIL_BOUNCE_MAILDIR (beat; nothing when unset)."""
    # Imported on use, as above.
    from offers import bounces

    if not settings.EMAIL_BOUNCE_MAILDIR:
        return {}
    return dict(
        bounces.bounces_process(bounces.mailbox_messages(Path(settings.EMAIL_BOUNCE_MAILDIR)))
    )
