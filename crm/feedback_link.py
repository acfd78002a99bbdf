"""Signed, expiring, single-use feedback links the owner sends to a customer.

Two forms: the long link (/feedback/<token>/, everything in the signed token, nothing stored
until it is used) and the short link for a text message (/f/<code>, a stored row; the code's
last characters are its signature, so a forged code never reaches the database).
"""

import hashlib
import re
import secrets
import string
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare, get_random_string, salted_hmac

from crm import services
from crm.models import Customer, Feedback, FeedbackShortLink

# A dedicated salt: a value signed elsewhere in the project can never pass as a link token.
SALT = "crm.feedback_link.v1"
DEFAULT_MAX_AGE_DAYS = 30


class FeedbackLinkError(Exception):
    """A link that cannot be used; ``status`` and ``message`` are for the public page."""

    status = 400
    message = "This feedback link is not valid. Please check that you copied all of it."


class FeedbackLinkInvalid(FeedbackLinkError):
    pass


class FeedbackLinkExpired(FeedbackLinkError):
    status = 410
    message = "This feedback link has expired. Thank you for wanting to tell us, though!"


class FeedbackLinkUsed(FeedbackLinkError):
    status = 410
    message = "This feedback link has already been used. Thank you for your feedback!"


@dataclass(frozen=True)
class FeedbackLink:
    customer: Customer
    nonce_hash: str


def max_age() -> timedelta:
    """How long a link stays valid: settings.FEEDBACK_LINK_MAX_AGE_DAYS (default 30 days)."""
    return timedelta(days=getattr(settings, "FEEDBACK_LINK_MAX_AGE_DAYS", DEFAULT_MAX_AGE_DAYS))


def feedback_token_make(*, customer: Customer) -> str:
    """A new signed token for the customer; each carries its own nonce, so each is single use.

    The token holds the customer id and the nonce, signed with SECRET_KEY and a timestamp;
    it reveals nothing else and is not stored anywhere until it is used.
    """
    return signing.dumps({"c": customer.pk, "n": secrets.token_urlsafe(12)}, salt=SALT)


def feedback_link_url(*, customer: Customer, request=None) -> str:
    """The URL of a new feedback link for the customer, absolute when ``request`` is given."""
    path = reverse("feedback:submit", args=[feedback_token_make(customer=customer)])
    return request.build_absolute_uri(path) if request is not None else path


def _nonce_hash(nonce: str) -> str:
    return hashlib.sha256(f"{SALT}:{nonce}".encode()).hexdigest()


def feedback_token_read(*, token: str) -> FeedbackLink:
    """Check a token: signature, age, customer, and that it was not used already.

    Raises FeedbackLinkInvalid (tampered, unknown or archived customer), FeedbackLinkExpired
    (older than ``max_age()``) or FeedbackLinkUsed. One query when the signature is good.
    """
    try:
        data = signing.loads(token, salt=SALT, max_age=max_age())
    except signing.SignatureExpired as exc:
        raise FeedbackLinkExpired from exc
    except signing.BadSignature as exc:
        raise FeedbackLinkInvalid from exc
    if not isinstance(data, dict) or not isinstance(data.get("c"), int) or not data.get("n"):
        raise FeedbackLinkInvalid
    nonce_hash = _nonce_hash(str(data["n"]))
    customer = (
        Customer.objects.filter(pk=data["c"], is_archived=False).only("pk", "is_archived").first()
    )
    if customer is None:
        raise FeedbackLinkInvalid
    if Feedback.objects.filter(link_nonce_hash=nonce_hash).exists():
        raise FeedbackLinkUsed
    return FeedbackLink(customer=customer, nonce_hash=nonce_hash)


def feedback_link_submit(
    *, token: str, rating: int | None = None, nps: int | None = None, comment: str = ""
) -> Feedback:
    """Store the feedback sent through a link, on the link's customer, once.

    Side effects: one Feedback row (source LINK) through ``crm.services.feedback_submit``,
    marked with the link's nonce hash in the same transaction, so a replay (even a
    concurrent one) is refused with FeedbackLinkUsed and writes nothing. Raises the
    FeedbackLinkError subclasses of ``feedback_token_read`` and ValidationError for bad input.
    """
    with transaction.atomic():
        link = feedback_token_read(token=token)
        feedback = services.feedback_submit(
            customer=link.customer,
            rating=rating,
            nps=nps,
            comment=comment,
            source=Feedback.Source.LINK,
        )
        try:
            with transaction.atomic():
                Feedback.objects.filter(pk=feedback.pk).update(link_nonce_hash=link.nonce_hash)
        except IntegrityError as exc:
            raise FeedbackLinkUsed from exc
        feedback.link_nonce_hash = link.nonce_hash
    return feedback


# --- Short links ---------------------------------------------------------------------------

