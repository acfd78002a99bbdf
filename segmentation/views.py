"""Segment pages: the list, one segment with its members, movements, offers and results."""

from django.conf import settings
from django.contrib import messages
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db.models import Max, Q
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_tables2 import RequestConfig
from django_tables2.paginators import LazyPaginator

from crm import offers as offer_services
from crm.dashboard import pages_cache_bump, pages_cache_version, run_latest
from crm.exports import csv_lines, customer_rows
from crm.filters import CustomerFilter
from crm.forms import PresentOfferForm
from crm.metrics import segment_results
from crm.models import Customer, Feedback, Offer, OfferResponse
from crm.tables import SegmentMemberTable
from segmentation.engine import run_words
from segmentation.models import (
    Segment,
    SegmentationRun,
    SegmentMembershipChange,
    SegmentTransition,
)
from segmentation.tables import SegmentTable

MEMBERS_PER_PAGE = 25
MOVERS_SHOWN = 8
RESULTS_CACHE_SECONDS = 300

# How each profile value reads on the page: label and format.
PROFILE_LABELS = {
    "recency_days": ("Last purchase", "{:.0f} days ago"),
    "frequency": ("Purchases", "{:g}"),
    "monetary_total": ("Total spent", "{:,.2f}"),
    "avg_order_value": ("Average order", "{:,.2f}"),
    "tenure_days": ("Customer for", "{:.0f} days"),
    "rating_mean": ("Rating", "{:.1f} / 5"),
    "nps_mean": ("Would recommend", "{:.1f} / 10"),
    "age": ("Age", "{:.0f}"),
    "income": ("Income", "{:,.0f}"),
    "spend_vs_median": ("Spend vs typical customer", "{:.1f}\u00d7"),
    "feedback_share": ("Gave feedback", "{:.0%}"),
}


def _segment_results_cached(segment: Segment):
    """segment_results, cached briefly: its satisfaction and retention figures read every
    member of the segment, which must not happen on every page view of a big segment. The
    key changes with the run, new responses and feedback, and the pages' own writes."""
    bucket = int(timezone.now().timestamp()) // RESULTS_CACHE_SECONDS
    version = (
        pages_cache_version(),
        OfferResponse.objects.aggregate(m=Max("pk"))["m"] or 0,
        Feedback.objects.aggregate(m=Max("pk"))["m"] or 0,
    )
    key = "segment-results:{}:{}:{}:{}:{}:{}".format(
        segment.pk, segment.last_run_id, bucket, *version
    )
    results = cache.get(key)
    if results is None:
        results = segment_results(segment=segment)
        cache.set(key, results, RESULTS_CACHE_SECONDS)
    return results


def _run_words(run) -> list[str]:
    """The owner's sentences about the last run, from its figures (engine.run_words)."""
    if run is None or not run.confidence:
        return []
    return run_words(
        n_customers=run.n_clustered,
        silhouette=run.silhouette,
        confidence=run.confidence,
        scoring=run.method == SegmentationRun.Method.RFM,
    )


@require_GET
def segment_list(request):
    show_retired = request.GET.get("retired") == "1"
    segments = Segment.objects.all() if show_retired else Segment.objects.active()
    table = SegmentTable(segments.order_by("-is_active", "-size", "id"))
    RequestConfig(request, paginate={"per_page": 50}).configure(table)
    run = run_latest()
    return render(
        request,
        "segmentation/segment_list.html",
        {
            "table": table,
            "show_retired": show_retired,
            "run": run,
            "run_words": _run_words(run),
        },
    )


TABLE_COLUMNS = (
    "pk",
    "name",
    "email",
    "external_source",
    "external_id",
    "city",
    "purchase_count",
    "total_spent",
    "last_purchase_at",
)


def _members(request, segment: Segment, *, columns=TABLE_COLUMNS) -> tuple[CustomerFilter, object]:
    """The segment's members through the page's filters (None columns: every column)."""
    members = Customer.objects.filter(membership__segment=segment)
    if columns:
        members = members.only(*columns)
    filterset = CustomerFilter(request.GET or None, queryset=members)
    return filterset, filterset.qs


def _open_offers_for(segment: Segment):
    today = timezone.localdate()
    return (
        Offer.objects.filter(is_active=True)
        .filter(Q(segments=segment) | Q(segments__isnull=True))
        .filter(Q(starts_on__isnull=True) | Q(starts_on__lte=today))
        .filter(Q(ends_on__isnull=True) | Q(ends_on__gte=today))
        .distinct()
        .order_by("-created_at", "-id")
    )


def _movements(segment: Segment, run: SegmentationRun | None) -> dict:
    if run is None:
        return {"run": None, "into": [], "out_of": [], "in_count": 0, "out_count": 0}
    flows = list(
        SegmentTransition.objects.filter(run=run)
        .filter(Q(from_segment=segment) | Q(to_segment=segment))
        .select_related("from_segment", "to_segment")
    )
    into = [f for f in flows if f.to_segment_id == segment.pk and f.from_segment_id != segment.pk]
    out_of = [f for f in flows if f.from_segment_id == segment.pk and f.to_segment_id != segment.pk]
    into = sorted(into, key=lambda f: -f.count)
    out_of = sorted(out_of, key=lambda f: -f.count)
    # A few customers behind the biggest flow each way, read through the (run, to_segment)
    # index and unordered, so the query stops at the first matches.
    changes = SegmentMembershipChange.objects.filter(run=run).order_by()
    movers_in = movers_out = []
    if into:
        movers_in = list(
            changes.filter(to_segment=segment, from_segment=into[0].from_segment_id).select_related(
                "customer"
            )[:MOVERS_SHOWN]
        )
    if out_of:
        movers_out = list(
            changes.filter(to_segment=out_of[0].to_segment_id, from_segment=segment).select_related(
                "customer"
            )[:MOVERS_SHOWN]
        )
    return {
        "run": run,
        "into": into,
        "out_of": out_of,
        "in_count": sum(f.count for f in into),
        "out_count": sum(f.count for f in out_of),
        "movers_in": movers_in,
        "movers_out": movers_out,
    }


