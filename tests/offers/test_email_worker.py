"""Sending on a real Celery worker whose process is killed in the middle of a message."""

import os
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from config.celery import app as celery_app
from config.processes import spawn, stop
from offers import mailing
from offers.models import Delivery, OfferResponse
from offers.tasks import offer_email_send
from tests import workers
from tests.factories import CustomerFactory, OfferFactory, SegmentFactory
from tests.offers.smtp import SmtpServer

KILL_AT = 4  # the message during which the worker dies


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


@pytest.fixture
def smtp():
    with SmtpServer() as server:
        yield server


@pytest.fixture
def email_worker(transactional_db, celery_broker_url, smtp):
    """A worker of its own (it must send to this test's SMTP server), on a queue of its own."""
    directory = Path(tempfile.mkdtemp(prefix="crm-mail-worker-"))
    token = uuid.uuid4().hex[:10]
    hostname, queue = f"mail-{token}@localhost", f"mail-{token}"
    log_path = directory / "worker.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": workers.testing_database_url(),
        "CELERY_BROKER_URL": celery_broker_url,
        "CELERY_RESULT_BACKEND": celery_broker_url,
        "EMAIL_URL": smtp.url,
        "DEFAULT_FROM_EMAIL": "shop@example.com",
        "PUBLIC_BASE_URL": "https://crm.example.com",
        "EMAIL_SEND_RATE": "1000",
        "EMAIL_SEND_BATCH": "1000",
        "PYTHONUNBUFFERED": "1",
    }
    argv = [
        sys.executable,
        *("-m", "celery", "-A", "config", "worker"),
        *("--pool=prefork", "--concurrency=1", "--loglevel=INFO"),
        f"--hostname={hostname}",
        f"--queues={queue}",
        *("--without-gossip", "--without-mingle", "--without-heartbeat"),
    ]
    restore = workers._celery_app_point_at(
        broker_url=celery_broker_url, result_backend=celery_broker_url, queue=queue
    )
    with open(log_path, "wb") as log:
        process = spawn(argv, env=env, cwd=settings.BASE_DIR, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while not celery_app.control.ping(destination=[hostname], timeout=0.5):
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
        process.log = lambda: log_path.read_text(errors="replace")
        yield process
    finally:
        stop([process], timeout=15)
        restore()


@pytest.mark.worker
def test_a_worker_killed_while_sending_never_sends_a_customer_twice_and_loses_nobody(
    email_worker, smtp
):
    segment = SegmentFactory()
    CustomerFactory.create_batch(25, segment=segment)
    offer = OfferFactory(holdout_share=Decimal("0.2"))
    offer.segments.add(segment)
    killed = []

    def kill_the_sender(message):
        # Runs in the server once the message is stored, before the worker hears "250 OK":
        # the worker cannot know whether its message went out.
        if len(smtp.received.messages) == KILL_AT and not killed:
            [child] = _children(email_worker.pid)
            os.kill(child, signal.SIGKILL)
            killed.append(child)

    smtp.received.on_message = kill_the_sender
    queued = mailing.offer_email_queue(offer=offer, segment=segment)  # enqueues after commit
    assert queued.queued > KILL_AT

    # The task message is redelivered after the kill (late acks) and the new run finishes.
    deadline = time.monotonic() + 90
    while Delivery.objects.filter(status=Delivery.Status.QUEUED).exists():
        assert time.monotonic() < deadline, email_worker.log()
        time.sleep(0.3)
    time.sleep(0.5)  # the last "sent" mark
    assert killed, email_worker.log()
    assert "WorkerLostError" in email_worker.log() or "SIGKILL" in email_worker.log()

    per_address = Counter(m["To"] for m in smtp.received.messages)
    assert max(per_address.values()) == 1, "a customer received the offer twice"
    statuses = Counter(Delivery.objects.values_list("status", flat=True))
    assert statuses == {Delivery.Status.SENT: queued.queued - 1, Delivery.Status.SENDING: 1}
    # The one left "sending" is given up once it is stale, never sent again.
    assert mailing.deliveries_give_up_stale(now=timezone.now() + timedelta(hours=1)) == 1
    ambiguous = Delivery.objects.get(status=Delivery.Status.FAILED)
    assert ambiguous.error.startswith("Unknown")
    assert ambiguous.customer.email in per_address  # it did reach the server, in fact
    assert len(smtp.received.messages) == queued.queued
    # Results read as before: presented for the sent ones, the control group never sent.
    presented = OfferResponse.objects.filter(offer=offer, outcome=OfferResponse.Outcome.PRESENTED)
    assert presented.count() == queued.queued - 1
    held_out = OfferResponse.objects.filter(offer=offer, outcome=OfferResponse.Outcome.HOLDOUT)
    assert held_out.count() == queued.held_out > 0
    assert not set(held_out.values_list("customer__email", flat=True)) & set(per_address)

    # A retried task sends nothing more.
    offer_email_send.delay(offer.pk).get(timeout=60)
    assert len(smtp.received.messages) == queued.queued
