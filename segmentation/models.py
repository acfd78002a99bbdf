"""Segmentation runs, the segments they maintain, and each customer's segment history."""

from datetime import UTC, datetime, timedelta

from django.db import models
from django.urls import reverse
from django.utils import timezone


class SegmentationRunQuerySet(models.QuerySet):
    def succeeded(self):
        return self.filter(status=SegmentationRun.Status.SUCCEEDED)

    def latest_succeeded(self):
        return self.succeeded().order_by("-finished_at", "-id").first()

    def predictions_fitted(self):
        """Succeeded runs whose purchase models were fitted and their predictions stored."""
        return self.succeeded().filter(predictions__status="ok")


class SegmentationRun(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        REJECTED = "rejected", "Rejected by sanity checks"
        SKIPPED = "skipped", "Skipped (another run was in progress)"

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "Schedule"
        MANUAL = "manual", "Recluster now"
        COMMAND = "command", "Command line"

    class Method(models.TextChoices):
        RFM = "rfm", "RFM scoring"
        KMEANS = "kmeans", "K-Means"
        MINIBATCH = "minibatch", "MiniBatch K-Means"
        AGGLOMERATIVE = "agglomerative", "Agglomerative (Ward)"

    class Confidence(models.TextChoices):
        LOW = "low", "Low"
        MEDIUM = "medium", "Medium"
        HIGH = "high", "High"

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.SCHEDULE)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Reference time for recency and tenure; fixed when the run starts.
    reference_time = models.DateTimeField(null=True, blank=True)
    # Set when the run looks at the business as of a past day (the business's local date):
    # only purchases and feedback up to and including that day count.
    as_of = models.DateField(null=True, blank=True)
    phase = models.CharField(max_length=40, blank=True)
    progress = models.PositiveSmallIntegerField(default=0)  # percent
    task_id = models.CharField(max_length=64, blank=True)
    # Set while the run is pending or running, NULL otherwise: the unique constraint on it is
    # the database guard that admits one run at a time, on SQLite and PostgreSQL alike.
    active_slot = models.PositiveSmallIntegerField(null=True, blank=True, editable=False)
    # Touched at every progress step; a pending/running run whose heartbeat is older than the
    # task's hard time limit belongs to a worker that died and is recovered by the next run.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Times the run's worker died mid-run (its task is then redelivered and starts over).
    worker_losses = models.PositiveSmallIntegerField(default=0)

    method = models.CharField(max_length=15, choices=Method.choices, blank=True)
    k = models.PositiveSmallIntegerField(null=True, blank=True)
    params = models.JSONField(default=dict, blank=True)

    n_customers = models.PositiveIntegerField(default=0)
    n_clustered = models.PositiveIntegerField(default=0)
    n_prospects = models.PositiveIntegerField(default=0)
    n_opted_out = models.PositiveIntegerField(default=0)
    n_pinned = models.PositiveIntegerField(default=0)
    n_moved = models.PositiveIntegerField(default=0)
    # Per feature: how many customers had it missing and what was done about it.
    missing = models.JSONField(default=dict, blank=True)

    silhouette = models.FloatField(null=True, blank=True)
    davies_bouldin = models.FloatField(null=True, blank=True)
    calinski_harabasz = models.FloatField(null=True, blank=True)
    fidelity = models.FloatField(null=True, blank=True)
    sizes = models.JSONField(default=dict, blank=True)
    confidence = models.CharField(max_length=10, choices=Confidence.choices, blank=True)
    confidence_note = models.CharField(max_length=200, blank=True)
    # Seconds per phase, for the admin and the benchmark.
    timings = models.JSONField(default=dict, blank=True)
    # Every segmentation the engine tried (k, method, silhouette, stability, smallest
    # segment share, eligible, chosen): why this one was kept, on the admin page.
    candidates = models.JSONField(default=list, blank=True)
    # Plain sentences about the data itself, e.g. that the newest purchase is months old.
    warnings = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    # The purchase and order-value models fitted by the run (see segmentation.predictions):
    # model, time_unit, r, alpha, a, b, log_likelihood, gg_p, gg_q, gg_gamma, customers,
    # fit_seconds and gg_fit_seconds, fit_start and gg_fit_start (where each search began:
    # the previous run's parameters or zeros), status (ok, not_enough_data, implausible)
    # and reason.
    predictions = models.JSONField(default=dict, blank=True)

    objects = SegmentationRunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("run_segmentation", "Can start a segmentation run")]
        indexes = [models.Index(fields=["status", "finished_at"], name="run_status_finished_idx")]
        constraints = [
            models.UniqueConstraint(fields=["active_slot"], name="run_one_active_unique"),
        ]

    def __str__(self) -> str:
        return f"Run #{self.pk} ({self.get_status_display()})"

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class SegmentQuerySet(models.QuerySet):
    def active(self):
        return self.filter(is_active=True)

    def at_risk(self):
        """Segments of customers slipping away who are worth winning back."""
        return self.filter(behaviour__in=Segment.AT_RISK_BEHAVIOURS)


