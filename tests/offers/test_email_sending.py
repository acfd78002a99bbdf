"""Sending an offer by e-mail to a segment: who receives it, once, through a real SMTP server."""

import smtplib
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from offers import mailing
from offers.links import unsubscribe_token_read
from offers.models import Delivery, Offer, OfferResponse
from offers.services import holdout_draw
from tests.factories import CustomerFactory, OfferFactory, SegmentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def segment():
    return SegmentFactory(name="Loyal regulars")


@pytest.fixture
def offer(segment):
    offer = OfferFactory(
        title="Tea for two",
        holdout_share=Decimal("0.2"),
        email_subject="{first_name}: {offer_title}",
        email_body="Dear {name},\n{offer_terms}\nAccept: {offer_link}\nStop: {unsubscribe_link}\n",
    )
    offer.segments.add(segment)
    return offer


def _send_all(offer: Offer) -> mailing.SendCounts:
    return mailing.offer_deliveries_send(offer_id=offer.pk, limit=1000, rate=1000)


def test_the_audience_leaves_out_customers_without_consent_address_or_who_unsubscribed(
    segment, offer
):
    eligible = CustomerFactory.create_batch(30, segment=segment)
    CustomerFactory(segment=segment, marketing_consent=False)
    CustomerFactory(segment=segment, unsubscribed_at=timezone.now())
    CustomerFactory(segment=segment, email="")
    CustomerFactory(segment=segment, is_archived=True)
    CustomerFactory()  # in no segment

    audience = mailing.offer_email_audience(offer=offer, segment=segment)

    held = {c.pk for c in eligible if holdout_draw(offer.pk, c.pk) < 0.2}
    assert set(audience.held_out) == held
    assert {c.pk for c in audience.recipients} == {c.pk for c in eligible} - held
    assert audience.not_marketable == 3
    assert audience.members == 33
    assert audience.already == 0


def test_queueing_writes_a_delivery_per_recipient_and_records_the_control_group(
    segment, offer, django_capture_on_commit_callbacks
):
    CustomerFactory.create_batch(30, segment=segment)
    audience = mailing.offer_email_audience(offer=offer, segment=segment)

    with django_capture_on_commit_callbacks() as callbacks:
        queued = mailing.offer_email_queue(offer=offer, segment=segment)

    assert queued.queued == len(audience.recipients) > 0
    assert queued.held_out == len(audience.held_out) > 0
    assert set(Delivery.objects.values_list("customer_id", flat=True)) == {
        c.pk for c in audience.recipients
    }
    assert set(Delivery.objects.values_list("status", flat=True)) == {Delivery.Status.QUEUED}
    holdout = OfferResponse.objects.filter(offer=offer, outcome=OfferResponse.Outcome.HOLDOUT)
    assert set(holdout.values_list("customer_id", flat=True)) == set(audience.held_out)
    # Nobody is marked presented before a message actually goes out.
    assert not OfferResponse.objects.filter(outcome=OfferResponse.Outcome.PRESENTED).exists()
    # The sending task is enqueued after commit.
    assert [c.func.__self__.name for c in callbacks if hasattr(c, "func")] == [
        "offers.tasks.offer_email_send"
    ]

    again = mailing.offer_email_queue(offer=offer, segment=segment)
    assert again.queued == 0 and again.held_out == 0
    assert Delivery.objects.count() == queued.queued


def test_queueing_refuses_a_closed_offer_or_a_segment_it_does_not_target(segment, offer):
    other = SegmentFactory()
    with pytest.raises(ValidationError, match="does not target"):
        mailing.offer_email_queue(offer=offer, segment=other)
    offer.is_active = False
    offer.save()
    with pytest.raises(ValidationError, match="inactive"):
        mailing.offer_email_queue(offer=offer, segment=segment)


def test_each_recipient_gets_one_message_with_one_click_unsubscribe_headers(
    segment, offer, smtp_server
):
    customers = CustomerFactory.create_batch(12, segment=segment, name="Ada Lovelace")
    queued = mailing.offer_email_queue(offer=offer, segment=segment)

    counts = _send_all(offer)

    received = smtp_server.received.messages
    assert counts.sent == queued.queued == len(received)
    assert counts.remaining == 0
    sent = Delivery.objects.filter(status=Delivery.Status.SENT)
    assert sent.count() == queued.queued
    held = {c.pk for c in customers if holdout_draw(offer.pk, c.pk) < 0.2}
    for delivery in sent.select_related("customer"):
        assert delivery.customer_id not in held
        [message] = smtp_server.received.to(delivery.customer.email)
        assert message["Message-ID"] == delivery.message_id
        assert message["Subject"] == "Ada: Tea for two"
        assert message["From"] == "shop@example.com"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        link = message["List-Unsubscribe"].strip().strip("<>")
        assert link.startswith("https://crm.example.com/u/")
        token = link.rstrip("/").rsplit("/", 1)[1]
        assert unsubscribe_token_read(token=token).customer_id == delivery.customer_id
        body = message.get_content()
        assert link in body
        assert "Dear Ada Lovelace," in body
        assert "https://crm.example.com/o/" in body
        assert delivery.sent_at is not None
    presented = OfferResponse.objects.filter(offer=offer, outcome=OfferResponse.Outcome.PRESENTED)
    assert set(presented.values_list("customer_id", flat=True)) == set(
        sent.values_list("customer_id", flat=True)
    )
    assert presented.filter(segment=segment).count() == presented.count()

    # A second run (a retried task) sends nothing more.
    assert _send_all(offer).sent == 0
    assert len(smtp_server.received.messages) == len(received)


