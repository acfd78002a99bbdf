"""The owner's e-mail pages: preview, a test to oneself, sending to a segment, the CSV, and
recording an offer presented by hand."""

import csv
import io
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from crm.selectors import business_get
from offers import mailing
from offers.models import Delivery, Offer, OfferResponse
from offers.services import holdout_draw
from offers.tasks import offer_email_queue
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
        email_subject="{first_name}, {offer_title}",
    )
    offer.segments.add(segment)
    return offer


def test_the_offer_page_previews_the_message_for_a_chosen_customer(staff_client, offer, segment):
    CustomerFactory(segment=segment, name="Ada Lovelace")
    grace = CustomerFactory(segment=segment, name="Grace Hopper")
    url = reverse("offers:offer_detail", args=[offer.pk])
    html = staff_client.get(url, {"customer": grace.pk}).content.decode()
    assert "<span data-preview-subject>Grace, Tea for two</span>" in html
    assert "/u/" in html and "/o/" in html


def test_send_me_a_test_mails_the_owner_the_message_and_records_nothing(
    staff_client, alice, offer, segment, smtp_server
):
    customer = CustomerFactory(segment=segment, name="Ada Lovelace")
    response = staff_client.post(
        reverse("offers:offer_email_test", args=[offer.pk]), {"customer": customer.pk}
    )
    assert response.status_code == 302
    [message] = smtp_server.received.messages
    assert message["To"] == alice.email
    assert message["Subject"] == "[Test] Ada, Tea for two"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert not Delivery.objects.exists() and not OfferResponse.objects.exists()


def test_the_send_page_lists_the_recipients_and_confirming_queues_them(
    staff_client, offer, segment, django_capture_on_commit_callbacks
):
    customers = CustomerFactory.create_batch(20, segment=segment)
    CustomerFactory(segment=segment, marketing_consent=False, name="Not Asked")
    url = reverse("offers:offer_email_send", args=[offer.pk, segment.pk])
    recipients = [c for c in customers if holdout_draw(offer.pk, c.pk) >= 0.2]

    html = staff_client.get(url).content.decode()
    assert f'data-recipients="{len(recipients)}"' in html
    assert "Not Asked" not in html

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = staff_client.post(url)
    assert response.status_code == 302
    # The request only enqueues: the worker writes the deliveries.
    assert not Delivery.objects.exists() and not OfferResponse.objects.exists()
    [enqueue] = callbacks
    assert enqueue.func.__self__.name == "offers.tasks.offer_email_queue"
    assert enqueue.args == (offer.pk, segment.pk)

    offer_email_queue.apply(enqueue.args)
    assert set(Delivery.objects.values_list("customer_id", flat=True)) == {c.pk for c in recipients}


def test_confirming_a_send_to_a_large_segment_does_the_same_few_queries_as_to_a_small_one(
    staff_client, offer, segment, django_capture_on_commit_callbacks
):
    url = reverse("offers:offer_email_send", args=[offer.pk, segment.pk])
    CustomerFactory.create_batch(3, segment=segment)
    business_get()  # the business settings are cached for every request after the first
    with CaptureQueriesContext(connection) as small, django_capture_on_commit_callbacks():
        staff_client.post(url)
    CustomerFactory.create_batch(150, segment=segment)
    with CaptureQueriesContext(connection) as large, django_capture_on_commit_callbacks():
        staff_client.post(url)
    assert len(large) == len(small)
    assert not Delivery.objects.exists()


def test_confirming_a_send_of_a_closed_offer_says_why_and_enqueues_nothing(
    staff_client, offer, segment, django_capture_on_commit_callbacks
):
    offer.is_active = False
    offer.save()
    url = reverse("offers:offer_email_send", args=[offer.pk, segment.pk])
    with django_capture_on_commit_callbacks() as callbacks:
        response = staff_client.post(url, follow=True)
    assert callbacks == []
    assert "cannot be sent" in response.content.decode()


