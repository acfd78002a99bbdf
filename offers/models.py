"""Offers made to customers and their responses (presented, accepted, declined, held out)."""

from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from crm.models import Customer


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