class Segment(models.Model):
    class Kind(models.TextChoices):
        CLUSTER = "cluster", "Found by clustering"
        PROSPECTS = "prospects", "Prospects / no purchase yet"
        OPTED_OUT = "opted_out", "Opted out of profiling"

    class Behaviour(models.TextChoices):
        CHAMPIONS = "champions", "Champions"
        LOYAL = "loyal", "Loyal"
        POTENTIAL_LOYALISTS = "potential_loyalists", "Potential loyalists"
        NEW = "new", "New customers"
        PROMISING = "promising", "Promising"
        NEED_ATTENTION = "need_attention", "Need attention"
        ABOUT_TO_SLEEP = "about_to_sleep", "About to sleep"
        AT_RISK = "at_risk", "At risk"
        CANT_LOSE = "cant_lose", "Can't lose them"
        HIBERNATING = "hibernating", "Hibernating"
        LOST = "lost", "Lost"
        BIG_SPENDERS = "big_spenders", "Big spenders"
        UNHAPPY_HIGH_VALUE = "unhappy_high_value", "Unhappy high-value"

    AT_RISK_BEHAVIOURS = (
        Behaviour.AT_RISK,
        Behaviour.CANT_LOSE,
        Behaviour.ABOUT_TO_SLEEP,
        Behaviour.UNHAPPY_HIGH_VALUE,
    )

    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.CLUSTER)
    # What the segment's customers do, set by every run from the numbers (names belong to
    # the owner): pages select on this, never on a name.
    behaviour = models.CharField(max_length=20, choices=Behaviour.choices, blank=True)
    # What the owner sees; the run proposes auto_name/auto_description and the owner may
    # override them (name_is_custom), which later runs then keep.
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    auto_name = models.CharField(max_length=100, blank=True)
    auto_description = models.TextField(blank=True)
    name_is_custom = models.BooleanField(default=False)
    description_is_custom = models.BooleanField(default=False)

    profile = models.TextField(blank=True)  # plain-language profile
    profile_values = models.JSONField(default=dict, blank=True)  # medians in plain units
    rules = models.JSONField(default=list, blank=True)  # surrogate-tree rules, plain units
    rules_text = models.TextField(blank=True)
    fidelity = models.FloatField(null=True, blank=True)
    # Centre in the run-independent feature space used to match runs to segments.
    centroid = models.JSONField(default=list, blank=True)

    # Precomputed at the end of each run so pages never aggregate a million rows per request.
    size = models.PositiveIntegerField(default=0)
    share_customers = models.FloatField(default=0)
    revenue = models.DecimalField(max_digits=16, decimal_places=2, default=0)
    share_revenue = models.FloatField(default=0)
    color = models.CharField(max_length=7, blank=True)

    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by_run = models.ForeignKey(
        SegmentationRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_run = models.ForeignKey(
        SegmentationRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    retired_at = models.DateTimeField(null=True, blank=True)

    objects = SegmentQuerySet.as_manager()

    class Meta:
        ordering = ["-is_active", "-size", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["name"],
                condition=models.Q(is_active=True),
                name="segment_active_name_unique",
                violation_error_message="Another active segment already has this name.",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        # The segment page combines segments and offers, so the top app (pages) serves it:
        # a URL name, not an import.
        return reverse("pages:segment_detail", args=[self.pk])


class Membership(models.Model):
    """A customer's current segment, why, and whether the owner pinned them there.

    Its own narrow table rather than columns on the customer: a run may rewrite every label,
    and a customer row carries a dozen indexes (search, filters, page sorts) that each
    rewrite would update too; the indexes here are only those segment pages need.
    Customers without a row have no segment yet.
    """

    # No database FK constraints here nor on the history below: PostgreSQL checks each row
    # by locking the customer (or segment, or run) it points to, and for the million rows a
    # first run writes, those locks cost more than the rows (measured at 1M customers: a
    # first run took 85 s with them, 40 s without). Deleting a customer still deletes these
    # rows (Django cascades them); the run writes only customers it has just read.
    customer = models.OneToOneField(
        "crm.Customer",
        primary_key=True,
        on_delete=models.CASCADE,
        db_constraint=False,
        related_name="membership",
    )
    # Segments are never deleted. membership_segment_idx serves every lookup.
    segment = models.ForeignKey(
        Segment,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        related_name="memberships",
    )
    reason = models.CharField(max_length=300, blank=True)
    # A pinned customer keeps their segment whatever the runs compute.
    pinned = models.BooleanField(default=False)
    # Copies of the customer's figures, kept in step by crm.services.customer_stats_refresh,
    # so a segment's members are listed by spend or last purchase through an index: ordered
    # through the customer's own index instead, the walk meets the members of a low-spend
    # segment last (10 s for "Prospects" at 1M customers).
    total_spent = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    last_purchase_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["segment", "customer"], name="membership_segment_idx"),
            models.Index(
                fields=["segment", "total_spent", "customer"], name="membership_spent_idx"
            ),
            models.Index(
                fields=["segment", "last_purchase_at", "customer"], name="membership_last_idx"
            ),
            # The few pinned customers, read by every run.
            models.Index(
                fields=["customer"], condition=models.Q(pinned=True), name="membership_pinned_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id} in {self.segment_id or '-'}"


class SegmentSnapshot(models.Model):
    """One segment's figures as of one run: the history behind the trend charts."""

    run = models.ForeignKey(SegmentationRun, on_delete=models.CASCADE, related_name="snapshots")
    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="snapshots")
    size = models.PositiveIntegerField(default=0)
    revenue = models.DecimalField(max_digits=16, decimal_places=2, default=0)
    avg_rating = models.FloatField(null=True, blank=True)
    nps = models.FloatField(null=True, blank=True)
    profile_values = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "segment"], name="snapshot_run_segment_unique")
        ]

    def __str__(self) -> str:
        return f"{self.segment} in run #{self.run_id}: {self.size}"


