"""Reads that judge the offers: acceptance, lift, return, and a segment's results."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import (
    Case,
    Count,
    DecimalField,
    Exists,
    F,
    IntegerField,
    OuterRef,
    Q,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce, TruncMonth
from django.utils import timezone

from crm.metrics import nps_value, proportion_difference_interval, welch_interval, wilson_interval
from crm.models import Customer, Feedback, Purchase
from crm.selectors import feedback_nps_counts
from offers.models import Offer, OfferResponse
from offers.selectors import acceptance_by_segment_offer
from segmentation.models import Segment, SegmentSnapshot

_MONEY = DecimalField(max_digits=16, decimal_places=2)
_OUTCOME = OfferResponse.Outcome


def return_on_offer(*, attributed_revenue: Decimal, cost: Decimal) -> float | None:
    """(attributed revenue - cost) / cost; None when the offer cost nothing (no ratio)."""
    if not cost:
        return None
    return float((attributed_revenue - cost) / cost)


# --- Offer results ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Lift:
    """Treated (presented, accepted or declined) vs held-out customers, N days after."""

    window_days: int
    treated: int
    control: int
    treated_buyers: int
    control_buyers: int
    treated_revenue: Decimal
    control_revenue: Decimal
    # Repeat-purchase rate: share of the group with at least one sale within the window.
    treated_rate: float | None
    control_rate: float | None
    rate_lift: float | None  # treated_rate - control_rate
    rate_lift_interval: tuple[float, float] | None
    treated_revenue_per_customer: float | None
    control_revenue_per_customer: float | None
    revenue_lift: float | None  # per customer, treated - control
    revenue_lift_interval: tuple[float, float] | None


@dataclass(frozen=True)
class OfferFigures:
    """An offer's figures for one segment (or for all of them: segment None)."""

    segment_id: int | None
    segment_name: str
    presented: int  # presented, whatever the answer (presented + accepted + declined)
    accepted: int
    declined: int
    awaiting: int  # presented, no answer recorded yet
    holdout: int
    acceptance_rate: float | None  # accepted / presented
    acceptance_interval: tuple[float, float] | None  # Wilson 95%
    attributed_revenue: Decimal
    cost: Decimal
    roi: float | None  # None when cost is 0
    lift: Lift


@dataclass(frozen=True)
class OfferResults:
    """``offer_results``: the offer's figures over all segments and per segment."""

    offer: Offer
    total: OfferFigures
    segments: list[OfferFigures] = field(default_factory=list)


@dataclass
class _Sums:
    n: int = 0
    buyers: int = 0
    revenue: Decimal = Decimal("0")
    revenue_sq: float = 0.0
    attributed: Decimal = Decimal("0")

    def add(self, other: "_Sums") -> None:
        self.n += other.n
        self.buyers += other.buyers
        self.revenue += other.revenue
        self.revenue_sq += other.revenue_sq
        self.attributed += other.attributed


def _window_sales(*, start: str, days: int):
    """Sales of the response's customer from the response's `start` time to `days` later."""
    return Purchase.objects.filter(
        customer_id=OuterRef("customer_id"),
        kind=Purchase.Kind.SALE,
        purchased_at__gte=OuterRef(start),
        purchased_at__lte=OuterRef(start) + timedelta(days=days),
    )


def _window_sum(*, start: str, days: int):
    return Coalesce(
        Subquery(
            _window_sales(start=start, days=days)
            .order_by()
            .values("customer_id")
            .annotate(total=Sum("amount"))
            .values("total")[:1]
        ),
        Value(Decimal("0")),
        output_field=_MONEY,
    )


