"""Customers, their purchases and feedback."""

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.urls import reverse
from django.utils import timezone

from crm.metrics import NPS_DETRACTOR_MAX, NPS_PROMOTER_MIN
from crm.search import customer_search_text
from crm.search_index import SearchTextTail

# Who counts as a promoter or a detractor (crm.metrics), as query conditions on Feedback.
NPS_PROMOTER = Q(nps__gte=NPS_PROMOTER_MIN)
NPS_DETRACTOR = Q(nps__lte=NPS_DETRACTOR_MAX)
# Unhappy feedback: a rating of 2 or less, or a detractor's score.
RATING_UNHAPPY_MAX = 2
FEEDBACK_UNHAPPY = Q(rating__lte=RATING_UNHAPPY_MAX) | NPS_DETRACTOR


# A customer's income and what tells their age: shown, edited and exported only by a user
# with this permission (the Owner role; superusers).
# Overdue = silent for longer than this many times their usual gap between purchases, once
# they have enough purchases (two gaps) for a rhythm; Customer.overdue_from stores the moment.
OVERDUE_FACTOR = 1.5
OVERDUE_MIN_PURCHASES = 3

CUSTOMER_SENSITIVE_FIELDS = ("birth_date", "age", "annual_income")
CUSTOMER_SENSITIVE_PERMISSION = "crm.view_customer_sensitive"