class SegmentTransition(models.Model):
    """How many customers moved from one segment to another in a run."""

    run = models.ForeignKey(SegmentationRun, on_delete=models.CASCADE, related_name="transitions")
    from_segment = models.ForeignKey(
        Segment, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    to_segment = models.ForeignKey(
        Segment, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    count = models.PositiveIntegerField()

    class Meta:
        ordering = ["-count"]

    def __str__(self) -> str:
        return f"{self.count} moved {self.from_segment or '-'} → {self.to_segment or '-'}"


class SegmentMembershipChange(models.Model):
    """One change of one customer's segment: the customer's segment history.

    Written in bulk by runs (a million rows by a first run): no database FK constraints,
    for the reason given on Membership; Django still cascades and nulls on delete.
    """

    customer = models.ForeignKey(
        "crm.Customer",
        on_delete=models.CASCADE,
        db_constraint=False,
        db_index=False,  # change_customer_idx starts with the customer
        related_name="segment_changes",
    )
    run = models.ForeignKey(
        SegmentationRun,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        db_constraint=False,
        db_index=False,  # change_run_to_idx starts with the run
        related_name="changes",
    )
    from_segment = models.ForeignKey(
        Segment,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        db_constraint=False,
        db_index=False,  # read through a run or a customer (the indexes below)
        related_name="+",
    )
    to_segment = models.ForeignKey(
        Segment,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        db_constraint=False,
        db_index=False,  # read through a run or a customer (the indexes below)
        related_name="+",
    )
    changed_at = models.DateTimeField(default=timezone.now)
    reason = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-changed_at", "-id"]
        indexes = [
            models.Index(fields=["customer", "changed_at"], name="change_customer_idx"),
            models.Index(fields=["run", "to_segment"], name="change_run_to_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id}: {self.from_segment or '-'} → {self.to_segment or '-'}"


class CustomerPrediction(models.Model):
    """What the purchase models expect of one customer, as of the run that computed it.

    One row per customer who has bought, all replaced together by each successful fit. No
    database FK constraint, for the reason given on Membership.
    """

    customer = models.OneToOneField(
        "crm.Customer",
        primary_key=True,
        on_delete=models.CASCADE,
        db_constraint=False,
        related_name="prediction",
    )
    run = models.ForeignKey(
        SegmentationRun,
        null=True,
        on_delete=models.SET_NULL,
        db_constraint=False,
        db_index=False,  # every row of a refresh shares one run
        related_name="+",
    )
    as_of = models.DateField()
    p_alive = models.FloatField()
    expected_purchases_30d = models.FloatField()
    expected_purchases_90d = models.FloatField()
    expected_purchases_365d = models.FloatField()
    expected_order_value = models.FloatField()
    value_12m = models.FloatField()
    # What the next 12 months would be worth if they are still a customer, times the chance
    # that they are not: value_12m / p_alive x (1 - p_alive). Stored to be listed by index.
    value_at_risk = models.FloatField()
    # Not stored: the purchase summary the figures come from (repeat days, first and last
    # day). Written for every customer each night it would cost a quarter of this write;
    # the customer page sums it for its one customer (customer_purchase_summary).

    class Meta:
        indexes = [
            # The customers slipping away: most value at risk first.
            models.Index(fields=["-value_at_risk"], name="prediction_risk_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id}: alive {self.p_alive:.2f}, {self.value_12m:.0f} in 12 months"


class PurchaseDaysRead(models.Model):
    """One read that summed customers' purchase days and kept them (CustomerPurchaseDays):
    the zone its local days are in, the day it summed up to and when it started. Every row
    it kept points here, so the nightly read takes one number a row instead of a zone to
    compare and a day and a moment to convert from text (on SQLite at a million customers,
    the rows' read 1.08 s instead of 1.40-1.48 s)."""

    time_zone = models.CharField(max_length=64)  # the local days are this zone's
    as_of = models.DateField()  # sales up to the end of this local day
    computed_at = models.DateTimeField()  # when the read that summed them started

    def __str__(self) -> str:
        return f"{self.time_zone}, to {self.as_of:%Y-%m-%d}, at {self.computed_at:%Y-%m-%d %H:%M}"


class CustomerPurchaseDays(models.Model):
    """One customer's purchase days as the predictions' read summed them (see
    prediction_selectors.customer_purchase_totals), kept so the next nightly run reads them
    instead of summing the same purchases again.

    A row is reused only while it still holds (prediction_selectors._KEPT_VALID): its read's
    time zone, no sale after its read's as-of day, and the customer's purchases unchanged
    since well before that read started. No database FK constraint, for the reason given on
    Membership.
    """

    customer = models.OneToOneField(
        "crm.Customer",
        primary_key=True,
        on_delete=models.CASCADE,
        db_constraint=False,
        related_name="purchase_days",
    )
    # The run that summed them: only so the run can sweep the rows it wrote for customers
    # deleted meanwhile (segmentation.customer_rows). Unchanged customers' rows outlive it.
    run = models.ForeignKey(
        SegmentationRun,
        null=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        related_name="+",
    )
    read = models.ForeignKey(
        PurchaseDaysRead,
        on_delete=models.DO_NOTHING,  # a read is deleted only once no row points to it
        db_constraint=False,
        db_index=False,
        related_name="+",
    )
    days = models.PositiveIntegerField()  # local days with a sale
    first_day = models.DateField()
    last_day = models.DateField()
    total = models.FloatField()  # of every sale
    first_total = models.FloatField()  # of the sales on the first day

    def __str__(self) -> str:
        return f"{self.customer_id}: {self.days} days, the last {self.last_day:%Y-%m-%d}"


UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def moment_us(moment: datetime) -> int:
    """A moment as whole microseconds since 1970-01-01 UTC, as CustomerFeatures keeps them."""
    return (moment - UNIX_EPOCH) // timedelta(microseconds=1)


def moment_from_us(us: int) -> datetime:
    """A moment kept as whole microseconds since 1970-01-01 UTC."""
    return UNIX_EPOCH + timedelta(microseconds=us)


def days_before(as_of: datetime | None, us: int) -> float | None:
    """Days from a moment kept in microseconds to ``as_of`` (None without one)."""
    if as_of is None:
        return None
    return (as_of - moment_from_us(us)) / timedelta(days=1)


class CustomerFeaturesQuerySet(models.QuerySet):
    def with_as_of(self):
        """Each row with ``as_of``: the reference time of the latest succeeded run, which
        its figures are counted to. Every run brings the whole table up to date in the
        transaction that marks it succeeded; read in one query, both come from one commit."""
        latest = SegmentationRun.objects.succeeded().order_by("-finished_at", "-id")
        return self.annotate(as_of=models.Subquery(latest.values("reference_time")[:1]))


class CustomerFeatures(models.Model):
    """The figures the last run segmented a customer on, as of its reference time.

    One narrow row per segmented customer, written by every run (segmentation.feature_store).
    Nothing in a row depends on when the run ran (recency and tenure are kept as the sales
    they count from, and counted to the run's reference time when read: ``with_as_of``), so
    a customer whose figures did not change has the same row at every run. No database FK
    constraint, for the reason given on Membership.
    """

    customer = models.OneToOneField(
        "crm.Customer",
        primary_key=True,
        on_delete=models.CASCADE,
        db_constraint=False,
        related_name="segment_features",
    )
    # The last and first sale the run counted, in microseconds since 1970-01-01 UTC to the
    # whole second (so an unchanged customer's row compares equal at the next run), no later than
    # the run's reference time: the engine counts a later sale as at that time.
    last_purchase_us = models.BigIntegerField()
    first_purchase_us = models.BigIntegerField()
    frequency = models.PositiveIntegerField()
    monetary_total = models.FloatField()
    avg_order_value = models.FloatField()
    # 0..1 from the average rating and NPS answer; NULL when the customer gave no feedback.
    satisfaction = models.FloatField(null=True, blank=True)
    # Mean days between purchases; NULL for a one-time buyer.
    usual_gap_days = models.FloatField(null=True, blank=True)
    # A 64-bit hash of the figures above (feature_store.figures_keys): a run reads these
    # alone to find the rows whose figures changed. NULL (rows from before it): changed.
    figures_key = models.BigIntegerField(null=True, blank=True)

    objects = CustomerFeaturesQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.customer_id}: last bought {self.last_purchase_at:%Y-%m-%d}"

    @property
    def last_purchase_at(self) -> datetime:
        return moment_from_us(self.last_purchase_us)

    @property
    def first_purchase_at(self) -> datetime:
        return moment_from_us(self.first_purchase_us)

    @property
    def recency_days(self) -> float | None:
        """Days from the last sale to ``as_of``, as the run counted them (None when the row
        was not read ``with_as_of`` or no run has succeeded)."""
        return days_before(getattr(self, "as_of", None), self.last_purchase_us)

    @property
    def tenure_days(self) -> float | None:
        """Days from the first sale to ``as_of``, as recency_days."""
        return days_before(getattr(self, "as_of", None), self.first_purchase_us)