def _profile_facts(segment: Segment) -> list[tuple[str, str]]:
    facts = []
    for key, (label, fmt) in PROFILE_LABELS.items():
        value = (segment.profile_values or {}).get(key)
        if isinstance(value, int | float):
            facts.append((label, fmt.format(value)))
    return facts


def _trend_chart(results) -> dict:
    """Satisfaction per month (feedback of current members) and per run (snapshots)."""
    return {
        "months": [p.month.strftime("%b %Y") for p in results.trend],
        "rating": [None if p.avg_rating is None else round(p.avg_rating, 2) for p in results.trend],
        "nps": [None if p.nps is None else round(p.nps, 1) for p in results.trend],
        "runs": [
            timezone.localtime(s.run.finished_at).strftime("%d %b") if s.run.finished_at else ""
            for s in results.snapshots
        ],
        "run_size": [s.size for s in results.snapshots],
        "run_rating": [
            None if s.avg_rating is None else round(s.avg_rating, 2) for s in results.snapshots
        ],
        "run_nps": [None if s.nps is None else round(s.nps, 1) for s in results.snapshots],
    }


def _segment_get(pk: int) -> Segment:
    return get_object_or_404(Segment, pk=pk)


@require_GET
def segment_detail(request, pk: int):
    segment = _segment_get(pk)
    filterset, members = _members(request, segment)
    table = SegmentMemberTable(members)
    RequestConfig(
        request, paginate={"paginator_class": LazyPaginator, "per_page": MEMBERS_PER_PAGE}
    ).configure(table)
    run = run_latest()
    results = _segment_results_cached(segment)
    open_offers = list(_open_offers_for(segment))
    return render(
        request,
        "segmentation/segment_detail.html",
        {
            "segment": segment,
            "filter": filterset,
            "table": table,
            "filtered": bool(request.GET and filterset.form.has_changed()),
            "movements": _movements(segment, run),
            "results": results,
            "chart_data": {
                "trend": _trend_chart(results),
                "color": segment.color or "#2563eb",
            },
            "trend_monthly": bool(results.trend),
            "facts": _profile_facts(segment),
            "rules": segment.rules or [r for r in segment.rules_text.splitlines() if r.strip()],
            "present_form": PresentOfferForm(offers=_open_offers_for(segment)),
            "can_present": bool(open_offers),
            "targeted_offers": list(segment.offers.order_by("-created_at", "-id")),
            "export_query": request.GET.urlencode(),
        },
    )


@require_GET
def segment_members_export(request, pk: int):
    segment = _segment_get(pk)
    filterset, members = _members(request, segment, columns=None)
    if filterset.is_bound and not filterset.is_valid():
        messages.error(request, "The filter is not valid; fix it before exporting.")
        return redirect("segmentation:segment_detail", pk=segment.pk)
    response = StreamingHttpResponse(
        csv_lines(customer_rows(members)), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="segment-{segment.pk}-members.csv"'
    return response


@require_POST
def segment_offer_present(request, pk: int):
    segment = _segment_get(pk)
    form = PresentOfferForm(request.POST, offers=_open_offers_for(segment))
    if not form.is_valid():
        messages.error(request, "Choose one of the open offers for this segment.")
        return redirect("segmentation:segment_detail", pk=segment.pk)
    offer = form.cleaned_data["offer"]
    if segment.size > settings.OFFER_PRESENT_INLINE_MAX:
        # Tens of thousands of rows: too long for a web request, the worker does it.
        from crm.tasks import offer_present_to_segment

        offer_present_to_segment.delay_on_commit(offer.pk, segment.pk)
        messages.info(
            request,
            f"“{offer}” is being presented to the {segment.size:,} customers of {segment} "
            "in the background; its results appear here in a minute or two.",
        )
        return redirect(f"{reverse('segmentation:segment_detail', args=[segment.pk])}#offers")
    try:
        done = offer_services.offer_present(offer=offer, segment=segment)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        pages_cache_bump()
        messages.success(
            request,
            f"“{offer}” presented to {done.presented:,} customers of {segment}; "
            f"{done.held_out:,} kept aside as the control group"
            + (f"; {done.already:,} already had it." if done.already else "."),
        )
    return redirect(f"{reverse('segmentation:segment_detail', args=[segment.pk])}#offers")


@require_POST
def segmentation_run_start(request):
    from segmentation.services import segmentation_run_request

    run = segmentation_run_request(trigger=SegmentationRun.Trigger.MANUAL)
    if run.status == SegmentationRun.Status.SKIPPED:
        messages.warning(request, f"Not started: {run.error}")
    else:
        messages.success(
            request,
            f"Segmentation run #{run.pk} queued; the segments update when it finishes.",
        )
    return redirect("crm:dashboard")