def test_a_customer_who_unsubscribes_after_queueing_is_not_sent(segment, offer, smtp_server):
    offer.holdout_share = Decimal("0")
    offer.save()
    ada, bob = CustomerFactory.create_batch(2, segment=segment)
    mailing.offer_email_queue(offer=offer, segment=segment)
    mailing.customer_unsubscribe(customer_id=ada.pk)

    counts = _send_all(offer)

    assert counts.sent == 1
    assert [m["To"] for m in smtp_server.received.messages] == [bob.email]
    failed = Delivery.objects.get(customer=ada)
    assert failed.status == Delivery.Status.FAILED
    assert "unsubscribed" in failed.error
    ada.refresh_from_db()
    assert ada.unsubscribed_at is not None


def test_a_message_left_sending_by_a_dead_worker_is_given_up_and_never_sent_again(
    segment, offer, smtp_server
):
    offer.holdout_share = Decimal("0")
    offer.save()
    CustomerFactory.create_batch(2, segment=segment)
    mailing.offer_email_queue(offer=offer, segment=segment)
    claimed = mailing.delivery_claim_next(offer_id=offer.pk)  # ... and the worker dies here

    assert _send_all(offer).sent == 1  # the other customer; the claimed one is left alone
    claimed.refresh_from_db()
    assert claimed.status == Delivery.Status.SENDING

    later = timezone.now() + timedelta(hours=1)
    assert mailing.deliveries_give_up_stale(now=later) == 1
    claimed.refresh_from_db()
    assert claimed.status == Delivery.Status.FAILED
    assert claimed.error.startswith("Unknown")
    assert _send_all(offer).sent == 0
    assert len(smtp_server.received.messages) == 1


def test_a_refused_recipient_is_marked_bounced_and_the_rest_are_sent(segment, offer, smtp_server):
    offer.holdout_share = Decimal("0")
    offer.save()
    CustomerFactory.create_batch(3, segment=segment)
    refused = CustomerFactory(segment=segment, email="nobody@refused.example")
    mailing.offer_email_queue(offer=offer, segment=segment)

    async def refuse(server, session, envelope, address, rcpt_options):
        if address.endswith("@refused.example"):
            return "550 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    smtp_server.received.handle_RCPT = refuse

    counts = _send_all(offer)

    assert (counts.sent, counts.bounced) == (3, 1)
    delivery = Delivery.objects.get(customer=refused)
    assert delivery.status == Delivery.Status.BOUNCED
    assert "No such user" in delivery.error


def test_a_mail_server_that_cannot_be_reached_leaves_every_message_queued(segment, offer, settings):
    offer.holdout_share = Decimal("0")
    offer.save()
    CustomerFactory.create_batch(3, segment=segment)
    mailing.offer_email_queue(offer=offer, segment=segment)
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", 9  # nothing listens there
    settings.EMAIL_TIMEOUT = 2

    with pytest.raises((smtplib.SMTPException, OSError)):
        _send_all(offer)

    statuses = set(Delivery.objects.values_list("status", flat=True))
    assert statuses == {Delivery.Status.QUEUED}


def test_sending_keeps_to_the_rate_limit(segment, offer, smtp_server):
    offer.holdout_share = Decimal("0")
    offer.save()
    CustomerFactory.create_batch(6, segment=segment)
    mailing.offer_email_queue(offer=offer, segment=segment)

    started = time.monotonic()
    counts = mailing.offer_deliveries_send(offer_id=offer.pk, limit=1000, rate=20.0)
    elapsed = time.monotonic() - started

    assert counts.sent == 6
    # The first message goes at once, each next one in its own 1/20 s slot.
    assert elapsed >= 5 / 20


def test_sending_stops_at_the_batch_limit_and_says_how_many_remain(segment, offer, smtp_server):
    offer.holdout_share = Decimal("0")
    offer.save()
    CustomerFactory.create_batch(5, segment=segment)
    mailing.offer_email_queue(offer=offer, segment=segment)

    counts = mailing.offer_deliveries_send(offer_id=offer.pk, limit=2, rate=1000)

    assert (counts.sent, counts.remaining) == (2, 3)


def test_a_connection_lost_during_a_message_fails_it_and_leaves_the_rest_queued(
    segment, offer, smtp_server
):
    offer.holdout_share = Decimal("0")
    offer.save()
    CustomerFactory.create_batch(3, segment=segment)
    mailing.offer_email_queue(offer=offer, segment=segment)

    async def hang_up(server, session, envelope):
        server.transport.close()  # the message's fate is unknown to the sender

    smtp_server.received.handle_DATA = hang_up

    with pytest.raises((smtplib.SMTPException, OSError)):
        _send_all(offer)

    statuses = sorted(Delivery.objects.values_list("status", flat=True))
    assert statuses == [Delivery.Status.FAILED, Delivery.Status.QUEUED, Delivery.Status.QUEUED]