SHORT_SALT = "crm.feedback_link.short.v1"
# Letters and digits only: phones turn the whole link into one tap, and none is read as
# punctuation at the end of a sentence. 8 random characters (47 bits) and a 4-character
# signature (1 chance in 14.8 million for a guess to pass it).
SHORT_ALPHABET = string.ascii_letters + string.digits
SHORT_RANDOM_LENGTH = 8
SHORT_SIGNATURE_LENGTH = 4
SHORT_CODE_LENGTH = SHORT_RANDOM_LENGTH + SHORT_SIGNATURE_LENGTH
_SHORT_CODE = re.compile(rf"[A-Za-z0-9]{{{SHORT_CODE_LENGTH}}}")


def _short_signature(random_part: str) -> str:
    number = int.from_bytes(salted_hmac(SHORT_SALT, random_part).digest()[:8], "big")
    characters = []
    for _ in range(SHORT_SIGNATURE_LENGTH):
        number, index = divmod(number, len(SHORT_ALPHABET))
        characters.append(SHORT_ALPHABET[index])
    return "".join(characters)


def short_code_signed(code: str) -> bool:
    """True when the code has the right shape and its signature matches (no query)."""
    if not _SHORT_CODE.fullmatch(code):
        return False
    random_part, signature = code[:SHORT_RANDOM_LENGTH], code[SHORT_RANDOM_LENGTH:]
    return constant_time_compare(signature, _short_signature(random_part))


def feedback_short_link_create(*, customer: Customer) -> FeedbackShortLink:
    """A new short link for the customer, valid for ``max_age()`` and usable once.

    Side effect: one FeedbackShortLink row. Raises FeedbackLinkInvalid for an archived
    customer (the link would not open).
    """
    if customer.is_archived:
        raise FeedbackLinkInvalid
    random_part = get_random_string(SHORT_RANDOM_LENGTH, SHORT_ALPHABET)
    now = timezone.now()
    return FeedbackShortLink.objects.create(
        code=random_part + _short_signature(random_part),
        customer=customer,
        created_at=now,
        expires_at=now + max_age(),
    )


def feedback_short_link_url(*, link: FeedbackShortLink, request=None) -> str:
    """The short link's URL, absolute when ``request`` is given."""
    path = reverse("feedback_short", args=[link.code])
    return request.build_absolute_uri(path) if request is not None else path


def feedback_short_link_read(*, code: str, lock: bool = False) -> FeedbackShortLink:
    """Check a short code: signature first (no query), then the stored row.

    Raises FeedbackLinkInvalid (forged, unknown, archived customer), FeedbackLinkExpired or
    FeedbackLinkUsed. ``lock`` holds the row until the transaction ends (the submission).
    """
    if not short_code_signed(code):
        raise FeedbackLinkInvalid
    rows = FeedbackShortLink.objects.select_related("customer")
    link = (rows.select_for_update(of=("self",)) if lock else rows).filter(code=code).first()
    if link is None or link.customer.is_archived:
        raise FeedbackLinkInvalid
    if link.used_at is not None:
        raise FeedbackLinkUsed
    if link.expires_at <= timezone.now():
        raise FeedbackLinkExpired
    return link


def feedback_short_link_submit(
    *, code: str, rating: int | None = None, nps: int | None = None, comment: str = ""
) -> Feedback:
    """Store the feedback sent through a short link, once.

    Side effects: one Feedback row (source LINK) through ``crm.services.feedback_submit`` and
    the link marked used, in one transaction: a replay, even a concurrent one, is refused
    with FeedbackLinkUsed and writes nothing. Raises the errors of
    ``feedback_short_link_read`` and ValidationError for bad input.
    """
    with transaction.atomic():
        link = feedback_short_link_read(code=code, lock=True)
        feedback = services.feedback_submit(
            customer=link.customer,
            rating=rating,
            nps=nps,
            comment=comment,
            source=Feedback.Source.LINK,
        )
        # Conditional, so that two submissions racing past the read cannot both count.
        marked = FeedbackShortLink.objects.filter(pk=link.pk, used_at__isnull=True).update(
            used_at=timezone.now()
        )
        if not marked:
            raise FeedbackLinkUsed
    return feedback


# --- Rate limits -----------------------------------------------------------------------------


def rate_limit_exceeded(*, key: str, limit: int, window_seconds: int) -> bool:
    """Count one hit on ``key`` in Django's cache; True once more than ``limit`` in the window.

    A fixed window: the counter starts at the first hit and expires ``window_seconds`` later.
    Works with any cache backend; with the default per-process LocMemCache each web worker
    counts on its own, so production should use a shared cache (see CACHE_URL).
    """
    cache_key = f"feedback-link-rate:{key}"
    cache.add(cache_key, 0, timeout=window_seconds)
    try:
        hits = cache.incr(cache_key)
    except ValueError:  # expired between add and incr
        cache.set(cache_key, 1, timeout=window_seconds)
        hits = 1
    return hits > limit


def token_key(token: str) -> str:
    """A short, non-reversible key for per-token counters (tampered tokens included)."""
    return hashlib.sha256(token.encode()).hexdigest()[:32]
