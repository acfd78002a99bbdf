"""The public feedback link: signed, expiring, single use, rate-limited, input checked."""

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import signing
from django.test import Client
from django.urls import include, path, resolve, reverse
from django.utils import timezone

from crm import feedback_link
from crm.feedback_link import (
    FeedbackLink,
    FeedbackLinkUsed,
    feedback_link_submit,
    feedback_link_url,
    feedback_token_make,
)
from crm.models import Feedback
from segmentation.selectors import customer_features
from tests.factories import CustomerFactory, FeedbackFactory, PurchaseFactory

# The public pages alone, so these tests do not depend on the staff pages' URLs.
urlpatterns = [path("feedback/", include("crm.public_urls"))]
pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]


@pytest.fixture
def customer():
    return CustomerFactory(name="Zelda Quarterfield", email="zelda@example.com")


def _url(customer) -> str:
    return feedback_link_url(customer=customer)


def test_a_valid_link_shows_the_form_to_anyone_without_any_customer_data(client, customer):
    response = client.get(_url(customer))

    assert response.status_code == 200
    body = response.content.decode()
    assert "How did we do?" in body
    assert 'name="rating"' in body and 'name="nps"' in body
    assert "Zelda" not in body and "zelda@example.com" not in body
    assert response["Referrer-Policy"] == "same-origin"
    assert "no-store" in response["Cache-Control"]


def test_a_valid_link_takes_one_submission_onto_the_customer(client, customer):
    url = _url(customer)

    response = client.post(url, {"rating": "4", "nps": "9", "comment": "Lovely, thanks."})

    assert response.status_code == 302
    assert response["Location"] == reverse("feedback:thanks")
    feedback = Feedback.objects.get()
    assert (feedback.customer, feedback.rating, feedback.nps) == (customer, 4, 9)
    assert feedback.source == Feedback.Source.LINK
    assert feedback.comment == "Lovely, thanks."
    assert client.get(reverse("feedback:thanks")).status_code == 200

    replay = client.post(url, {"rating": "1"})
    assert replay.status_code == 410
    assert "already been used" in replay.content.decode()
    assert client.get(url).status_code == 410
    assert Feedback.objects.count() == 1


def test_each_new_link_for_the_same_customer_is_its_own_single_use(client, customer):
    first, second = _url(customer), _url(customer)
    assert first != second
    assert client.post(first, {"rating": "5"}).status_code == 302
    assert client.post(second, {"rating": "3"}).status_code == 302
    assert sorted(customer.feedback.values_list("rating", flat=True)) == [3, 5]


def test_a_tampered_link_is_refused_with_a_friendly_page(client, customer):
    token = feedback_token_make(customer=customer)
    payload, stamp, signature = token.rsplit(":", 2)
    other = signing.dumps({"c": customer.pk, "n": "x"}, salt="another.purpose")
    for bad in [
        f"{payload}:{stamp}:{signature[:-1]}{'A' if signature[-1] != 'A' else 'B'}",
        f"{payload}x:{stamp}:{signature}",
        other,
        "not-a-token",
    ]:
        response = client.get(reverse("feedback:submit", args=[bad]))
        assert response.status_code == 400
        assert "not valid" in response.content.decode()
        assert (
            client.post(reverse("feedback:submit", args=[bad]), {"rating": "5"}).status_code == 400
        )
    assert not Feedback.objects.exists()


def test_an_expired_link_is_refused(client, customer, monkeypatch, settings):
    settings.FEEDBACK_LINK_MAX_AGE_DAYS = 30
    real_time = time.time
    with monkeypatch.context() as m:
        m.setattr(time, "time", lambda: real_time() - 31 * 86400)
        old = feedback_link_url(customer=customer)
    with monkeypatch.context() as m:
        m.setattr(time, "time", lambda: real_time() - 29 * 86400)
        recent = feedback_link_url(customer=customer)

    response = client.post(old, {"rating": "5"})

    assert response.status_code == 410
    assert "expired" in response.content.decode()
    assert not Feedback.objects.exists()
    assert client.get(recent).status_code == 200


