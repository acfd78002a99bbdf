"""Offer e-mails: who receives them, queueing a send, sending it once, and the test message.

The send is at most once per (offer, customer). A Delivery row is written for each recipient
before anything is sent (unique per offer and customer, so a second queueing adds nobody
twice). Each message is then claimed on its own (queued -> sending, one conditional UPDATE,
committed), sent, and marked sent or failed. A worker killed between the claim and the mark
leaves one row "sending": the server may or may not have taken the message, so it is never
sent again; after settings.EMAIL_SENDING_STALE_MINUTES it is marked failed ("unknown, not
retried"). Marketing mail twice is worse than marketing mail missed.
"""

import smtplib
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import make_msgid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from crm.cache import pages_cache_changed
from crm.models import Customer
from crm.selectors import business_get
from offers import tasks
from offers.bounces import bounce_address
from offers.links import offer_url, unsubscribe_url
from offers.messages import Message, first_name_of, message_render
from offers.models import Delivery, Offer, OfferResponse
from offers.services import holdout_draw, offer_present
from segmentation.models import Segment

UNKNOWN_ERROR = (
    "Unknown: the worker stopped while sending, so the message may or may not have gone out; "
    "not retried (at most one message per customer)."
)


# --- Messages ----------------------------------------------------------------------------


def offer_terms(offer: Offer) -> str:
    """The offer's terms in words, for {offer_terms}: its description, discount and dates."""
    parts = [offer.description.strip()] if offer.description.strip() else []
    if offer.discount_percent:
        parts.append(f"{offer.discount_percent.normalize():f}% off.")
    if offer.ends_on:
        parts.append(f"Valid until {offer.ends_on:%d %B %Y}.")
    return " ".join(parts)


def offer_message_values(*, offer: Offer, customer: Customer) -> dict[str, str]:
    """The merge fields for one customer (links signed for them; absolute URLs)."""
    return {
        "first_name": first_name_of(customer.name),
        "name": customer.name or first_name_of(customer.name),
        "offer_title": offer.title,
        "offer_terms": offer_terms(offer),
        "offer_link": offer_url(customer_id=customer.pk, offer_id=offer.pk),
        "business_name": business_get().name,
        "unsubscribe_link": unsubscribe_url(customer_id=customer.pk, offer_id=offer.pk),
    }


def offer_message(*, offer: Offer, customer: Customer) -> Message:
    """The subject and body one customer receives (also the preview on the offer page)."""
    return message_render(
        subject=offer.email_subject,
        body=offer.email_body,
        values=offer_message_values(offer=offer, customer=customer),
    )


