"""Read-only selectors behind the dashboard: KPIs, segment cards and chart data.

Nothing here scans the customers or purchases on every request: the KPIs are range queries
on indexed columns, cached for a few minutes; segment figures were precomputed by the last
segmentation run; the scatter plot reads a bounded sample of customers by primary key.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import numpy as np
from django.core.cache import cache
from django.db.models import Avg, Case, Count, DecimalField, F, Max, Min, Q, Sum, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from crm.cache import pages_cache_version
from crm.metrics import nps_value
from crm.models import Customer, Feedback, Purchase
from crm.selectors import feedback_nps_counts
from segmentation.models import Segment, SegmentationRun, SegmentSnapshot, SegmentTransition
from segmentation.palette import segment_color as palette_color

KPI_CACHE_SECONDS = 300
SCATTER_SAMPLE = 2000
SAMPLE_BLOCKS = 40
TREND_RUNS = 12
ACTIVE_DAYS = 90
SATISFACTION_DAYS = 365


@dataclass(frozen=True)
class RevenueWindow:
    days: int
    current: Decimal
    previous: Decimal

    @property
    def change(self) -> float | None:
        """Relative change against the period before (None when there was nothing before)."""
        if not self.previous:
            return None
        return float((self.current - self.previous) / self.previous)


@dataclass(frozen=True)
class Kpis:
    customers: int
    active: int
    revenue_30: RevenueWindow
    revenue_90: RevenueWindow
    avg_rating: float | None
    ratings: int
    nps: float | None
    nps_answers: int
    computed_at: datetime


def segment_color(segment: Segment, index: int) -> str:
    """The segment's own colour, else the shared palette's (the one segment pages use)."""
    return segment.color or palette_color(index)


def _data_version() -> tuple:
    """Cheap fingerprint of the data the KPIs read: highest ids (primary-key lookups)."""
    return (
        pages_cache_version(),
        *(
            model.objects.aggregate(m=Max("pk"))["m"] or 0
            for model in (Customer, Purchase, Feedback)
        ),
    )


def dashboard_kpis(*, now: datetime | None = None, use_cache: bool = True) -> Kpis:
    """The headline figures. Cached for KPI_CACHE_SECONDS, and recomputed at once when a
    customer, purchase or feedback is added (the cache key carries the highest ids)."""
    now = now or timezone.now()
    if not use_cache:
        return _kpis_compute(now=now)
    bucket = int(now.timestamp()) // KPI_CACHE_SECONDS
    key = "dashboard:kpis:{}:{}:{}:{}:{}".format(bucket, *_data_version())
    kpis = cache.get(key)
    if kpis is None:
        kpis = _kpis_compute(now=now)
        cache.set(key, kpis, KPI_CACHE_SECONDS)
    return kpis


def _kpis_compute(*, now: datetime) -> Kpis:
    people = Customer.objects.active().aggregate(
        customers=Count("pk"),
        active=Count("pk", filter=Q(last_purchase_at__gte=now - timedelta(days=ACTIVE_DAYS))),
    )
    revenue = _revenue_windows(now=now)
    since = now - timedelta(days=SATISFACTION_DAYS)
    scores = Feedback.objects.filter(created_at__gte=since, created_at__lte=now).aggregate(
        avg_rating=Avg("rating"), ratings=Count("rating"), **feedback_nps_counts()
    )
    nps = nps_value(
        promoters=scores["promoters"],
        detractors=scores["detractors"],
        answers=scores["nps_answers"],
    )
    return Kpis(
        customers=people["customers"],
        active=people["active"],
        revenue_30=revenue[30],
        revenue_90=revenue[90],
        avg_rating=scores["avg_rating"],
        ratings=scores["ratings"],
        nps=nps,
        nps_answers=scores["nps_answers"],
        computed_at=now,
    )


def _revenue_windows(*, now: datetime) -> dict[int, RevenueWindow]:
    """Sales minus refunds in the last 30 and 90 days and in the periods just before them,
    in one query over the purchase date index."""
    money = DecimalField(max_digits=16, decimal_places=2)
    signed = Case(
        When(kind=Purchase.Kind.SALE, then=F("amount")), default=-F("amount"), output_field=money
    )
    sums = {}
    for days in (30, 90):
        start, before = now - timedelta(days=days), now - timedelta(days=2 * days)
        sums[f"cur{days}"] = Coalesce(
            Sum(signed, filter=Q(purchased_at__gt=start)), Decimal("0"), output_field=money
        )
        sums[f"prev{days}"] = Coalesce(
            Sum(signed, filter=Q(purchased_at__gt=before, purchased_at__lte=start)),
            Decimal("0"),
            output_field=money,
        )
    row = Purchase.objects.filter(
        purchased_at__gt=now - timedelta(days=180), purchased_at__lte=now
    ).aggregate(**sums)
    return {d: RevenueWindow(d, row[f"cur{d}"], row[f"prev{d}"]) for d in (30, 90)}


@dataclass(frozen=True)
class SegmentCard:
    segment: Segment
    color: str
    size: int
    share_customers: float
    share_revenue: float
    previous_size: int | None

    @property
    def change(self) -> int | None:
        return None if self.previous_size is None else self.size - self.previous_size


def segments_current() -> list[Segment]:
    """Active segments, biggest first (a handful of rows)."""
    return list(Segment.objects.active().order_by("-size", "id"))


def segment_cards(
    *, segments: list[Segment], previous: SegmentationRun | None
) -> list[SegmentCard]:
    """One card per segment, with its size in the previous run (one query)."""
    before = {}
    if previous is not None:
        before = dict(
            SegmentSnapshot.objects.filter(run=previous).values_list("segment_id", "size")
        )
    return [
        SegmentCard(
            segment=s,
            color=segment_color(s, i),
            size=s.size,
            share_customers=s.share_customers,
            share_revenue=s.share_revenue,
            previous_size=before.get(s.pk) if previous is not None else None,
        )
        for i, s in enumerate(segments)
    ]


def chart_segment_sizes(*, cards: list[SegmentCard]) -> dict:
    return {
        "labels": [c.segment.name for c in cards],
        "sizes": [c.size for c in cards],
        "revenue_shares": [round(100 * c.share_revenue, 1) for c in cards],
        "colors": [c.color for c in cards],
    }


def customer_sample_ranges(
    *, size: int = SCATTER_SAMPLE, blocks: int = SAMPLE_BLOCKS, seed: int = 0
) -> list[tuple[int, int]] | None:
    """Reproducible random id ranges covering about ``size`` customers: ``blocks`` runs of
    consecutive ids at random places in the id range. Each run is one short index range
    read from neighbouring table pages, where ``size`` random ids would cost ``size`` random
    page reads, and ORDER BY random() a read of every row. None means "everyone": the table
    is small enough to read whole (two primary-key lookups to know)."""
    bounds = Customer.objects.aggregate(lo=Min("pk"), hi=Max("pk"))
    lo, hi = bounds["lo"], bounds["hi"]
    if lo is None:
        return []
    span = hi - lo + 1
    if span <= size:
        return None
    width = max(size // blocks, 1)
    slots = span // width
    rng = np.random.default_rng(seed)
    starts = sorted(rng.choice(slots, size=min(blocks, slots), replace=False))
    return [(lo + int(s) * width, lo + int(s) * width + width - 1) for s in starts]


def chart_recency_monetary(
    *, segments: list[Segment], now: datetime | None = None, seed: int = 0
) -> dict:
    """Days since the last purchase against total spent for a sample of buyers, one dataset
    per segment (colours as on the cards). Cached like the KPIs: the sample is random."""
    now = now or timezone.now()
    key = "dashboard:scatter:{}:{}:{}:{}".format(
        int(now.timestamp()) // KPI_CACHE_SECONDS, seed, *_data_version()[:2]
    )
    cached = cache.get(key)
    if cached is None:
        ranges = customer_sample_ranges(seed=seed)
        buyers = Customer.objects.filter(
            last_purchase_at__isnull=False, total_spent__gt=0, membership__segment__isnull=False
        )
        if ranges is not None:
            within = Q()
            for first, last in ranges:
                within |= Q(pk__range=(first, last))
            buyers = buyers.filter(within)
        rows = list(
            buyers.order_by().values_list(
                "membership__segment_id", "last_purchase_at", "total_spent"
            )[:SCATTER_SAMPLE]
        )
        cached = (rows, ranges is not None)
        cache.set(key, cached, KPI_CACHE_SECONDS)
    rows, sampled = cached
    points: dict[int, list[dict]] = {}
    for segment_id, last, spent in rows:
        days = max((now - last).total_seconds() / 86400, 0)
        points.setdefault(segment_id, []).append({"x": round(days, 1), "y": float(spent)})
    return {
        "datasets": [
            {"label": s.name, "color": segment_color(s, i), "data": points[s.pk]}
            for i, s in enumerate(segments)
            if points.get(s.pk)
        ],
        "sampled": sampled,
        "empty": _scatter_empty_words(segments=segments),
    }


def _scatter_empty_words(*, segments: list[Segment]) -> str:
    # Points are coloured by segment: before the first run there are purchases but no point.
    if not segments and Purchase.objects.exists():
        return "Customers appear here once they are grouped into segments."
    return "No purchases yet."


def chart_trends(*, segments: list[Segment]) -> dict:
    """Size, revenue, average rating and NPS per segment over the last TREND_RUNS runs.

    Prospects are left out: they have neither revenue nor ratings, only a flat line at zero.
    """
    segments = [s for s in segments if s.kind != Segment.Kind.PROSPECTS]
    runs = list(
        SegmentationRun.objects.succeeded()
        .order_by("-finished_at", "-id")
        .values_list("pk", "finished_at")[:TREND_RUNS]
    )[::-1]
    if not runs:
        return {"labels": [], "segments": []}
    index = {pk: i for i, (pk, _) in enumerate(runs)}
    colors = {s.pk: segment_color(s, i) for i, s in enumerate(segments)}
    names = {s.pk: s.name for s in segments}
    series: dict[int, dict] = {}
    snapshots = SegmentSnapshot.objects.filter(run_id__in=index, segment_id__in=names).values_list(
        "run_id", "segment_id", "size", "revenue", "avg_rating", "nps"
    )
    for run_id, segment_id, size, revenue, rating, nps in snapshots:
        entry = series.setdefault(
            segment_id,
            {
                "label": names[segment_id],
                "color": colors[segment_id],
                "size": [None] * len(runs),
                "revenue": [None] * len(runs),
                "rating": [None] * len(runs),
                "nps": [None] * len(runs),
            },
        )
        i = index[run_id]
        entry["size"][i] = size
        entry["revenue"][i] = float(revenue)
        entry["rating"][i] = None if rating is None else round(rating, 2)
        entry["nps"][i] = None if nps is None else round(nps, 1)
    labels = [timezone.localtime(at).strftime("%d %b %H:%M") if at else "" for _, at in runs]
    ordered = [series[s.pk] for s in segments if s.pk in series]
    return {"labels": labels, "segments": ordered}


def transitions_empty_words(*, run: SegmentationRun | None, first_run_going: bool) -> str:
    """What the movements chart says when it has no bar to draw."""
    if run is None:
        if first_run_going:
            return "Movements appear when the first segmentation run has finished."
        return "Movements appear after the first segmentation run."
    return f"Nobody changed segment in the last run (#{run.pk}): every customer stayed put."


def chart_transitions(*, run: SegmentationRun | None, segments: list[Segment]) -> dict:
    """Where the customers of each segment went in ``run``: one stacked bar per origin."""
    if run is None:
        return {"labels": [], "datasets": []}
    rows = list(
        SegmentTransition.objects.filter(run=run).values_list(
            "from_segment_id", "to_segment_id", "count"
        )
    )
    known = {s.pk: (s.name, segment_color(s, i)) for i, s in enumerate(segments)}
    extra_ids = {i for row in rows for i in row[:2] if i is not None and i not in known}
    for s in Segment.objects.filter(pk__in=extra_ids):
        known[s.pk] = (f"{s.name} (retired)", "#bbbbbb")
    order = [pk for pk in known if any(pk in row[:2] for row in rows)]
    origins = [pk for pk in order if any(row[0] == pk for row in rows)]
    if any(row[0] is None for row in rows):
        origins.append(None)
    targets = [pk for pk in order if any(row[1] == pk for row in rows)]
    if any(row[1] is None for row in rows):
        targets.append(None)
    counts = {(f, t): c for f, t, c in rows}

    def name(pk):
        return known[pk][0] if pk is not None else "No segment"

    return {
        "labels": [name(pk) for pk in origins],
        "datasets": [
            {
                "label": name(t),
                "color": known[t][1] if t is not None else "#dddddd",
                "data": [counts.get((f, t), 0) for f in origins],
            }
            for t in targets
        ],
    }
