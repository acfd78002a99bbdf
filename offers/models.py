"""Offers made to customers and their responses (presented, accepted, declined, held out)."""

from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from crm.models import Customer


class OfferQuerySet(models.QuerySet):
    """The vocabulary of "open": one definition, read by ranking, Today, pages and services."""

    def open_on(self, day: date) -> "OfferQuerySet":
        """Active offers whose window holds ``day`` (both ends included; no date = no limit)."""
        return self.filter(
            Q(is_active=True)
            & (Q(starts_on__isnull=True) | Q(starts_on__lte=day))
            & (Q(ends_on__isnull=True) | Q(ends_on__gte=day))
        )

    def targeting(self, segment_ids: Iterable[int]) -> "OfferQuerySet":
        """Offers meant for any of these segments: those that target one of them, and those
        that target no segment at all.

        An offer saved without target segments is an offer for everyone: that is what a shop
        owner who leaves the field empty means (the form's field is optional and says so), and
        it is what presenting it to a segment already allowed. Reading it as "for nobody"
        would leave a live offer that no page ever suggests.
        """
        ids = list(segment_ids)
        targeted = Offer.segments.through.objects.filter(offer_id=models.OuterRef("pk"))
        return self.filter(
            models.Exists(targeted.filter(segment_id__in=ids)) | ~models.Exists(targeted)
        )


class Offer(models.Model):
    class Channel(models.TextChoices):
        EMAIL = "email", "E-mail"
        PHONE = "phone", "Phone"
        IN_PERSON = "in_person", "In person"
        SMS = "sms", "SMS"
        OTHER = "other", "Other"

    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    segments = models.ManyToManyField(
        "segmentation.Segment",
        blank=True,
        related_name="offers",
        help_text="Target segments.",
        # The tables were created when offers lived in the crm app; they keep their names.
        db_table="crm_offer_segments",
    )
    channel = models.CharField(max_length=20, choices=Channel.choices, default=Channel.EMAIL)
    starts_on = models.DateField(null=True, blank=True)
    ends_on = models.DateField(null=True, blank=True)
    discount_percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(0), MaxValueValidator(100)],
        help_text="Discount on the purchases it brings, if any.",
    )
    fixed_cost = models.DecimalField(
        max_digits=10,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="Cost per acceptance (a gift, a free session...), if any.",
    )
    # Share of eligible customers kept as a control group when the offer is presented.
    holdout_share = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        default=Decimal("0.100"),
        validators=[MinValueValidator(0), MaxValueValidator(Decimal("0.9"))],
    )
    # Purchases within this many days after acceptance count as the offer's revenue.
    attribution_days = models.PositiveSmallIntegerField(default=30)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    # The e-mail that carries the offer: plain text with merge fields ({first_name}, ...;
    # offers.messages.MERGE_FIELDS), filled in with str.format_map, never run as a template.
    email_subject = models.CharField(max_length=200, blank=True)
    email_body = models.TextField(blank=True)

    objects = OfferQuerySet.as_manager()

    class Meta:
        db_table = "crm_offer"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(starts_on__isnull=True)
                | Q(ends_on__isnull=True)
                | Q(ends_on__gte=models.F("starts_on")),
                name="offer_window_ordered",
            ),
            models.CheckConstraint(
                condition=Q(discount_percent__isnull=True)
                | Q(discount_percent__gte=0, discount_percent__lte=100),
                name="offer_discount_range",
            ),
        ]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("offers:offer_detail", args=[self.pk])

    def is_open_on(self, day: date) -> bool:
        """Whether the offer may be presented on ``day``: the same rule as
        ``Offer.objects.open_on(day)``, for an offer already in hand (no query)."""
        if not self.is_active:
            return False
        if self.starts_on is not None and day < self.starts_on:
            return False
        return self.ends_on is None or day <= self.ends_on


class OfferResponse(models.Model):
    class Outcome(models.TextChoices):
        PRESENTED = "presented", "Presented, no answer yet"
        ACCEPTED = "accepted", "Accepted"
        DECLINED = "declined", "Declined"
        HOLDOUT = "holdout", "Held out (control group)"

    offer = models.ForeignKey(Offer, on_delete=models.CASCADE, related_name="responses")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="offer_responses")
    # The customer's segment when the offer was presented, for per-segment results.
    segment = models.ForeignKey(
        "segmentation.Segment",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="offer_responses",
    )
    outcome = models.CharField(max_length=10, choices=Outcome.choices, default=Outcome.PRESENTED)
    presented_at = models.DateTimeField(default=timezone.now)
    responded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "crm_offerresponse"
        ordering = ["-presented_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["offer", "customer"], name="offer_response_unique"),
        ]
        indexes = [
            models.Index(fields=["offer", "outcome"], name="offer_response_outcome_idx"),
            models.Index(fields=["segment", "offer"], name="offer_response_segment_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.offer} → {self.customer}: {self.get_outcome_display()}"


# Outcomes of customers who were treated (the offer was made to them), as opposed to held out.
TREATED_OUTCOMES = (
    OfferResponse.Outcome.PRESENTED,
    OfferResponse.Outcome.ACCEPTED,
    OfferResponse.Outcome.DECLINED,
)


class DeliveryQuerySet(models.QuerySet):
    def stale_sending(self, *, before: "datetime") -> "DeliveryQuerySet":
        """Rows claimed for sending before ``before`` and never marked: their worker died."""
        return self.filter(status=Delivery.Status.SENDING, claimed_at__lt=before)

    def bounced_to(self, email) -> "DeliveryQuerySet":
        """Messages to ``email`` (an address or an OuterRef to one) that bounced for good: that
        address gets no marketing again (offers.mailing.customers_marketable)."""
        return self.filter(status=Delivery.Status.BOUNCED, email=email)


class Delivery(models.Model):
    """One offer e-mail to one customer, written before it is sent.

    The row is the send's memory: queued -> sending (claimed, in a short transaction) -> sent
    or failed; bounced when the server refuses the address or a bounce report comes back
    later (a permanent failure: that address is not written to again). A row left "sending"
    by a worker that died is never sent again (at most once:
    offers.services.deliveries_give_up_stale).
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        BOUNCED = "bounced", "Bounced"

    offer = models.ForeignKey(Offer, on_delete=models.CASCADE, related_name="deliveries")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="deliveries")
    segment = models.ForeignKey(
        "segmentation.Segment",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="deliveries",
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    message_id = models.CharField(max_length=255, blank=True)
    # The address the message went to: a hard bounce stops marketing to that address only,
    # so a customer who gives a new one can be written to again.
    email = models.EmailField(blank=True)
    # When a bounce report about this message arrived (offers.bounces), after it was sent.
    bounced_at = models.DateTimeField(null=True, blank=True)

    objects = DeliveryQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["offer", "customer"], name="delivery_unique"),
        ]
        indexes = [
            # The claim's "next queued message of this offer, lowest id first" reads one
            # entry here instead of sorting every row still queued (per message, at 100,000).
            models.Index(fields=["offer", "status", "id"], name="delivery_offer_queue_idx"),
            models.Index(fields=["status", "claimed_at"], name="delivery_status_claimed_idx"),
            # Bounce reports name the original message by its Message-ID.
            models.Index(fields=["message_id"], name="delivery_message_id_idx"),
        ]
        verbose_name_plural = "deliveries"

    def __str__(self) -> str:
        return f"{self.offer} → {self.customer}: {self.get_status_display()}"