def offer_email(
    *, offer: Offer, customer: Customer, to: str | None = None, delivery_id: int | None = None
) -> EmailMessage:
    """The e-mail for one customer, with RFC 8058 one-click unsubscribe headers and its own
    Message-ID (kept on the delivery). ``to`` overrides the address (the owner's test). With
    ``delivery_id``, the envelope sender is that delivery's bounce address when one is
    configured (offers.bounces), so a later bounce finds its delivery."""
    values = offer_message_values(offer=offer, customer=customer)
    message = message_render(subject=offer.email_subject, body=offer.email_body, values=values)
    unsubscribe = values["unsubscribe_link"]  # signed once for the body and the header
    domain = settings.DEFAULT_FROM_EMAIL.rpartition("@")[2] or None
    headers = {
        "Message-ID": make_msgid(domain=domain),
        "List-Unsubscribe": f"<{unsubscribe}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    envelope_sender = delivery_id is not None and bounce_address(delivery_id=delivery_id)
    if envelope_sender:
        # Django sends from ``from_email`` and writes the From header from headers["From"].
        headers["From"] = settings.DEFAULT_FROM_EMAIL
    return EmailMessage(
        subject=message.subject,
        body=message.body,
        from_email=envelope_sender or settings.DEFAULT_FROM_EMAIL,
        to=[to or customer.email],
        headers=headers,
    )


def offer_test_send(*, offer: Offer, customer: Customer, to: str) -> str:
    """Send the owner the message ``customer`` would receive, at ``to``. Records nothing.
    Returns the Message-ID. Raises ValidationError when there is no address to send to."""
    if not to:
        raise ValidationError("Your account has no e-mail address to send the test to.")
    email = offer_email(offer=offer, customer=customer, to=to)
    email.subject = f"[Test] {email.subject}"
    email.send()
    return email.extra_headers["Message-ID"]


# --- Who receives it ---------------------------------------------------------------------


def customers_marketable() -> QuerySet[Customer]:
    """Customers who may receive marketing e-mail: active, consenting, not unsubscribed, with
    an address that never bounced for good. The one home of that rule."""
    return (
        Customer.objects.active()
        .filter(marketing_consent=True, unsubscribed_at__isnull=True)
        .exclude(email="")
        .exclude(
            Exists(
                Delivery.objects.filter(customer_id=OuterRef("pk")).bounced_to(OuterRef("email"))
            )
        )
    )


@dataclass(frozen=True)
class Audience:
    """Who an offer e-mail to a segment reaches: recipients and the control group, both
    eligible; ``not_marketable`` are members without consent, unsubscribed or without an
    address; ``already`` those who have a delivery or a response for the offer."""

    recipients: list[Customer]
    held_out: list[int]
    members: int
    not_marketable: int
    already: int


def _eligible_members(*, offer: Offer, segment: Segment) -> QuerySet[Customer]:
    """Marketable members of the segment who have neither a delivery nor a response for the
    offer (before the holdout draw)."""
    done = Exists(Delivery.objects.filter(offer=offer, customer_id=OuterRef("pk"))) | Exists(
        OfferResponse.objects.filter(offer=offer, customer_id=OuterRef("pk"))
    )
    return customers_marketable().filter(membership__segment=segment).exclude(done)


def _holdout_split(*, offer: Offer, customer_ids: list[int]) -> tuple[list[int], list[int]]:
    """(recipients, control group) of ``customer_ids``, order kept: the holdout draw of
    offer_present, on ids only."""
    share = float(offer.holdout_share)
    if share <= 0:
        return list(customer_ids), []
    recipients, held_out = [], []
    for pk in customer_ids:
        (held_out if holdout_draw(offer.pk, pk) < share else recipients).append(pk)
    return recipients, held_out


def offer_email_audience(*, offer: Offer, segment: Segment) -> Audience:
    """Eligible members of the segment for the offer's e-mail, split by the holdout draw (the
    same reproducible draw as offer_present). Reads only; three queries."""
    members = Customer.objects.active().filter(membership__segment=segment)
    marketable = customers_marketable().filter(membership__segment=segment)
    eligible = (
        _eligible_members(offer=offer, segment=segment)
        .order_by("name", "pk")
        .only("pk", "name", "email")
    )
    share = float(offer.holdout_share)
    recipients, held_out = [], []
    for customer in eligible:
        if holdout_draw(offer.pk, customer.pk) < share:
            held_out.append(customer.pk)
        else:
            recipients.append(customer)
    total, marketable_count = members.count(), marketable.count()
    return Audience(
        recipients=recipients,
        held_out=held_out,
        members=total,
        not_marketable=total - marketable_count,
        already=marketable_count - len(recipients) - len(held_out),
    )


@dataclass(frozen=True)
class AudienceSummary:
    """The send page's view of an Audience: its counts, and only the first recipients."""

    recipients: int
    held_out: int
    members: int
    not_marketable: int
    already: int
    first_recipients: list[Customer]

    @property
    def not_shown(self) -> int:
        return self.recipients - len(self.first_recipients)


def offer_email_audience_summary(
    *, offer: Offer, segment: Segment, shown: int = 200
) -> AudienceSummary:
    """The counts of offer_email_audience and its first ``shown`` recipients by name, in four
    queries whatever the segment's size: the eligible are read as ids only (the holdout draw
    is a hash of ids), and only the customers shown are loaded."""
    members = Customer.objects.active().filter(membership__segment=segment)
    marketable = customers_marketable().filter(membership__segment=segment)
    eligible_ids = list(
        _eligible_members(offer=offer, segment=segment)
        .order_by("name", "pk")
        .values_list("pk", flat=True)
    )
    recipients, held_out = _holdout_split(offer=offer, customer_ids=eligible_ids)
    first_ids = recipients[:shown]
    loaded = Customer.objects.only("pk", "name", "email").in_bulk(first_ids)
    total, marketable_count = members.count(), marketable.count()
    return AudienceSummary(
        recipients=len(recipients),
        held_out=len(held_out),
        members=total,
        not_marketable=total - marketable_count,
        already=marketable_count - len(eligible_ids),
        first_recipients=[loaded[pk] for pk in first_ids if pk in loaded],
    )


# --- Queueing and sending ----------------------------------------------------------------


@dataclass(frozen=True)
class Queued:
    queued: int
    held_out: int


def offer_email_check(*, offer: Offer, segment: Segment, now: datetime | None = None) -> None:
    """Raise ValidationError unless the offer may be e-mailed to the segment now: open, made
    by e-mail, targeting the segment. Reads only."""
    now = now or timezone.now()
    if not offer.is_open_on(timezone.localdate(now)):
        raise ValidationError(f"“{offer}” is inactive or outside its dates: it cannot be sent.")
    if offer.channel != Offer.Channel.EMAIL:
        raise ValidationError(f"“{offer}” is made by {offer.get_channel_display()}, not e-mail.")
    if not Offer.objects.filter(pk=offer.pk).targeting([segment.pk]).exists():
        raise ValidationError(f"“{offer}” does not target the segment “{segment}”.")


def offer_email_start(*, offer: Offer, segment: Segment) -> None:
    """The owner's "send": check, then hand the whole send to the worker.

    Side effect: after commit, the task that queues the recipients (offer_email_queue)
    enqueued. Nothing else: reading a large segment and writing a delivery per customer take
    seconds, too long for a web request. Raises ValidationError as offer_email_check does.
    """
    offer_email_check(offer=offer, segment=segment)
    tasks.offer_email_queue.delay_on_commit(offer.pk, segment.pk)


def offer_email_queue(*, offer: Offer, segment: Segment, now: datetime | None = None) -> Queued:
    """Queue the offer's e-mail for the segment's eligible customers and start sending (the
    worker's part of offer_email_start; idempotent, so a retried task adds nobody twice).

    Side effects, in one transaction: a Delivery row (queued) per recipient, an OfferResponse
    HOLDOUT row per customer of the control group (measured as before), the pages' cached
    figures invalidated; after commit, the sending task enqueued. Raises ValidationError when
    the offer is not open, does not target the segment or its channel is not e-mail.
    """
    now = now or timezone.now()
    offer_email_check(offer=offer, segment=segment, now=now)
    # Ids only: the holdout draw and the rows need nothing else of the customers.
    eligible_ids = list(
        _eligible_members(offer=offer, segment=segment).order_by("pk").values_list("pk", flat=True)
    )
    recipients, held_out = _holdout_split(offer=offer, customer_ids=eligible_ids)
    with transaction.atomic():
        held = offer_present(offer=offer, segment=segment, customers=held_out, now=now)
        created = Delivery.objects.bulk_create(
            [
                Delivery(offer=offer, customer_id=pk, segment=segment, created_at=now)
                for pk in recipients
            ],
            batch_size=1000,
            ignore_conflicts=True,  # a concurrent queueing already wrote that customer
        )
        pages_cache_changed()
        tasks.offer_email_send.delay_on_commit(offer.pk)
    return Queued(queued=len(created), held_out=held.held_out)


def deliveries_give_up_stale(*, now: datetime | None = None) -> int:
    """Mark failed the deliveries left "sending" for EMAIL_SENDING_STALE_MINUTES by a worker
    that died: they may have been sent, so they are never sent again. Returns how many."""
    now = now or timezone.now()
    before = now - timedelta(minutes=settings.EMAIL_SENDING_STALE_MINUTES)
    return Delivery.objects.stale_sending(before=before).update(
        status=Delivery.Status.FAILED, error=UNKNOWN_ERROR
    )


def delivery_claim_next(*, offer_id: int) -> Delivery | None:
    """Claim the next queued delivery of the offer (queued -> sending), or None when none is
    left. A conditional UPDATE, so two workers never claim the same row; committed at once,
    or with the caller's transaction when there is one (the previous message's "sent" mark:
    one commit a message). Returns the row with its ids and status only."""
    while True:
        row = (
            Delivery.objects.filter(offer_id=offer_id, status=Delivery.Status.QUEUED)
            .order_by("pk")
            .values_list("pk", "customer_id", "segment_id")
            .first()
        )
        if row is None:
            return None
        pk, customer_id, segment_id = row
        won = Delivery.objects.filter(pk=pk, status=Delivery.Status.QUEUED).update(
            status=Delivery.Status.SENDING, claimed_at=timezone.now()
        )
        if won:
            return Delivery(
                pk=pk,
                offer_id=offer_id,
                customer_id=customer_id,
                segment_id=segment_id,
                status=Delivery.Status.SENDING,
            )


def _delivery_mark(delivery: Delivery, *, status: str, error: str = "", **fields) -> None:
    delivery.status, delivery.error = status, error
    for name, value in fields.items():
        setattr(delivery, name, value)
    delivery.save(update_fields=["status", "error", *fields])


@dataclass
class SendCounts:
    sent: int = 0
    failed: int = 0
    bounced: int = 0
    remaining: int = 0


def offer_deliveries_send(
    *,
    offer_id: int,
    limit: int,
    rate: float,
) -> SendCounts:
    """Send up to ``limit`` queued deliveries of the offer, at most ``rate`` a second.

    Side effects per message: the delivery claimed, the e-mail sent over one SMTP
    connection, then in one transaction the delivery marked sent (time, Message-ID, address),
    an OfferResponse PRESENTED recorded (kept when the customer already has one) and the next
    delivery claimed. A
    customer who lost consent, unsubscribed or whose address bounced since queueing is marked
    failed, not sent. A recipient refused for good (5xx) is marked bounced, for now (4xx)
    failed; any other SMTP or network error marks that delivery failed
    (not retried: it may have gone out) and is raised, so the task retries the rest later;
    so is a server that cannot be reached, before anything is claimed.
    Stale "sending" rows are given up first (deliveries_give_up_stale).
    """
    deliveries_give_up_stale()
    counts = SendCounts()
    interval = 1.0 / rate
    next_at = time.monotonic()
    if not Delivery.objects.filter(offer_id=offer_id, status=Delivery.Status.QUEUED).exists():
        return counts
    connection = get_connection()
    # Opened before anything is claimed: a server that cannot be reached raises here and
    # leaves every message queued for the task's retry.
    connection.open()
    offer = Offer.objects.get(pk=offer_id)
    handled = 0

    def claim_next() -> Delivery | None:
        return delivery_claim_next(offer_id=offer_id) if handled < limit else None

    try:
        delivery = claim_next()
        while delivery is not None:
            handled += 1
            customer = customers_marketable().filter(pk=delivery.customer_id).first()
            if customer is None:
                _delivery_mark(
                    delivery,
                    status=Delivery.Status.FAILED,
                    error="Not sent: no consent, unsubscribed, archived, no address or an "
                    "address that bounced.",
                )
                counts.failed += 1
                delivery = claim_next()
                continue
            wait = next_at - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            next_at = max(next_at, time.monotonic()) + interval
            email = offer_email(offer=offer, customer=customer, delivery_id=delivery.pk)
            email.connection = connection
            try:
                email.send()
            except smtplib.SMTPRecipientsRefused as error:
                # 5xx: the address does not exist (bounced, never written to again); 4xx: a
                # passing refusal, failed this time only.
                codes = [code for code, _ in error.recipients.values()]
                hard = bool(codes) and all(code >= 500 for code in codes)
                _delivery_mark(
                    delivery,
                    status=Delivery.Status.BOUNCED if hard else Delivery.Status.FAILED,
                    error=str(error),
                    email=customer.email,
                )
                counts.bounced += hard
                counts.failed += not hard
                delivery = claim_next()
                continue
            except (smtplib.SMTPException, OSError) as error:
                _delivery_mark(delivery, status=Delivery.Status.FAILED, error=repr(error))
                counts.failed += 1
                raise
            sent_at = timezone.now()
            with transaction.atomic():
                _delivery_mark(
                    delivery,
                    status=Delivery.Status.SENT,
                    sent_at=sent_at,
                    message_id=email.extra_headers["Message-ID"],
                    email=customer.email,
                )
                OfferResponse.objects.bulk_create(
                    [
                        OfferResponse(
                            offer_id=offer_id,
                            customer=customer,
                            segment_id=delivery.segment_id,
                            outcome=OfferResponse.Outcome.PRESENTED,
                            presented_at=sent_at,
                        )
                    ],
                    ignore_conflicts=True,  # an answer recorded before is kept
                )
                # The next claim commits with this mark: one commit per message, and still
                # never more than one row "sending" at a time.
                delivery = claim_next()
            counts.sent += 1
    finally:
        connection.close()
    if counts.sent:
        pages_cache_changed()
    counts.remaining = Delivery.objects.filter(
        offer_id=offer_id, status=Delivery.Status.QUEUED
    ).count()
    return counts


def customer_unsubscribe(*, customer_id: int, now: datetime | None = None) -> Customer | None:
    """Unsubscribe the customer from marketing e-mail (their link's one click). Idempotent:
    the first time is kept. Side effects: Customer.unsubscribed_at set, queued deliveries to
    them marked failed. Returns the customer, None when it no longer exists."""
    now = now or timezone.now()
    with transaction.atomic():
        updated = Customer.objects.filter(pk=customer_id, unsubscribed_at__isnull=True).update(
            unsubscribed_at=now
        )
        Delivery.objects.filter(customer_id=customer_id, status=Delivery.Status.QUEUED).update(
            status=Delivery.Status.FAILED, error="Not sent: the customer unsubscribed."
        )
        if updated:
            pages_cache_changed()
    return Customer.objects.filter(pk=customer_id).first()


def offer_preview_customer(*, offer: Offer, customer_id: int | None = None) -> Customer | None:
    """The customer an offer's message is previewed for: the one asked for, else the first
    marketable member of its target segments, else the first marketable customer."""
    if customer_id is not None:
        return Customer.objects.filter(pk=customer_id).first()
    marketable = customers_marketable().order_by("pk")
    targets = offer.segments.values("pk")
    return (
        marketable.filter(membership__segment__in=targets).first()
        or marketable.first()
        or Customer.objects.order_by("pk").first()
    )
