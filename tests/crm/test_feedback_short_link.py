"""The short feedback link of a text message: /f/<code>, signed, expiring, single use."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from crm.feedback_link import (
    SHORT_ALPHABET,
    FeedbackLinkExpired,
    FeedbackLinkInvalid,
    FeedbackLinkUsed,
    feedback_short_link_create,
    feedback_short_link_read,
    feedback_short_link_submit,
    feedback_short_link_url,
    short_code_signed,
)
from crm.models import Feedback, FeedbackShortLink
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer():
    return CustomerFactory(name="Zelda Quarterfield", email="zelda@example.com")


@pytest.fixture
def link(customer):
    return feedback_short_link_create(customer=customer)


def _forged(code: str) -> str:
    """The same code with its last character changed."""
    last = code[-1]
    return code[:-1] + next(c for c in SHORT_ALPHABET if c != last)


def test_the_short_link_path_fits_a_text_message(link):
    path = feedback_short_link_url(link=link)

    assert len(path) < 30, path
    assert path == f"/f/{link.code}" and len(link.code) == 12 and link.code.isalnum()


def test_the_short_link_shows_the_form_and_takes_one_submission(client, customer, link):
    url = feedback_short_link_url(link=link)

    page = client.get(url)
    sent = client.post(url, {"rating": "5", "comment": "Quick and kind."})

    assert page.status_code == 200 and "How did we do?" in page.content.decode()
    assert "Zelda" not in page.content.decode()
    assert sent.status_code == 302 and sent["Location"] == reverse("feedback:thanks")
    feedback = Feedback.objects.get()
    assert (feedback.customer, feedback.rating, feedback.source) == (customer, 5, "link")
    link.refresh_from_db()
    assert link.used_at is not None


def test_a_replayed_short_link_is_refused_and_writes_nothing(client, link):
    url = feedback_short_link_url(link=link)
    client.post(url, {"rating": "5"})

    again = client.post(url, {"rating": "1"})

    assert again.status_code == 410
    assert "already been used" in again.content.decode()
    assert Feedback.objects.count() == 1
    with pytest.raises(FeedbackLinkUsed):
        feedback_short_link_submit(code=link.code, rating=2)
    assert Feedback.objects.count() == 1


def test_a_tampered_code_is_refused_without_a_query(link, django_assert_num_queries):
    forged = _forged(link.code)

    with django_assert_num_queries(0), pytest.raises(FeedbackLinkInvalid):
        feedback_short_link_read(code=forged)
    assert not short_code_signed(forged)
    assert not short_code_signed(link.code[:-1])
    assert not short_code_signed(link.code + "a")
    assert not short_code_signed("../../admin/")


def test_a_tampered_code_on_the_page_answers_a_clear_error(client, link):
    response = client.post(f"/f/{_forged(link.code)}", {"rating": "5"})

    assert response.status_code == 400
    assert "not valid" in response.content.decode()
    assert not Feedback.objects.exists()


def test_a_well_signed_code_that_was_never_issued_is_refused(link):
    link.delete()

    with pytest.raises(FeedbackLinkInvalid):
        feedback_short_link_read(code=link.code)


def test_an_expired_short_link_is_refused(client, link):
    FeedbackShortLink.objects.filter(pk=link.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    response = client.get(feedback_short_link_url(link=link))

    assert response.status_code == 410
    assert "expired" in response.content.decode()
    with pytest.raises(FeedbackLinkExpired):
        feedback_short_link_submit(code=link.code, rating=5)
    assert not Feedback.objects.exists()


def test_a_short_link_expires_after_the_configured_days(settings, customer):
    settings.FEEDBACK_LINK_MAX_AGE_DAYS = 7

    link = feedback_short_link_create(customer=customer)

    assert timedelta(days=7) - (link.expires_at - link.created_at) < timedelta(seconds=1)


def test_an_archived_customer_gets_no_short_link_and_old_ones_stop(customer, link):
    customer.is_archived = True
    customer.save()

    with pytest.raises(FeedbackLinkInvalid):
        feedback_short_link_create(customer=customer)
    with pytest.raises(FeedbackLinkInvalid):
        feedback_short_link_read(code=link.code)


def test_bad_answers_through_a_short_link_leave_it_unused(client, link):
    response = client.post(feedback_short_link_url(link=link), {"comment": "no score"})

    assert response.status_code == 400
    link.refresh_from_db()
    assert link.used_at is None


def test_the_owner_makes_a_short_link_on_the_customer_page(staff_client, customer):
    detail = reverse("pages:customer_detail", args=[customer.pk])

    made = staff_client.post(reverse("pages:customer_feedback_link_create", args=[customer.pk]))
    page = staff_client.get(detail).content.decode()
    later = staff_client.get(detail).content.decode()

    assert made.status_code == 302
    link = FeedbackShortLink.objects.get(customer=customer)
    assert f"http://testserver/f/{link.code}" in page
    assert f"/f/{link.code}" not in later  # shown once; the button makes another
    assert "Make a short link" in later