class Tag(models.Model):
    name = models.CharField(max_length=50, unique=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class CustomerQuerySet(models.QuerySet):
    def active(self):
        return self.filter(is_archived=False)

    def with_purchases(self):
        return self.filter(purchase_count__gt=0)

    def profiled(self):
        """Customers the segmentation may look at (they did not opt out of profiling)."""
        return self.filter(is_archived=False, profiling_opt_out=False)


class Customer(models.Model):
    name = models.CharField(max_length=200, blank=True)
    # Unique case-insensitively when present (see constraints); "" means unknown.
    email = models.EmailField(max_length=254, blank=True)
    phone = models.CharField(max_length=40, blank=True)
    # The shop's own id for this customer, unique per source system (e.g. "shop", "uci").
    external_source = models.CharField(max_length=40, blank=True)
    external_id = models.CharField(max_length=100, blank=True)

    birth_date = models.DateField(null=True, blank=True)
    # When only an age is known (no birth date); the birth date wins when both are set.
    age = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(0), MaxValueValidator(130)]
    )
    annual_income = models.DecimalField(
        max_digits=14, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(0)]
    )
    city = models.CharField(max_length=100, blank=True)
    country = models.CharField(max_length=100, blank=True)
    tags = models.ManyToManyField(Tag, blank=True, related_name="customers")
    notes = models.TextField(blank=True)

    marketing_consent = models.BooleanField(default=False)
    # When the customer unsubscribed from offer e-mails (the link in each message); set, it
    # stops marketing whatever marketing_consent says, until the customer opts in again.
    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    # Customers who opted out of profiling are never clustered (GDPR art. 21).
    profiling_opt_out = models.BooleanField(default=False)
    is_archived = models.BooleanField(default=False)

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Purchase statistics, kept in step with purchases by crm.services.customer_stats_refresh
    # so that list pages sort and filter on indexed columns instead of aggregating per request.
    purchase_count = models.PositiveIntegerField(default=0)
    total_spent = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))
    first_purchase_at = models.DateTimeField(null=True, blank=True)
    last_purchase_at = models.DateTimeField(null=True, blank=True)
    # When they become overdue by their own buying rhythm: last purchase + OVERDUE_FACTOR x
    # their mean gap between purchases; null without a rhythm (fewer than 3 purchases, or
    # under a day per gap). Stored so Today reads the overdue from an index instead of
    # evaluating the arithmetic on every customer. Kept in step by customer_stats_refresh.
    overdue_from = models.DateTimeField(null=True, blank=True, editable=False)
    # When a write of their purchases last refreshed these figures (customer_stats_refresh):
    # a run reuses the purchase days it kept for a customer only if their purchases have not
    # changed since (segmentation.prediction_selectors). NULL: no change recorded since the
    # column was added.
    purchases_changed_at = models.DateTimeField(null=True, blank=True, editable=False)

    # Name, e-mail and phone digits folded for search (crm.search.customer_search_text), kept
    # in step by every writer of those fields. PostgreSQL answers substring searches on it from
    # a trigram index (migration 0014); SQLite scans this one narrow column.
    search_text = models.TextField(blank=True, default="", editable=False)

    objects = CustomerQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [
            ("export_customer", "Can export customers and purchases as CSV"),
            ("view_customer_sensitive", "Can see a customer's income and birth date"),
        ]
        constraints = [
            models.UniqueConstraint(
                Lower("email"), condition=~Q(email=""), name="customer_email_ci_unique"
            ),
            models.UniqueConstraint(
                fields=["external_source", "external_id"],
                condition=~Q(external_id=""),
                name="customer_external_id_unique",
            ),
            models.CheckConstraint(
                condition=Q(age__isnull=True) | Q(age__lte=130), name="customer_age_range"
            ),
            models.CheckConstraint(
                condition=Q(annual_income__isnull=True) | Q(annual_income__gte=0),
                name="customer_income_non_negative",
            ),
            # SQLite stores any decimal: the digits of max_digits, enforced (crm.bounds).
            models.CheckConstraint(
                condition=Q(annual_income__isnull=True) | Q(annual_income__lt=10**12),
                name="customer_income_fits",
            ),
            models.CheckConstraint(
                condition=Q(total_spent__lt=10**12), name="customer_total_spent_fits"
            ),
        ]
        indexes = [
            models.Index(fields=["total_spent", "id"], name="customer_total_spent_idx"),
            models.Index(fields=["last_purchase_at", "id"], name="customer_last_purchase_idx"),
            models.Index(fields=["first_purchase_at", "id"], name="customer_first_purchase_idx"),
            # Today's overdue list: customers with a buying rhythm, most valuable first,
            # walked in order until enough are overdue (pages.today.customers_overdue).
            models.Index(
                fields=["total_spent", "id"],
                name="customer_overdue_value_idx",
                condition=models.Q(overdue_from__isnull=False),
            ),
            models.Index(Lower("name"), name="customer_name_lower_idx"),
            models.Index(fields=["phone"], name="customer_phone_idx"),
            # The admin changelist filters, each followed by its default ordering column.
            models.Index(
                fields=["purchase_count", "created_at"], name="customer_purchases_created_idx"
            ),
            models.Index(
                fields=["marketing_consent", "created_at"], name="customer_consent_created_idx"
            ),
            models.Index(
                fields=["is_archived", "created_at"], name="customer_archived_created_idx"
            ),
            # The few customers a run leaves out (segmentation.selectors: the label staging
            # reads them from here instead of scanning every customer for two flags).
            models.Index(
                fields=["id", "is_archived", "profiling_opt_out"],
                name="customer_not_profiled_idx",
                condition=Q(is_archived=True) | Q(profiling_opt_out=True),
            ),
            # Exact search on the shop's own id, whatever the source.
            models.Index(fields=["external_id"], name="customer_external_id_idx"),
            # A phone number searched by its last digits (crm.selectors.customer_search).
            models.Index(SearchTextTail("search_text"), name="customer_phone_tail_idx"),
        ]

    def __str__(self) -> str:
        return (
            self.name
            or self.email
            or f"{self.external_source or 'customer'} #{self.external_id or self.pk}"
        )

    def get_absolute_url(self) -> str:
        # The customer page combines every app, so it lives in the top app (pages): a URL name,
        # not an import.
        return reverse("pages:customer_detail", args=[self.pk])

    def search_text_set(self) -> None:
        """Recompute search_text from the name, e-mail and phone (call before saving)."""
        self.search_text = customer_search_text(name=self.name, email=self.email, phone=self.phone)

    @property
    def age_years(self) -> int | None:
        """Age from the birth date when known, else the recorded age."""
        if self.birth_date:
            today = timezone.localdate()
            years = today.year - self.birth_date.year
            return years - ((today.month, today.day) < (self.birth_date.month, self.birth_date.day))
        return self.age


class PurchaseQuerySet(models.QuerySet):
    def sales(self):
        return self.filter(kind=Purchase.Kind.SALE)

    def with_order_ids(self, *, source: str, order_ids: list[str]):
        """The purchases of these shop order ids. The condition of the partial unique index
        (purchase_external_order_unique) is repeated: without it PostgreSQL does not use
        that index for a long IN list and scans every purchase, batch after batch."""
        return self.filter(external_source=source, external_order_id__in=order_ids).exclude(
            external_order_id=""
        )


