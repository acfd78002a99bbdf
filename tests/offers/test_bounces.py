"""Bounces that come back after the send: each message's own return address, bounce reports
(RFC 3464) read from a Maildir, an mbox or stdin, and no more marketing to a dead address."""

import io
import mailbox
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from offers import mailing
from offers.bounces import bounce_address, bounce_address_read, bounces_process
from offers.dsn import delivery_report_parse
from offers.models import Delivery
from tests.factories import CustomerFactory, OfferFactory, SegmentFactory

SAMPLES = Path(__file__).resolve().parent.parent / "fixtures" / "bounces"

pytestmark = pytest.mark.django_db


def _sample(name: str, *, recipient: str, message_id: str = "<none@x>", returned_to=None) -> bytes:
    raw = (SAMPLES / name).read_text()
    if returned_to:
        local_tag = returned_to.split("@")[0].split("+d", 1)[1]
        delivery_id, signature = local_tag.split("-")
        raw = raw.replace("{DELIVERY_ID}", delivery_id).replace("{SIGNATURE}", signature)
    return raw.replace("{RECIPIENT}", recipient).replace("{MESSAGE_ID}", message_id).encode()


@pytest.fixture
def segment():
    return SegmentFactory(name="Loyal regulars")


@pytest.fixture
def offer(segment):
    offer = OfferFactory(
        title="Tea for two",
        holdout_share=Decimal("0"),
        email_subject="{first_name}: {offer_title}",
        email_body="Dear {name},\n{offer_terms}\n",
    )
    offer.segments.add(segment)
    return offer


@pytest.fixture
def bounce_settings(settings, smtp_server):
    settings.EMAIL_BOUNCE_ADDRESS = "bounces@shop.example.com"
    return settings


def _send(offer, segment) -> None:
    mailing.offer_email_queue(offer=offer, segment=segment)
    mailing.offer_deliveries_send(offer_id=offer.pk, limit=1000, rate=1000)


# --- Reading reports (no database) ---------------------------------------------------------


@pytest.mark.django_db(False)
def test_a_postfix_hard_bounce_reads_as_a_permanent_failure_of_its_recipient():
    report = delivery_report_parse(
        _sample("postfix_hard.eml", recipient="Ada@Example.net", message_id="<m1@shop>")
    )
    [failure] = report.hard
    assert (failure.address, failure.status) == ("ada@example.net", "5.1.1")
    assert "User unknown" in failure.diagnostic
    assert report.message_ids == ["<m1@shop>"]


@pytest.mark.django_db(False)
def test_a_delay_warning_is_not_a_hard_bounce_and_an_ordinary_message_is_no_report():
    delayed = delivery_report_parse(_sample("postfix_delayed.eml", recipient="ada@example.net"))
    assert delayed.recipients[0].action == "delayed"
    assert delayed.hard == []
    assert (
        delivery_report_parse(b"From: ada@example.net\nSubject: Re: tea\n\nYes please!\n") is None
    )


def test_a_return_address_names_its_delivery_and_cannot_be_forged(settings):
    settings.EMAIL_BOUNCE_ADDRESS = "bounces@shop.example.com"
    address = bounce_address(delivery_id=42)
    assert address.startswith("bounces+d42-") and address.endswith("@shop.example.com")
    assert bounce_address_read(address) == 42
    assert bounce_address_read(address.upper()) == 42  # some servers change the case
    forged = address.replace("+d42-", "+d43-")
    assert bounce_address_read(forged) is None
    assert bounce_address_read("shop@shop.example.com") is None


# --- The whole way: sent, bounced later, never written to again ----------------------------


def test_each_message_goes_out_from_its_own_return_address_with_the_shops_from(
    segment, offer, bounce_settings, smtp_server
):
    CustomerFactory.create_batch(3, segment=segment)
    _send(offer, segment)

    for delivery in Delivery.objects.all():
        index = [m["To"] for m in smtp_server.received.messages].index(delivery.email)
        sender = smtp_server.received.envelope_senders[index]
        assert bounce_address_read(sender) == delivery.pk
        assert smtp_server.received.messages[index]["From"] == "shop@example.com"


