"""Signed links in offer e-mails: one-click unsubscribe and the customer's personal offer link."""

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.urls import reverse

# Dedicated salts: a value signed for one purpose (or elsewhere in the project) never passes
# as another.
UNSUBSCRIBE_SALT = "offers.unsubscribe.v1"
OFFER_LINK_SALT = "offers.offer_link.v1"


class LinkInvalid(Exception):
    """A tampered, truncated or expired link."""


@dataclass(frozen=True)
class LinkData:
    customer_id: int
    offer_id: int | None


def unsubscribe_token_make(*, customer_id: int, offer_id: int | None = None) -> str:
    """A token that unsubscribes the customer. It does not expire: an unsubscribe link in an
    old message must keep working (RFC 8058 asks for it to work for a long time)."""
    return signing.dumps({"c": customer_id, "o": offer_id}, salt=UNSUBSCRIBE_SALT)


def unsubscribe_token_read(*, token: str) -> LinkData:
    try:
        data = signing.loads(token, salt=UNSUBSCRIBE_SALT)
    except signing.BadSignature:
        raise LinkInvalid(token) from None
    return LinkData(customer_id=int(data["c"]), offer_id=data.get("o"))


def offer_token_make(*, customer_id: int, offer_id: int) -> str:
    """A token for the customer's page of one offer; it expires after
    settings.OFFER_LINK_MAX_AGE_DAYS (signed with a timestamp)."""
    return signing.dumps({"c": customer_id, "o": offer_id}, salt=OFFER_LINK_SALT)


def offer_token_read(*, token: str) -> LinkData:
    try:
        data = signing.loads(
            token, salt=OFFER_LINK_SALT, max_age=timedelta(days=settings.OFFER_LINK_MAX_AGE_DAYS)
        )
    except signing.BadSignature:  # SignatureExpired is one
        raise LinkInvalid(token) from None
    return LinkData(customer_id=int(data["c"]), offer_id=int(data["o"]))


def public_url(path: str) -> str:
    """An absolute URL on settings.PUBLIC_BASE_URL (the worker has no request to build it)."""
    return settings.PUBLIC_BASE_URL + path


def unsubscribe_url(*, customer_id: int, offer_id: int | None = None) -> str:
    token = unsubscribe_token_make(customer_id=customer_id, offer_id=offer_id)
    return public_url(reverse("offer_public:unsubscribe", args=[token]))


def offer_url(*, customer_id: int, offer_id: int) -> str:
    token = offer_token_make(customer_id=customer_id, offer_id=offer_id)
    return public_url(reverse("offer_public:offer", args=[token]))