def _offer_sums(
    *, offer: Offer, window_days: int, segment_id: int | None = None
) -> dict[tuple[int | None, str], _Sums]:
    """Per (segment, outcome): counts, buyers, window revenue (+squares), attributed revenue.

    One query; every per-customer sum is a correlated subquery on the covering purchase index.
    """
    responses = OfferResponse.objects.filter(offer=offer)
    if segment_id is not None:
        responses = responses.filter(segment_id=segment_id)
    revenue = _window_sum(start="presented_at", days=window_days)
    attributed = Case(
        When(
            outcome=_OUTCOME.ACCEPTED,
            then=_window_sum(start="responded_at", days=offer.attribution_days),
        ),
        default=Value(Decimal("0")),
        output_field=_MONEY,
    )
    rows = (
        responses.annotate(
            rev=revenue,
            bought=Case(
                When(Exists(_window_sales(start="presented_at", days=window_days)), then=1),
                default=0,
                output_field=IntegerField(),
            ),
            attr=attributed,
        )
        .values("segment_id", "outcome")
        .annotate(
            n=Count("pk"),
            buyers=Sum("bought"),
            revenue=Sum("rev"),
            revenue_sq=Sum(F("rev") * F("rev")),
            attributed=Sum("attr"),
        )
        .order_by()
    )
    return {
        (row["segment_id"], row["outcome"]): _Sums(
            n=row["n"],
            buyers=row["buyers"] or 0,
            revenue=Decimal(row["revenue"] or 0),
            revenue_sq=float(row["revenue_sq"] or 0),
            attributed=Decimal(row["attributed"] or 0),
        )
        for row in rows
    }


def _figures(
    *,
    offer: Offer,
    segment_id: int | None,
    segment_name: str,
    by_outcome: dict[str, _Sums],
    window_days: int,
) -> OfferFigures:
    treated, control = _Sums(), by_outcome.get(_OUTCOME.HOLDOUT, _Sums())
    for outcome in (_OUTCOME.PRESENTED, _OUTCOME.ACCEPTED, _OUTCOME.DECLINED):
        treated.add(by_outcome.get(outcome, _Sums()))
    accepted = by_outcome.get(_OUTCOME.ACCEPTED, _Sums()).n
    attributed = by_outcome.get(_OUTCOME.ACCEPTED, _Sums()).attributed.quantize(Decimal("0.01"))
    discount = (offer.discount_percent or Decimal("0")) / Decimal("100")
    cost = (discount * attributed + (offer.fixed_cost or Decimal("0")) * accepted).quantize(
        Decimal("0.01")
    )
    return OfferFigures(
        segment_id=segment_id,
        segment_name=segment_name,
        presented=treated.n,
        accepted=accepted,
        declined=by_outcome.get(_OUTCOME.DECLINED, _Sums()).n,
        awaiting=by_outcome.get(_OUTCOME.PRESENTED, _Sums()).n,
        holdout=control.n,
        acceptance_rate=accepted / treated.n if treated.n else None,
        acceptance_interval=wilson_interval(accepted, treated.n),
        attributed_revenue=attributed,
        cost=cost,
        roi=return_on_offer(attributed_revenue=attributed, cost=cost),
        lift=_lift(treated, control, window_days),
    )


def _lift(treated: _Sums, control: _Sums, window_days: int) -> Lift:
    def rate(s: _Sums) -> float | None:
        return s.buyers / s.n if s.n else None

    def per_customer(s: _Sums) -> float | None:
        return float(s.revenue) / s.n if s.n else None

    t_rate, c_rate = rate(treated), rate(control)
    t_rev, c_rev = per_customer(treated), per_customer(control)
    return Lift(
        window_days=window_days,
        treated=treated.n,
        control=control.n,
        treated_buyers=treated.buyers,
        control_buyers=control.buyers,
        treated_revenue=treated.revenue,
        control_revenue=control.revenue,
        treated_rate=t_rate,
        control_rate=c_rate,
        rate_lift=None if t_rate is None or c_rate is None else t_rate - c_rate,
        rate_lift_interval=proportion_difference_interval(
            treated.buyers, treated.n, control.buyers, control.n
        ),
        treated_revenue_per_customer=t_rev,
        control_revenue_per_customer=c_rev,
        revenue_lift=None if t_rev is None or c_rev is None else t_rev - c_rev,
        revenue_lift_interval=welch_interval(
            treated.n,
            float(treated.revenue),
            treated.revenue_sq,
            control.n,
            float(control.revenue),
            control.revenue_sq,
        ),
    )


