"""Bounces that arrive after a send: each message's own return address, and bounce reports
(RFC 3464) matched to the deliveries they are about.

With EMAIL_BOUNCE_ADDRESS set (bounces@shop.example.com), each offer e-mail is sent with the
envelope sender bounces+d<delivery id>-<signature>@shop.example.com (VERP): the report comes
back to that address, which names the delivery and cannot be forged for another one. Without
it, or when a server returns the report elsewhere, the original's Message-ID (kept on the
delivery) names it.
"""

import mailbox
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from crm.cache import pages_cache_changed
from offers.dsn import DeliveryReport, delivery_report_parse
from offers.models import Delivery

_TAGGED = re.compile(r"^[^@+]+\+d(?P<id>\d+)-(?P<signature>[0-9a-f]+)@", re.IGNORECASE)


def _signature(delivery_id: int) -> str:
    return salted_hmac("offers.bounce-address", str(delivery_id)).hexdigest()[:12]


def bounce_address(*, delivery_id: int) -> str | None:
    """The envelope sender of one delivery's message, or None when EMAIL_BOUNCE_ADDRESS is
    unset (the From address is then the envelope sender, as before)."""
    base = settings.EMAIL_BOUNCE_ADDRESS
    if not base:
        return None
    local, _, domain = base.rpartition("@")
    return f"{local}+d{delivery_id}-{_signature(delivery_id)}@{domain}"


def bounce_address_read(address: str) -> int | None:
    """The delivery id a return address names, None when it names none or is forged."""
    match = _TAGGED.match(address.strip().strip("<>"))
    if not match:
        return None
    delivery_id = int(match["id"])
    ok = constant_time_compare(match["signature"].lower(), _signature(delivery_id))
    return delivery_id if ok else None


def delivery_for_report(report: DeliveryReport) -> Delivery | None:
    """The delivery a report is about: by its return address, else by Message-ID."""
    for address in report.returned_to:
        delivery_id = bounce_address_read(address)
        if delivery_id is not None and (found := Delivery.objects.filter(pk=delivery_id).first()):
            return found
    for message_id in report.message_ids:
        if found := Delivery.objects.filter(message_id=message_id).first():
            return found
    return None


# What bounce_record made of a message: the keys of bounces_process's counts.
BOUNCED, ALREADY, TEMPORARY, UNMATCHED, NOT_A_REPORT = (
    "bounced",
    "already bounced",
    "temporary (left alone)",
    "not matched to a message",
    "not a bounce report",
)


def bounce_record(*, report: DeliveryReport | None, now: datetime | None = None) -> str:
    """Mark the delivery a report is about bounced when it reports a permanent failure (5.x.x).

    Side effects: Delivery status "bounced", bounced_at and the server's words, its address
    kept (that address gets no marketing again: offers.mailing.customers_marketable); the
    pages' cached figures invalidated. Delays and other temporary failures change nothing.
    Idempotent. Returns which case it was (BOUNCED, ALREADY, TEMPORARY, UNMATCHED,
    NOT_A_REPORT). The customer stays "presented" in the offer's results: the control group
    holds addresses that would have bounced too, so the comparison stays fair.
    """
    if report is None:
        return NOT_A_REPORT
    delivery = delivery_for_report(report)
    if delivery is None:
        return UNMATCHED
    if not report.hard:
        return TEMPORARY
    if delivery.status == Delivery.Status.BOUNCED:
        return ALREADY
    failure = report.hard[0]
    with transaction.atomic():
        delivery.status = Delivery.Status.BOUNCED
        delivery.bounced_at = now or timezone.now()
        delivery.error = f"Bounced ({failure.status}): {failure.diagnostic}".strip()
        delivery.email = delivery.email or failure.address
        delivery.save(update_fields=["status", "bounced_at", "error", "email"])
        pages_cache_changed()
    return BOUNCED


def bounces_process(messages: Iterable[bytes], *, now: datetime | None = None) -> Counter:
    """Record every bounce report among raw messages; returns how many of each case."""
    return Counter(bounce_record(report=delivery_report_parse(raw), now=now) for raw in messages)


def mailbox_messages(path: Path, *, mark_read: bool = True) -> Iterator[bytes]:
    """The raw messages of a Maildir (a folder with cur/ new/ tmp/) or an mbox file.

    In a Maildir, messages already read are skipped and each one read is marked so ("S" flag,
    moved to cur/), so a scheduled run reads only what arrived since.
    """
    if path.is_dir():
        box = mailbox.Maildir(path, factory=None, create=False)
        for key in list(box.iterkeys()):
            message = box.get_message(key)
            if "S" in message.get_flags():
                continue
            yield message.as_bytes()
            if mark_read:
                message.add_flag("S")
                message.set_subdir("cur")
                box[key] = message
        return
    for message in mailbox.mbox(path, create=False):
        yield message.as_bytes()