def test_a_link_of_an_archived_or_deleted_customer_is_refused(client):
    archived, deleted = CustomerFactory(is_archived=True), CustomerFactory()
    urls = [_url(archived), _url(deleted)]
    deleted.delete()
    assert [client.get(url).status_code for url in urls] == [400, 400]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"rating": "7"}, "Choose a rating from 1 to 5."),
        ({"rating": "0"}, "Choose a rating from 1 to 5."),
        ({"nps": "11"}, "Choose a score from 0 to 10."),
        ({"rating": "x"}, "Choose a rating from 1 to 5."),
        ({"comment": "Only words"}, "Please give a rating, a score, or both."),
        ({"rating": "3", "comment": "z" * 2001}, "at most 2000 characters"),
    ],
)
def test_bad_input_gets_a_clear_error_and_stores_nothing(client, customer, data, message):
    url = _url(customer)

    response = client.post(url, data)

    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Feedback.objects.exists()
    # The link is still good for a correct submission.
    assert client.post(url, {"rating": "3"}).status_code == 302


def test_html_in_a_comment_is_escaped_when_shown_back_and_stored_as_plain_text(client, customer):
    url = _url(customer)
    script = "<script>alert('hi')</script><b>bold</b>"

    response = client.post(url, {"rating": "9", "comment": script})

    body = response.content.decode()
    assert response.status_code == 400
    assert "<script>alert" not in body and "<b>bold</b>" not in body
    assert "&lt;script&gt;alert(&#x27;hi&#x27;)&lt;/script&gt;" in body

    assert client.post(url, {"rating": "2", "comment": script}).status_code == 302
    assert Feedback.objects.get().comment == script


def test_the_page_is_csrf_protected(customer):
    browser = Client(enforce_csrf_checks=True)
    url = _url(customer)

    assert browser.post(url, {"rating": "5"}).status_code == 403
    page = browser.get(url)
    csrf = page.context["csrf_token"]
    assert browser.post(url, {"rating": "5", "csrfmiddlewaretoken": str(csrf)}).status_code == 302


def test_requests_are_rate_limited_per_ip(client, customer, settings):
    settings.FEEDBACK_LINK_RATE_PER_IP = (3, 600)
    url = _url(customer)

    codes = [client.get(url).status_code for _ in range(4)]
    elsewhere = client.get(url, REMOTE_ADDR="203.0.113.9")

    assert codes == [200, 200, 200, 429]
    assert "Too many attempts" in client.get(url).content.decode()
    assert elsewhere.status_code == 200


def test_submissions_are_rate_limited_per_link(client, customer, settings):
    settings.FEEDBACK_LINK_RATE_PER_TOKEN = (2, 3600)
    url = _url(customer)

    codes = [
        client.post(url, {"rating": "9"}, REMOTE_ADDR=f"198.51.100.{i}").status_code
        for i in range(3)
    ]

    assert codes == [400, 400, 429]
    assert client.post(url, {"rating": "5"}, REMOTE_ADDR="198.51.100.50").status_code == 429
    assert not Feedback.objects.exists()


def test_the_absolute_link_uses_the_request_host(rf, customer):
    url = feedback_link_url(customer=customer, request=rf.get("/", HTTP_HOST="testserver"))
    assert url.startswith("http://testserver/feedback/")


def test_a_concurrent_replay_that_passes_the_check_is_still_refused(customer, monkeypatch):
    token = feedback_token_make(customer=customer)
    link = feedback_link.feedback_token_read(token=token)
    FeedbackFactory(customer=customer, link_nonce_hash=link.nonce_hash)
    # As if another request stored its feedback between our check and our write.
    monkeypatch.setattr(
        feedback_link,
        "feedback_token_read",
        lambda token: FeedbackLink(customer=customer, nonce_hash=link.nonce_hash),
    )

    with pytest.raises(FeedbackLinkUsed):
        feedback_link_submit(token=token, rating=5)

    assert Feedback.objects.count() == 1


def test_link_feedback_reaches_the_next_segmentation_features(client, customer):
    PurchaseFactory(customer=customer, amount=Decimal("20"))
    client.post(_url(customer), {"rating": "2", "nps": "3"})

    frame = customer_features(reference_time=timezone.now() + timedelta(hours=1)).frame

    row = frame.set_index("customer_id").loc[customer.pk]
    assert row["rating_mean"] == 2.0
    assert row["nps_mean"] == 3.0


def test_the_site_serves_the_feedback_page_at_feedback_slash(customer):
    token = feedback_token_make(customer=customer)
    match = resolve(f"/feedback/{token}/", urlconf="config.urls")
    assert match.view_name == "feedback:submit"
    assert match.kwargs == {"token": token}
