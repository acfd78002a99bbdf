"""Staff pages: Today, the dashboard, a customer, the offers. Thin: parse, call, render."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Avg, Count, Q
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_tables2 import RequestConfig

from crm import dashboard as dash
from crm import offers as offer_services
from crm.feedback_link import feedback_link_url
from crm.forms import FeedbackForm, OfferForm, OfferOutcomeForm, SegmentPinForm
from crm.metrics import offer_results
from crm.models import Customer, Feedback, Offer, OfferResponse
from crm.services import feedback_mark_answered, feedback_submit
from crm.tables import OfferTable
from crm.today import today_overview
from segmentation.models import SegmentMembershipChange

RECENT_ROWS = 20


def _error_text(error: ValidationError) -> str:
    return " ".join(error.messages)


# --- Today -----------------------------------------------------------------------------------


@require_GET
def today(request):
    overview = today_overview()
    sections = [
        {
            "kind": "overdue",
            "title": "Overdue by their own rhythm",
            "hint": "Regular customers who are later than usual. A friendly nudge often brings "
            "them back.",
            "items": overview.overdue,
            "empty": "Nobody is late: every regular customer bought on time.",
        },
        {
            "kind": "unhappy",
            "title": "Unhappy, not answered yet",
            "hint": "Low ratings or scores waiting for your answer.",
            "items": overview.unhappy,
            "empty": "No unhappy feedback waiting for an answer.",
        },
        {
            "kind": "welcome",
            "title": "New customers to welcome",
            "hint": "First purchase in the last 30 days and no offer made yet.",
            "items": overview.welcome,
            "empty": "No new customer waiting for a welcome.",
        },
        {
            "kind": "risk",
            "title": "Valuable customers now at risk",
            "hint": "Good customers the last segmentation moved into an at-risk segment.",
            "items": overview.at_risk,
            "empty": "Nobody valuable slipped into an at-risk segment in the last run.",
        },
    ]
    return render(
        request,
        "crm/today.html",
        {"overview": overview, "sections": sections, "now": timezone.now()},
    )


@require_POST
def feedback_answered(request, pk: int, feedback_pk: int):
    customer = _customer_get(pk)
    feedback = get_object_or_404(Feedback, pk=feedback_pk, customer=customer)
    try:
        feedback_mark_answered(feedback=feedback)
    except ValidationError as error:
        messages.error(request, _error_text(error))
    else:
        dash.pages_cache_bump()
        messages.success(request, f"Feedback from {customer} marked as answered.")
    return redirect(_next_url(request, reverse("crm:customer_detail", args=[customer.pk])))


def _next_url(request, fallback: str) -> str:
    """Where to go after a one-click action: the page it was clicked on, if it is ours."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return fallback


# --- Dashboard -------------------------------------------------------------------------------


@require_GET
def dashboard(request):
    run = dash.run_latest()
    previous = dash.run_previous(run=run)
    segments = dash.segments_current()
    cards = dash.segment_cards(segments=segments, previous=previous)
    charts = {
        "sizes": dash.chart_segment_sizes(cards=cards),
        "scatter": dash.chart_recency_monetary(segments=segments, seed=run.pk if run else 0),
        "trends": dash.chart_trends(segments=segments),
        "transitions": dash.chart_transitions(run=run, segments=segments),
    }
    kpis = dash.dashboard_kpis()
    return render(
        request,
        "crm/dashboard.html",
        {
            "kpis": kpis,
            "revenue_windows": [kpis.revenue_30, kpis.revenue_90],
            "run": run,
            "previous_run": previous,
            "cards": cards,
            "charts": charts,
            "kpi_cache_minutes": dash.KPI_CACHE_SECONDS // 60,
        },
    )


# --- Customer --------------------------------------------------------------------------------


def _customer_page(request, customer: Customer, *, feedback_form=None, status=200):
    purchases = list(customer.purchases.order_by("-purchased_at", "-id")[:RECENT_ROWS])
    feedback = list(customer.feedback.order_by("-created_at", "-id")[:RECENT_ROWS])
    scores = customer.feedback.aggregate(
        answers=Count("pk"), avg_rating=Avg("rating"), avg_nps=Avg("nps")
    )
    history = list(
        SegmentMembershipChange.objects.filter(customer=customer)
        .select_related("from_segment", "to_segment", "run")
        .order_by("-changed_at", "-id")[:RECENT_ROWS]
    )
    responses = list(
        customer.offer_responses.select_related("offer", "segment").order_by(
            "-presented_at", "-id"
        )[:RECENT_ROWS]
    )
    response_counts = customer.offer_responses.aggregate(
        presented=Count("pk", filter=~Q(outcome=OfferResponse.Outcome.HOLDOUT)),
        accepted=Count("pk", filter=Q(outcome=OfferResponse.Outcome.ACCEPTED)),
    )
    rhythm_days = None
    if customer.purchase_count > 1 and customer.first_purchase_at and customer.last_purchase_at:
        span = customer.last_purchase_at - customer.first_purchase_at
        rhythm_days = span.total_seconds() / 86400 / (customer.purchase_count - 1)
    average_order = None
    if customer.purchase_count:
        average_order = customer.total_spent / customer.purchase_count
    return render(
        request,
        "crm/customer_detail.html",
        {
            "customer": customer,
            "tags": list(customer.tags.all()),
            "purchases": purchases,
            "feedback": feedback,
            "scores": scores,
            "history": history,
            "responses": responses,
            "response_counts": response_counts,
            "ranked": offer_services.offers_ranked_for_customer(customer=customer),
            "ranking_method": offer_services.RANKING_METHOD,
            "feedback_form": feedback_form or FeedbackForm(),
            "pin_form": SegmentPinForm(initial={"segment": customer.segment_id}),
            "outcomes": OfferOutcomeForm.base_fields["outcome"].choices,
            "rhythm_days": rhythm_days,
            "average_order": average_order,
            "feedback_link": _feedback_link(request, customer),
        },
        status=status,
    )