def test_the_recipients_csv_has_the_eligible_customers_without_the_control_group(
    staff_client, offer, segment
):
    customers = CustomerFactory.create_batch(20, segment=segment)
    CustomerFactory(segment=segment, name="=HYPERLINK(1)", email="formula@example.com")
    CustomerFactory(segment=segment, unsubscribed_at="2026-01-01T00:00Z")
    response = staff_client.get(reverse("offers:offer_recipients_csv", args=[offer.pk, segment.pk]))
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    ids = {int(r["customer_id"]) for r in rows}
    eligible = [*customers, *CustomerFactory._meta.model.objects.filter(name="=HYPERLINK(1)")]
    assert ids == {c.pk for c in eligible if holdout_draw(offer.pk, c.pk) >= 0.2}
    assert all(r["unsubscribe_link"].startswith("http") for r in rows)
    assert not any(r["name"].startswith("=") for r in rows)
    assert not Delivery.objects.exists() and not OfferResponse.objects.exists()


def test_presented_by_hand_records_only_the_ticked_customers_and_the_control_group(
    staff_client, offer, segment
):
    customers = CustomerFactory.create_batch(20, segment=segment)
    recipients = [c for c in customers if holdout_draw(offer.pk, c.pk) >= 0.2]
    held = [c for c in customers if holdout_draw(offer.pk, c.pk) < 0.2]
    url = reverse("offers:offer_present_by_hand", args=[offer.pk, segment.pk])
    assert staff_client.get(url).status_code == 200

    ticked = recipients[:3]
    response = staff_client.post(url, {"customer": [c.pk for c in ticked]})

    assert response.status_code == 302
    presented = OfferResponse.objects.filter(outcome=OfferResponse.Outcome.PRESENTED)
    assert set(presented.values_list("customer_id", flat=True)) == {c.pk for c in ticked}
    holdout = OfferResponse.objects.filter(outcome=OfferResponse.Outcome.HOLDOUT)
    assert set(holdout.values_list("customer_id", flat=True)) == {c.pk for c in held}


def test_the_offer_form_refuses_a_placeholder_that_is_not_a_merge_field(staff_client, offer):
    response = staff_client.post(
        reverse("offers:offer_edit", args=[offer.pk]),
        {
            "title": offer.title,
            "channel": "email",
            "holdout_share": "0.2",
            "attribution_days": "30",
            "is_active": "on",
            "email_subject": "Hi {customer.email.__class__}",
            "email_body": "Hello {first_name}",
        },
    )
    assert response.status_code == 400
    assert "not a merge field" in response.content.decode()
    assert Offer.objects.get(pk=offer.pk).email_subject == "{first_name}, {offer_title}"


def _send_page_queries(client, offer, segment) -> int:
    url = reverse("offers:offer_email_send", args=[offer.pk, segment.pk])
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def test_the_send_page_reads_a_large_segment_in_as_many_queries_as_a_small_one(
    staff_client, offer, segment
):
    CustomerFactory.create_batch(3, segment=segment)
    _send_page_queries(staff_client, offer, segment)  # the session's first-request reads
    small = _send_page_queries(staff_client, offer, segment)
    CustomerFactory.create_batch(147, segment=segment)

    assert _send_page_queries(staff_client, offer, segment) == small


def test_the_send_page_lists_the_first_recipients_and_says_how_many_more_it_counts(offer, segment):
    customers = CustomerFactory.create_batch(12, segment=segment)
    recipients = sorted(
        (c for c in customers if holdout_draw(offer.pk, c.pk) >= 0.2), key=lambda c: (c.name, c.pk)
    )

    summary = mailing.offer_email_audience_summary(offer=offer, segment=segment, shown=5)
    assert summary.recipients == len(recipients)
    assert summary.held_out == len(customers) - len(recipients)
    assert [c.pk for c in summary.first_recipients] == [c.pk for c in recipients[:5]]
    assert summary.not_shown == len(recipients) - 5

    # The numbers agree with what the worker then queues.
    queued = mailing.offer_email_queue(offer=offer, segment=segment)
    assert (queued.queued, queued.held_out) == (summary.recipients, summary.held_out)
    assert Delivery.objects.filter(offer=offer).count() == summary.recipients
