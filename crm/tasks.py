"""Celery entry points of the CRM app."""

import socket

from celery import shared_task
from django.db import OperationalError, connection

from crm.models import Customer, Offer


@shared_task(acks_late=True)
def crm_health_check() -> dict:
    """Prove the worker path end to end: broker, worker, database and result backend."""
    return {
        "status": "ok",
        "hostname": socket.gethostname(),
        "database": connection.vendor,
        "customers": Customer.objects.count(),
    }


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=3)
def offer_present_to_segment(offer_id: int, segment_id: int) -> dict:
    """Present an offer to a large segment outside the web request (idempotent: retry-safe)."""
    from crm import offers
    from crm.dashboard import pages_cache_bump
    from segmentation.models import Segment

    done = offers.offer_present(
        offer=Offer.objects.get(pk=offer_id), segment=Segment.objects.get(pk=segment_id)
    )
    pages_cache_bump()
    return {"presented": done.presented, "held_out": done.held_out, "already": done.already}