def offer_results(*, offer: Offer, window_days: int | None = None) -> OfferResults:
    """An offer's results, in total and per segment (the segment recorded at presentation).

    Acceptance rate = accepted / presented (a presentation with no answer counts as not
    accepted), with a Wilson 95% interval. Attributed revenue = the customer's sales from
    the acceptance to ``offer.attribution_days`` days after it (computed, not stored).
    Cost = discount % x attributed revenue + fixed cost x acceptances; ROI = (attributed
    revenue - cost) / cost, None when the cost is 0. Lift compares the treated customers
    (presented, whatever they answered: intention to treat) with the held-out ones over the
    ``window_days`` (default ``offer.attribution_days``) days after presentation: difference
    of repeat-purchase rates (normal approximation) and of revenue per customer (Welch), both
    with 95% intervals. Presentations younger than the window count what happened so far;
    both groups were presented at the same moment, so the comparison stays fair. Two queries.
    """
    window_days = window_days or offer.attribution_days
    sums = _offer_sums(offer=offer, window_days=window_days)
    segment_ids = sorted({seg for seg, _ in sums if seg is not None})
    names = dict(Segment.objects.filter(pk__in=segment_ids).values_list("pk", "name"))
    by_segment: dict[int | None, dict[str, _Sums]] = {}
    overall: dict[str, _Sums] = {}
    for (seg, outcome), s in sums.items():
        by_segment.setdefault(seg, {})[outcome] = s
        overall.setdefault(outcome, _Sums()).add(s)
    segments = [
        _figures(
            offer=offer,
            segment_id=seg,
            segment_name=names.get(seg, "No segment") if seg is not None else "No segment",
            by_outcome=by_segment[seg],
            window_days=window_days,
        )
        for seg in sorted(by_segment, key=lambda s: (s is None, s or 0))
    ]
    total = _figures(
        offer=offer,
        segment_id=None,
        segment_name="All segments",
        by_outcome=overall,
        window_days=window_days,
    )
    return OfferResults(offer=offer, total=total, segments=segments)


# --- Segment results -------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentOfferFigures:
    """One offer's figures restricted to one segment."""

    offer: Offer
    figures: OfferFigures


@dataclass(frozen=True)
class SatisfactionPoint:
    """One calendar month (local time) of a segment's feedback."""

    month: datetime
    ratings: int
    avg_rating: float | None
    nps_answers: int
    nps: float | None


@dataclass(frozen=True)
class SegmentResults:
    """What tells the owner whether the segment is served well."""

    segment: Segment
    # Over every offer presented to the segment (responses recorded with this segment).
    presented: int
    accepted: int
    acceptance_rate: float | None
    acceptance_interval: tuple[float, float] | None
    offers: list[SegmentOfferFigures]
    # Feedback of the segment's current members, all time.
    ratings: int
    avg_rating: float | None
    nps_answers: int
    promoters: int
    detractors: int
    nps: float | None
    retention_days: int
    retention_base: int
    retained: int
    retention_rate: float | None
    retention_interval: tuple[float, float] | None
    trend: list[SatisfactionPoint]
    snapshots: list[SegmentSnapshot]


def _feedback_figures():
    return {
        "ratings": Count("rating"),
        "rating_sum": Sum("rating"),
        **feedback_nps_counts(),
    }