def test_a_bounce_read_from_a_maildir_marks_the_delivery_bounced_and_stops_marketing(
    segment, offer, bounce_settings, smtp_server, tmp_path, staff_client
):
    ada = CustomerFactory(segment=segment, name="Ada Lovelace", email="ada@example.net")
    CustomerFactory.create_batch(2, segment=segment)
    _send(offer, segment)
    sent = Delivery.objects.get(customer=ada)
    index = [m["To"] for m in smtp_server.received.messages].index("ada@example.net")
    maildir = mailbox.Maildir(tmp_path / "bounces")
    maildir.add(
        _sample(
            "postfix_hard.eml",
            recipient="ada@example.net",
            returned_to=smtp_server.received.envelope_senders[index],
        )
    )
    maildir.add(_sample("postfix_delayed.eml", recipient="someone@example.org"))
    out = io.StringIO()

    call_command("bounces_process", str(tmp_path / "bounces"), stdout=out)

    sent.refresh_from_db()
    assert sent.status == Delivery.Status.BOUNCED
    assert sent.bounced_at is not None
    assert "5.1.1" in sent.error and "User unknown" in sent.error
    assert "Read 2 messages." in out.getvalue() and "bounced: 1" in out.getvalue()
    assert not mailing.customers_marketable().filter(pk=ada.pk).exists()
    # Read messages are marked read: a second run finds nothing new.
    again = io.StringIO()
    call_command("bounces_process", str(tmp_path / "bounces"), stdout=again)
    assert "Read 0 messages." in again.getvalue()

    # The offer's results and the customer's page say so.
    detail = staff_client.get(offer.get_absolute_url()).content.decode()
    assert "1 bounced" in detail
    page = staff_client.get(reverse("pages:customer_detail", args=[ada.pk])).content.decode()
    assert "data-email-bounced" in page
    assert "no more offer e-mails are sent to it" in page

    # The next offer to the segment leaves Ada out...
    second = OfferFactory(holdout_share=Decimal("0"), email_subject="Hi", email_body="Hi")
    second.segments.add(segment)
    audience = mailing.offer_email_audience(offer=second, segment=segment)
    assert ada.pk not in {c.pk for c in audience.recipients}
    assert audience.not_marketable == 1
    # ... until she gives a new address.
    ada.email = "ada@new.example.net"
    ada.save()
    assert mailing.customers_marketable().filter(pk=ada.pk).exists()


def test_a_report_returned_to_the_from_address_is_matched_by_its_message_id(
    segment, offer, smtp_server
):
    ada = CustomerFactory(segment=segment, email="ada@example.net")
    _send(offer, segment)
    sent = Delivery.objects.get(customer=ada)
    report = _sample("rfc822_hard_no_verp.eml", recipient=ada.email, message_id=sent.message_id)

    counts = bounces_process([report])

    assert counts == {"bounced": 1}
    sent.refresh_from_db()
    assert sent.status == Delivery.Status.BOUNCED
    assert bounces_process([report]) == {"already bounced": 1}


def test_delays_unknown_messages_and_forged_addresses_change_nothing(
    segment, offer, bounce_settings, smtp_server
):
    ada = CustomerFactory(segment=segment, email="ada@example.net")
    _send(offer, segment)
    sent = Delivery.objects.get(customer=ada)
    forged = bounce_address(delivery_id=sent.pk).replace("-", "-0", 1)

    counts = bounces_process(
        [
            _sample("postfix_delayed.eml", recipient=ada.email, message_id=sent.message_id),
            _sample("postfix_hard.eml", recipient=ada.email, returned_to=forged),
            b"Subject: hello\n\nnot a report\n",
        ]
    )

    assert counts == {
        "temporary (left alone)": 1,
        "not matched to a message": 1,
        "not a bounce report": 1,
    }
    sent.refresh_from_db()
    assert sent.status == Delivery.Status.SENT


def test_the_command_reads_an_mbox_file_or_standard_input(
    segment, offer, smtp_server, tmp_path, monkeypatch
):
    ada, bob = CustomerFactory.create_batch(2, segment=segment)
    _send(offer, segment)
    ada_sent, bob_sent = (Delivery.objects.get(customer=c) for c in (ada, bob))
    box = mailbox.mbox(tmp_path / "bounces.mbox")
    box.add(_sample("rfc822_hard_no_verp.eml", recipient=ada.email, message_id=ada_sent.message_id))
    box.flush()
    call_command("bounces_process", str(tmp_path / "bounces.mbox"), stdout=io.StringIO())

    raw = _sample("rfc822_hard_no_verp.eml", recipient=bob.email, message_id=bob_sent.message_id)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(raw)))
    call_command("bounces_process", "-", stdout=io.StringIO())

    assert set(Delivery.objects.values_list("status", flat=True)) == {Delivery.Status.BOUNCED}


def test_the_command_says_clearly_when_the_path_is_wrong(tmp_path):
    with pytest.raises(CommandError, match="no such Maildir folder or mbox file"):
        call_command("bounces_process", str(tmp_path / "missing"))
    with pytest.raises(CommandError, match="not a Maildir"):
        call_command("bounces_process", str(tmp_path))


def test_a_server_refusing_for_now_fails_the_message_but_does_not_mark_the_address(
    segment, offer, smtp_server
):
    busy = CustomerFactory(segment=segment, email="busy@full.example")
    mailing.offer_email_queue(offer=offer, segment=segment)

    async def refuse(server, session, envelope, address, rcpt_options):
        return "452 Mailbox full, try later"

    smtp_server.received.handle_RCPT = refuse
    counts = mailing.offer_deliveries_send(offer_id=offer.pk, limit=10, rate=1000)

    assert (counts.failed, counts.bounced) == (1, 0)
    assert Delivery.objects.get(customer=busy).status == Delivery.Status.FAILED
    assert mailing.customers_marketable().filter(pk=busy.pk).exists()