class Purchase(models.Model):
    class Kind(models.TextChoices):
        SALE = "sale", "Sale"
        REFUND = "refund", "Refund"

    class Channel(models.TextChoices):
        ONLINE = "online", "Online"
        IN_PERSON = "in_person", "In person"
        PHONE = "phone", "Phone"
        MARKETPLACE = "marketplace", "Marketplace"
        OTHER = "other", "Other"

    # No index of its own: purchase_cust_date_amt_idx starts with customer_id and serves every
    # lookup by customer; a second index made PostgreSQL plan the feature aggregate through
    # it (plus the table) instead of the covering index, twice as slow at 10M purchases.
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="purchases", db_index=False
    )
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.SALE)
    # Always >= 0; a refund is a purchase of kind "refund", never a negative amount.
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3, default=settings.DEFAULT_CURRENCY)
    purchased_at = models.DateTimeField(default=timezone.now)
    product = models.CharField(max_length=200, blank=True)
    category = models.CharField(max_length=100, blank=True)
    channel = models.CharField(max_length=20, choices=Channel.choices, blank=True)
    external_source = models.CharField(max_length=40, blank=True)
    external_order_id = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = PurchaseQuerySet.as_manager()

    class Meta:
        ordering = ["-purchased_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0), name="purchase_amount_non_negative"),
            # SQLite stores any decimal: max_digits=12 with 2 places, enforced (crm.bounds).
            models.CheckConstraint(condition=Q(amount__lt=10**10), name="purchase_amount_fits"),
            models.UniqueConstraint(
                fields=["external_source", "external_order_id"],
                condition=~Q(external_order_id=""),
                name="purchase_external_order_unique",
            ),
        ]
        indexes = [
            # Covers the per-customer aggregate of every segmentation run (no table lookups).
            models.Index(
                fields=["customer", "purchased_at", "amount"], name="purchase_cust_date_amt_idx"
            ),
            models.Index(fields=["purchased_at"], name="purchase_date_idx"),
            # The covering index above does not hold `kind`: the segmentation aggregate takes
            # the (few) refunds off through this small partial index instead.
            models.Index(
                fields=["customer", "purchased_at", "amount"],
                condition=Q(kind="refund"),
                name="purchase_refund_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.amount} {self.currency} on {self.purchased_at:%Y-%m-%d}"


class Feedback(models.Model):
    class Source(models.TextChoices):
        STAFF = "staff", "Recorded by staff"
        LINK = "link", "Customer feedback link"
        IMPORT = "import", "Imported"

    # Indexed by feedback_cust_date_idx, which starts with customer_id.
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="feedback", db_index=False
    )
    purchase = models.ForeignKey(
        Purchase, null=True, blank=True, on_delete=models.SET_NULL, related_name="feedback"
    )
    rating = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(5)]
    )
    nps = models.PositiveSmallIntegerField(
        "NPS score",
        null=True,
        blank=True,
        validators=[MinValueValidator(0), MaxValueValidator(10)],
        help_text="How likely to recommend us, 0-10.",
    )
    comment = models.TextField(blank=True)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.STAFF)
    created_at = models.DateTimeField(default=timezone.now)
    # Set when the owner has answered this feedback (unhappy customers wait until then).
    answered_at = models.DateTimeField(null=True, blank=True)
    # Hash of the nonce of the feedback link it came through: each link is used once.
    link_nonce_hash = models.CharField(
        max_length=64, null=True, blank=True, unique=True, editable=False
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "feedback"
        constraints = [
            models.CheckConstraint(
                condition=Q(rating__isnull=True) | Q(rating__gte=1, rating__lte=5),
                name="feedback_rating_range",
            ),
            models.CheckConstraint(
                condition=Q(nps__isnull=True) | Q(nps__gte=0, nps__lte=10),
                name="feedback_nps_range",
            ),
            models.CheckConstraint(
                condition=Q(rating__isnull=False) | Q(nps__isnull=False),
                name="feedback_has_score",
            ),
        ]
        indexes = [
            models.Index(fields=["customer", "created_at"], name="feedback_cust_date_idx"),
            # The Today list of unhappy feedback nobody answered yet.
            models.Index(
                fields=["-created_at", "-id"],
                condition=Q(answered_at__isnull=True) & FEEDBACK_UNHAPPY,
                name="feedback_unhappy_open_idx",
            ),
        ]

    def __str__(self) -> str:
        parts = []
        if self.rating is not None:
            parts.append(f"rating {self.rating}/5")
        if self.nps is not None:
            parts.append(f"NPS {self.nps}/10")
        return ", ".join(parts) or "feedback"


class Activity(models.Model):
    """Something the owner did with a customer: a call, an e-mail, a note (who, when, what)."""

    class Kind(models.TextChoices):
        CALL = "call", "Call"
        EMAIL = "email", "E-mail"
        NOTE = "note", "Note"

    # Indexed by activity_cust_date_idx, which starts with customer_id.
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="activities", db_index=False
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    summary = models.TextField(blank=True)
    happened_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-happened_at", "-id"]
        verbose_name_plural = "activities"
        indexes = [
            # The customer's timeline, and Today's "handled since" checks per customer.
            models.Index(fields=["customer", "happened_at"], name="activity_cust_date_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} on {self.happened_at:%Y-%m-%d}"


class FollowUpQuerySet(models.QuerySet):
    def open(self):
        return self.filter(done_at__isnull=True)

    def due_on(self, day):
        """Open follow-ups due on or before the day."""
        return self.open().filter(due_on__lte=day)


class FollowUp(models.Model):
    """A reminder to get back to a customer on a day; done, or snoozed to a later day."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="follow_ups")
    due_on = models.DateField()
    note = models.CharField(max_length=500, blank=True)
    done_at = models.DateTimeField(null=True, blank=True)
    snoozed = models.PositiveSmallIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = FollowUpQuerySet.as_manager()

    class Meta:
        ordering = ["due_on", "id"]
        indexes = [
            # Today's "follow-ups due": only the open ones, by day.
            models.Index(
                fields=["due_on", "id"],
                condition=Q(done_at__isnull=True),
                name="followup_open_due_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"Follow up on {self.due_on:%Y-%m-%d}"


class AuditEntry(models.Model):
    """One thing someone did with customer data: who, when, from where, what, on what.

    Append-only: written by crm.audit.audit_record, never changed but to erase a customer
    (crm.audit.audit_customer_anonymise); the database refuses any other UPDATE (and on
    PostgreSQL a DELETE of an entry younger than 30 days, migrations 0019 and 0021);
    crm.audit.audit_prune removes the entries past AUDIT_RETENTION_DAYS.
    """

    class Action(models.TextChoices):
        VIEWED = "viewed", "Viewed"
        EXPORTED = "exported", "Exported"
        IMPORTED = "imported", "Imported"
        CREATED = "created", "Created"
        EDITED = "edited", "Edited"
        DELETED = "deleted", "Deleted"
        RAN_SEGMENTATION = "ran_segmentation", "Ran the segmentation"
        CHANGED_SEGMENT = "changed_segment", "Changed a segment"
        ERASED = "erased", "Erased (right to erasure)"

    at = models.DateTimeField(default=timezone.now)
    # No foreign key: an entry outlives its user and is never updated when the user goes.
    user_id = models.IntegerField(null=True, blank=True)
    username = models.CharField(max_length=150, blank=True)
    address = models.GenericIPAddressField(null=True, blank=True)
    action = models.CharField(max_length=20, choices=Action.choices)
    object_type = models.CharField(max_length=100, blank=True)  # "crm.customer"
    object_id = models.CharField(max_length=100, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    count = models.PositiveIntegerField(null=True, blank=True)  # rows exported or imported
    detail = models.TextField(blank=True)  # the filter of an export, the changed fields...

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name_plural = "audit entries"
        indexes = [
            models.Index(fields=["at"], name="audit_at_idx"),
            models.Index(fields=["object_type", "object_id", "at"], name="audit_object_idx"),
        ]

    def __str__(self) -> str:
        who = self.username or "system"
        what = f" {self.object_type} {self.object_id}".rstrip()
        return f"{self.at:%Y-%m-%d %H:%M} {who} {self.get_action_display().lower()}{what}"


class ImportJobQuerySet(models.QuerySet):
    def unfinished(self):
        return self.exclude(status__in=ImportJob.FINISHED)

    def waiting_for_worker(self):
        """Jobs a worker holds or should pick up: silent ones belong to a dead worker."""
        return self.filter(status__in=ImportJob.WORKER_STATUSES)


class ImportJob(models.Model):
    """A CSV import run by the worker: upload, preview (a dry run), confirmation, import.

    The uploaded file lives under VAR_DIR/imports/ (`upload_path`) until the job ends (done,
    failed or cancelled) or is abandoned (crm.import_jobs.import_jobs_clean).
    """

    class Kind(models.TextChoices):
        CUSTOMERS = "customers", "Customers"
        PURCHASES = "purchases", "Purchases"

    class Status(models.TextChoices):
        QUEUED = "queued", "Waiting for the worker"
        PREVIEWING = "previewing", "Checking the file"
        READY = "ready", "Ready to import"
        IMPORTING = "importing", "Importing"
        DONE = "done", "Imported"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    FINISHED = (Status.DONE, Status.FAILED, Status.CANCELLED)
    WORKER_STATUSES = (Status.QUEUED, Status.PREVIEWING, Status.IMPORTING)

    kind = models.CharField(max_length=10, choices=Kind.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    filename = models.CharField(max_length=255)  # as uploaded, for the pages
    stored_name = models.CharField(max_length=64, unique=True)  # under VAR_DIR/imports/
    size = models.PositiveBigIntegerField(default=0)  # bytes as uploaded
    # only_valid, mapping, preset, create_customers: the upload form's choices.
    options = models.JSONField(default=dict)
    progress = models.PositiveSmallIntegerField(default=0)  # percent of the file read
    rows_read = models.PositiveIntegerField(default=0)
    # The preview's (then the import's) report: summary lines, errors, first rows.
    report = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    # Who uploaded (and confirmed: only they see the job), and from where, for the audit trail.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    address = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Touched while a worker holds the job; silence means the worker died.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Times a worker started this job's current step: more than one means one died under it.
    attempts = models.PositiveSmallIntegerField(default=0)

    objects = ImportJobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "created_at"], name="importjob_status_idx")]

    def __str__(self) -> str:
        return f"Import of {self.filename} ({self.get_status_display().lower()})"

    @property
    def upload_path(self):
        return settings.VAR_DIR / "imports" / self.stored_name

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    def progress_message(self) -> str:
        """Where the job is, in a sentence for the progress page."""
        Status = self.Status
        if self.status == Status.QUEUED:
            return "Waiting for the worker to start checking the file…"
        if self.status in (Status.PREVIEWING, Status.IMPORTING):
            verb = "Checking" if self.status == Status.PREVIEWING else "Importing"
            if self.progress >= 100:
                return (
                    f"{verb}: all {self.rows_read:,} rows read; comparing them with what is stored…"
                )
            if not self.rows_read:
                return f"{verb}: starting…"
            return f"{verb}: {self.progress} % of the file read ({self.rows_read:,} rows)."
        return self.get_status_display() + "."


class BusinessSettings(models.Model):
    """The business's name, currency and time zone, edited by the owner on the Settings page.

    One row at most (id 1); while there is none, the values come from the environment
    (BUSINESS_NAME, DEFAULT_CURRENCY, TIME_ZONE). Read through crm.selectors.business_get.
    """

    SINGLE_ID = 1

    name = models.CharField(max_length=100)
    currency = models.CharField(max_length=3)
    time_zone = models.CharField(max_length=64)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "business settings"
        verbose_name_plural = "business settings"
        constraints = [
            models.CheckConstraint(condition=Q(id=1), name="business_settings_single_row"),
        ]

    def __str__(self) -> str:
        return self.name


class FeedbackShortLinkQuerySet(models.QuerySet):
    def usable(self, *, now):
        return self.filter(used_at__isnull=True, expires_at__gt=now)


class FeedbackShortLink(models.Model):
    """A short feedback link for a text message: /f/<code>, single use, expiring.

    The code carries its own short signature (crm.feedback_link), so a forged code is
    refused before the database is asked; this row says whose link it is, until when it
    works and when it was used.
    """

    code = models.CharField(max_length=16, unique=True)
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="feedback_short_links"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    objects = FeedbackShortLinkQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.code