def _feedback_link(request, customer: Customer) -> str:
    """A fresh public feedback link, absolute so the owner can paste it anywhere."""
    return feedback_link_url(customer=customer, request=request)


def _customer_get(pk: int) -> Customer:
    return get_object_or_404(Customer.objects.select_related("membership__segment"), pk=pk)


@require_GET
def customer_detail(request, pk: int):
    return _customer_page(request, _customer_get(pk))


@require_POST
def customer_offer_record(request, pk: int, offer_pk: int):
    customer = _customer_get(pk)
    offer = get_object_or_404(Offer, pk=offer_pk)
    form = OfferOutcomeForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose presented, accepted or declined.")
        return redirect("crm:customer_detail", pk=customer.pk)
    try:
        response = offer_services.offer_response_record(
            offer=offer, customer=customer, outcome=form.cleaned_data["outcome"]
        )
    except ValidationError as error:
        messages.error(request, _error_text(error))
    else:
        dash.pages_cache_bump()
        messages.success(
            request, f"“{offer}”: {response.get_outcome_display().lower()} by {customer}."
        )
    return redirect(
        _next_url(request, f"{reverse('crm:customer_detail', args=[customer.pk])}#offers")
    )


@require_POST
def customer_feedback_add(request, pk: int):
    customer = _customer_get(pk)
    form = FeedbackForm(request.POST)
    if form.is_valid():
        try:
            feedback_submit(
                customer=customer,
                rating=form.cleaned_data["rating"],
                nps=form.cleaned_data["nps"],
                comment=form.cleaned_data["comment"],
                source=Feedback.Source.STAFF,
            )
        except ValidationError as error:
            form.add_error(None, error.messages)
        else:
            dash.pages_cache_bump()
            messages.success(request, f"Feedback from {customer} recorded.")
            return redirect(f"{reverse('crm:customer_detail', args=[customer.pk])}#feedback")
    return _customer_page(request, customer, feedback_form=form, status=400)


@require_POST
def customer_segment_pin(request, pk: int):
    from segmentation.services import segment_pin

    customer = _customer_get(pk)
    form = SegmentPinForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose one of the active segments.")
    else:
        try:
            customer = segment_pin(customer=customer, segment=form.cleaned_data["segment"])
        except ValidationError as error:
            messages.error(request, " ".join(error.messages))
        else:
            dash.pages_cache_bump()
            messages.success(
                request, f"{customer} is pinned to {customer.segment}: runs leave them there."
            )
    return redirect(f"{reverse('crm:customer_detail', args=[customer.pk])}#segment")


@require_POST
def customer_segment_unpin(request, pk: int):
    from segmentation.services import segment_unpin

    customer = segment_unpin(customer=_customer_get(pk))
    dash.pages_cache_bump()
    messages.success(request, f"{customer} is unpinned: the next run places them again.")
    return redirect(f"{reverse('crm:customer_detail', args=[customer.pk])}#segment")


# --- Offers ----------------------------------------------------------------------------------


def _offers_with_counts():
    outcome = OfferResponse.Outcome
    return Offer.objects.annotate(
        presented=Count(
            "responses", filter=Q(responses__outcome__in=offer_services.TREATED_OUTCOMES)
        ),
        accepted=Count("responses", filter=Q(responses__outcome=outcome.ACCEPTED)),
        holdout=Count("responses", filter=Q(responses__outcome=outcome.HOLDOUT)),
    )


@require_GET
def offer_list(request):
    table = OfferTable(_offers_with_counts().order_by("-is_active", "-created_at", "-id"))
    RequestConfig(request, paginate={"per_page": 25}).configure(table)
    return render(request, "crm/offer_list.html", {"table": table})


@require_GET
def offer_detail(request, pk: int):
    offer = get_object_or_404(Offer, pk=pk)
    results = offer_results(offer=offer)
    return render(
        request,
        "crm/offer_detail.html",
        {
            "offer": offer,
            "segments": list(offer.segments.order_by("-size", "id")),
            "results": results,
            "open_now": offer_services.offer_is_open(offer=offer, on=timezone.localdate()),
        },
    )


@require_http_methods(["GET", "POST"])
def offer_create(request):
    return _offer_form(request, offer=None)


@require_http_methods(["GET", "POST"])
def offer_edit(request, pk: int):
    return _offer_form(request, offer=get_object_or_404(Offer, pk=pk))


def _offer_form(request, *, offer: Offer | None):
    form = OfferForm(request.POST or None, instance=offer)
    if request.method == "POST":
        if form.is_valid():
            fields = dict(form.cleaned_data)
            segments = fields.pop("segments")
            try:
                saved = offer_services.offer_save(offer=offer, segments=segments, **fields)
            except ValidationError as error:
                form.add_error(None, error)
            else:
                dash.pages_cache_bump()
                messages.success(request, f"Offer “{saved}” saved.")
                return redirect("crm:offer_detail", pk=saved.pk)
        return render(request, "crm/offer_form.html", {"form": form, "offer": offer}, status=400)
    return render(request, "crm/offer_form.html", {"form": form, "offer": offer})