def segment_results(
    *,
    segment: Segment,
    now: datetime | None = None,
    retention_days: int = 90,
    months: int = 12,
) -> SegmentResults:
    """Acceptance, satisfaction, retention and satisfaction trend of one segment.

    - Acceptance: over every offer presented to customers while in this segment, accepted /
      presented with a Wilson 95% interval; per offer, ``offer_results`` restricted to the
      segment.
    - Satisfaction: average rating and NPS (``crm.metrics.nps_value``) of all the
      feedback of the segment's current members.
    - Retention over N = ``retention_days`` days: among the segment's current members whose
      first purchase is older than N days (they were customers when the window opened), the
      share whose last purchase falls within the last N days (they bought again in it).
    - Trend: per calendar month of the last ``months`` months, the average rating and NPS of
      feedback given by the segment's current members; plus the segment's snapshots (size,
      rating, NPS as of each run) oldest first.
    Queries: 5 plus 1 per offer presented to the segment.
    """
    now = now or timezone.now()
    per_offer = acceptance_by_segment_offer(segment_ids=[segment.pk]).values()
    counts = {
        "presented": sum(a.presented for a in per_offer),
        "accepted": sum(a.accepted for a in per_offer),
    }
    offers = []
    for offer in Offer.objects.filter(
        pk__in=OfferResponse.objects.filter(segment=segment).values("offer_id")
    ).order_by("-created_at", "-pk"):
        sums = _offer_sums(offer=offer, window_days=offer.attribution_days, segment_id=segment.pk)
        offers.append(
            SegmentOfferFigures(
                offer=offer,
                figures=_figures(
                    offer=offer,
                    segment_id=segment.pk,
                    segment_name=segment.name,
                    by_outcome={outcome: s for (_, outcome), s in sums.items()},
                    window_days=offer.attribution_days,
                ),
            )
        )

    window_start = now - timedelta(days=retention_days)
    retention = Customer.objects.filter(
        membership__segment=segment, first_purchase_at__lt=window_start
    ).aggregate(
        base=Count("pk"), retained=Count("pk", filter=Q(last_purchase_at__gte=window_start))
    )

    # One pass over the members' feedback, by month; the all-time figures are the sums.
    local = timezone.localtime(now)
    year, month = divmod(local.year * 12 + local.month - 1 - (months - 1), 12)
    trend_start = local.replace(
        year=year, month=month + 1, day=1, hour=0, minute=0, second=0, microsecond=0
    )
    monthly = list(
        Feedback.objects.filter(customer__membership__segment=segment, created_at__lte=now)
        .annotate(month=TruncMonth("created_at"))
        .values("month")
        .annotate(**_feedback_figures())
        .order_by("month")
    )
    satisfaction = {
        key: sum(row[key] or 0 for row in monthly)
        for key in ("ratings", "rating_sum", "nps_answers", "promoters", "detractors")
    }
    trend = [
        SatisfactionPoint(
            month=row["month"],
            ratings=row["ratings"],
            avg_rating=row["rating_sum"] / row["ratings"] if row["ratings"] else None,
            nps_answers=row["nps_answers"],
            nps=nps_value(
                promoters=row["promoters"],
                detractors=row["detractors"],
                answers=row["nps_answers"],
            ),
        )
        for row in monthly
        if row["month"] >= trend_start
    ]
    snapshots = list(
        SegmentSnapshot.objects.filter(segment=segment)
        .select_related("run")
        .order_by("run__finished_at", "run_id")
    )
    return SegmentResults(
        segment=segment,
        presented=counts["presented"],
        accepted=counts["accepted"],
        acceptance_rate=counts["accepted"] / counts["presented"] if counts["presented"] else None,
        acceptance_interval=wilson_interval(counts["accepted"], counts["presented"]),
        offers=offers,
        ratings=satisfaction["ratings"],
        avg_rating=(
            satisfaction["rating_sum"] / satisfaction["ratings"]
            if satisfaction["ratings"]
            else None
        ),
        nps_answers=satisfaction["nps_answers"],
        promoters=satisfaction["promoters"],
        detractors=satisfaction["detractors"],
        nps=nps_value(
            promoters=satisfaction["promoters"],
            detractors=satisfaction["detractors"],
            answers=satisfaction["nps_answers"],
        ),
        retention_days=retention_days,
        retention_base=retention["base"],
        retained=retention["retained"],
        retention_rate=retention["retained"] / retention["base"] if retention["base"] else None,
        retention_interval=wilson_interval(retention["retained"], retention["base"]),
        trend=trend,
        snapshots=snapshots,
    )
