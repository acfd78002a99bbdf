"""Staff pages that combine every app: Today, the dashboard, a customer, a segment.

Thin: parse, call, render."""

from dataclasses import asdict
from datetime import datetime, time

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_tables2.paginators import LazyPaginator

from crm.audit import audit_actor, audit_record
from crm.exports import csv_lines, customer_rows
from crm.feedback_link import (
    FeedbackLinkError,
    feedback_link_url,
    feedback_short_link_create,
    feedback_short_link_url,
)
from crm.forms import (
    CUSTOMER_FORM_FIELDS,
    ActivityForm,
    BusinessSettingsForm,
    CustomerForm,
    FeedbackForm,
    FollowUpForm,
    SaleForm,
)
from crm.models import (
    CUSTOMER_SENSITIVE_FIELDS,
    CUSTOMER_SENSITIVE_PERMISSION,
    AuditEntry,
    Customer,
    Feedback,
    FollowUp,
)
from crm.selectors import business_get
from crm.services import (
    activity_log,
    business_settings_update,
    customer_create,
    customer_update,
    customers_tag,
    feedback_mark_answered,
    feedback_submit,
    followup_create,
    followup_mark_done,
    followup_snooze,
    purchase_record,
)
from crm.tables import table_configure
from offers import selectors as offer_selectors
from offers import services as offer_services
from offers.forms import OfferOutcomeForm, PresentOfferForm
from offers.models import Offer
from pages import customer_data
from pages import dashboard as dash
from pages import selectors as page_selectors
from pages.demo import demo_start
from pages.filters import CustomerListFilter
from pages.forms import CustomerEraseForm
from pages.predictions import customer_prediction, segment_prediction
from pages.tables import CustomerListTable
from pages.today import today_overview
from segmentation import prediction_selectors
from segmentation import selectors as segment_selectors
from segmentation import services as segment_services
from segmentation.exports import CUSTOMER_EXPORT_PROVIDERS
from segmentation.filters import segment_members_filter
from segmentation.forms import SegmentPinForm
from segmentation.models import Segment
from segmentation.run_watch import run_watch_progress, run_watch_remember
from segmentation.tables import SegmentMemberTable


def _sees_sensitive(request) -> bool:
    return request.user.has_perm(CUSTOMER_SENSITIVE_PERMISSION)


def _error_text(error: ValidationError) -> str:
    return " ".join(error.messages)


# --- Today -----------------------------------------------------------------------------------


# On an empty database every list of Today says what fills it, not that all is well.
NO_CUSTOMERS_YET = "No customers yet: import a CSV or add one, and this list fills itself."


@require_GET
def today(request):
    overview = today_overview()
    has_customers = page_selectors.customers_exist()
    sections = [
        {
            "kind": "follow_up",
            "title": "Follow-ups due",
            "hint": "The days you set to get back to someone: today's and the ones waiting.",
            "items": overview.follow_ups,
            "empty": "No follow-up due today.",
        },
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
            "kind": "slipping",
            "title": "Valuable customers slipping away",
            "hint": "Customers whose next year is worth the most and who may be drifting away, "
            "as the last run's predictions see them.",
            "items": overview.slipping,
            "empty": (
                "Nobody valuable is slipping away."
                if prediction_selectors.predictions_exist()
                else "This list fills once a segmentation run has made predictions: they "
                "need customers who bought more than once."
            ),
        },
        {
            "kind": "risk",
            "title": "Valuable customers now at risk",
            "hint": "Good customers the last segmentation moved into an at-risk segment.",
            "items": overview.at_risk,
            "empty": (
                "Nobody valuable slipped into an at-risk segment in the last run."
                if segment_selectors.run_latest()
                else "This list fills after the first segmentation run."
            ),
        },
    ]
    if not has_customers:
        for section in sections:
            section["empty"] = NO_CUSTOMERS_YET
    return render(
        request,
        "pages/today.html",
        {
            "has_customers": has_customers,
            "overview": overview,
            "sections": sections,
            "now": timezone.now(),
            "activity_kinds": ActivityForm.base_fields["kind"].choices,
        },
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
        messages.success(request, f"Feedback from {customer} marked as answered.")
    return redirect(_next_url(request, reverse("pages:customer_detail", args=[customer.pk])))


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
    run = segment_selectors.run_latest()
    previous = segment_selectors.run_previous(run=run)
    segments = dash.segments_current()
    cards = dash.segment_cards(segments=segments, previous=previous)
    charts = {
        "sizes": dash.chart_segment_sizes(cards=cards),
        "scatter": dash.chart_recency_monetary(segments=segments, seed=run.pk if run else 0),
        "trends": dash.chart_trends(segments=segments),
        "transitions": dash.chart_transitions(run=run, segments=segments),
        "predictions": prediction_selectors.predictions_track_record(),
        # Written after every amount the charts show.
        "currency": business_get().currency,
    }
    kpis = dash.dashboard_kpis()
    progress = run_watch_progress(request)
    charts["transitions"]["empty"] = dash.transitions_empty_words(
        run=run, first_run_going=progress is not None and progress.active
    )
    return render(
        request,
        "pages/dashboard.html",
        {
            "has_customers": page_selectors.customers_exist(),
            "run_progress": progress,
            "run_failed": segment_selectors.run_failed_since(run=run),
            "kpis": kpis,
            "revenue_windows": [kpis.revenue_30, kpis.revenue_90],
            "run": run,
            "run_words": segment_selectors.run_owner_words(run=run),
            "previous_run": previous,
            "cards": cards,
            "charts": charts,
            "kpi_cache_minutes": dash.KPI_CACHE_SECONDS // 60,
        },
    )


@require_POST
def demo_load(request):
    """First start: demo customers into an empty database, then the first segmentation."""
    try:
        summary, run = demo_start()
    except ValidationError as error:
        messages.error(request, _error_text(error))
        return redirect("pages:today")
    audit_record(
        actor=audit_actor(request),
        action=AuditEntry.Action.IMPORTED,
        object_type="crm.customer",
        count=summary.customers,
        detail=f"demo data; first segmentation run #{run.pk}",
    )
    messages.success(
        request,
        f"Demo data loaded: {summary.customers:,} customers with {summary.purchases:,} "
        f"purchases and {summary.feedback:,} feedback entries, and {summary.offers} offers.",
    )
    run_watch_remember(request, run=run)
    return redirect("pages:dashboard")


# --- Customer list ---------------------------------------------------------------------------

CUSTOMERS_PER_PAGE = 50


@require_GET
def customer_list(request):
    filterset = CustomerListFilter(
        request.GET or None,
        queryset=Customer.objects.select_related("membership__segment").only(
            *CUSTOMER_LIST_COLUMNS
        ),
    )
    table = CustomerListTable(filterset.qs)
    filtered = bool(request.GET and filterset.form.has_changed())
    if not filtered:
        table.empty_text = "No customers yet: import a CSV or add one."
    table_configure(request, table, per_page=CUSTOMERS_PER_PAGE, paginator_class=LazyPaginator)
    return render(
        request,
        "pages/customer_list.html",
        {
            "filter": filterset,
            "table": table,
            "filtered": filtered,
            "list_url": request.get_full_path(),
        },
    )


# The columns the list shows (and the segment through the membership).
CUSTOMER_LIST_COLUMNS = (
    "pk",
    "name",
    "email",
    "external_source",
    "external_id",
    "city",
    "purchase_count",
    "total_spent",
    "last_purchase_at",
    "membership__segment__name",
    "membership__segment__color",
)


@require_POST
def customers_bulk(request):
    """Tag or export the customers ticked on the list."""
    ids = [int(v) for v in request.POST.getlist("selected") if v.isdigit()]
    back = _next_url(request, reverse("pages:customer_list"))
    if not ids:
        messages.error(request, "Tick at least one customer first.")
        return redirect(back)
    selection = Customer.objects.filter(pk__in=ids)
    action = request.POST.get("action")
    if action == "export":
        if not request.user.has_perm("crm.export_customer"):
            raise PermissionDenied
        hidden = (
            ()
            if request.user.has_perm(CUSTOMER_SENSITIVE_PERMISSION)
            else CUSTOMER_SENSITIVE_FIELDS
        )
        rows = customer_rows(
            selection.order_by("pk"), extra_columns=CUSTOMER_EXPORT_PROVIDERS, hidden=hidden
        )
        audit_record(
            actor=audit_actor(request),
            action=AuditEntry.Action.EXPORTED,
            obj=None,
            count=len(ids),
            detail="customers ticked on the customer list",
        )
        response = StreamingHttpResponse(csv_lines(rows), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="customers.csv"'
        return response
    if action == "tag":
        try:
            count = customers_tag(customers=ids, tag_names=[request.POST.get("tag_name", "")])
        except ValidationError as error:
            messages.error(request, _error_text(error))
        else:
            messages.success(request, f"Tagged {count} customer{'s' if count != 1 else ''}.")
        return redirect(back)
    messages.error(request, "Choose an action.")
    return redirect(back)


def customer_new(request):
    form = CustomerForm(request.POST or None, sensitive=_sees_sensitive(request))
    if request.method == "POST" and form.is_valid():
        try:
            customer = customer_create(
                tag_names=form.tag_list(),
                **{f: form.cleaned_data[f] for f in CUSTOMER_FORM_FIELDS},
            )
        except ValidationError as error:
            _form_errors_add(form, error)
        else:
            messages.success(request, f"{customer} added.")
            return redirect(customer.get_absolute_url())
    status = 400 if request.method == "POST" else 200
    return render(request, "pages/customer_form.html", {"form": form}, status=status)


def _form_errors_add(form, error: ValidationError) -> None:
    """A service's ValidationError onto the form: on its field when the form has it."""
    if hasattr(error, "error_dict"):
        for field, errors in error.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, error.messages)


# --- Customer --------------------------------------------------------------------------------


def _customer_page(
    request, customer: Customer, *, feedback_form=None, edit_form=None, sale_form=None, status=200
):
    page = page_selectors.customer_page(customer=customer)
    return render(
        request,
        "pages/customer_detail.html",
        {
            "customer": customer,
            "membership": page.membership,
            "tags": page.tags,
            "purchases": page.purchases,
            "feedback": page.feedback,
            "scores": page.scores,
            "history": page.history,
            "responses": page.responses,
            "response_counts": page.response_counts,
            "ranked": page.ranked,
            "ranking_method": offer_services.RANKING_METHOD,
            "email_bounce": offer_selectors.customer_email_bounce(customer=customer),
            "feedback_form": feedback_form or FeedbackForm(),
            "edit_form": edit_form
            or CustomerForm(instance=customer, with_tags=False, sensitive=_sees_sensitive(request)),
            "edit_open": edit_form is not None,
            "sale_form": sale_form or SaleForm(),
            "activity_form": ActivityForm(),
            "followup_form": FollowUpForm(),
            "follow_ups": page.follow_ups,
            "timeline": page.timeline,
            "pin_form": SegmentPinForm(
                initial={"segment": page.membership.segment_id if page.membership else None}
            ),
            "outcomes": OfferOutcomeForm.base_fields["outcome"].choices,
            "rhythm_days": page.rhythm_days,
            "average_order": page.average_order,
            "feedback_link": _feedback_link(request, customer),
            "feedback_short_link": _feedback_short_link_shown(request, customer),
            "outlook": customer_prediction(customer=customer),
            "why": page_selectors.segment_why(
                customer=customer, segment=page.membership.segment if page.membership else None
            ),
        },
        status=status,
    )


def _feedback_link(request, customer: Customer) -> str:
    """A fresh public feedback link, absolute so the owner can paste it anywhere."""
    return feedback_link_url(customer=customer, request=request)


SHORT_LINK_SESSION_KEY = "feedback_short_link"


def _feedback_short_link_shown(request, customer: Customer) -> str:
    """The short link just made for this customer, shown once after the redirect."""
    made = request.session.get(SHORT_LINK_SESSION_KEY)
    if not made or made.get("customer") != customer.pk:
        return ""
    del request.session[SHORT_LINK_SESSION_KEY]
    return made["url"]


@require_POST
def customer_feedback_link_create(request, pk: int):
    """Make a short feedback link for a text message and show it on the customer page."""
    customer = _customer_get(pk)
    try:
        link = feedback_short_link_create(customer=customer)
    except FeedbackLinkError:
        messages.error(request, "An archived customer cannot be sent a feedback link.")
    else:
        request.session[SHORT_LINK_SESSION_KEY] = {
            "customer": customer.pk,
            "url": feedback_short_link_url(link=link, request=request),
        }
    return redirect(f"{reverse('pages:customer_detail', args=[customer.pk])}#feedback-link")


def _customer_get(pk: int) -> Customer:
    return get_object_or_404(Customer.objects.select_related("membership__segment"), pk=pk)


@require_GET
def customer_detail(request, pk: int):
    return _customer_page(request, _customer_get(pk))


@require_GET
def customer_data_export(request, pk: int):
    """Everything held about the customer, as one JSON file (their right of access)."""
    customer = _customer_get(pk)
    body = customer_data.customer_data_json(customer=customer, actor=audit_actor(request))
    response = HttpResponse(body, content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="customer-{customer.pk}-data.json"'
    return response


def customer_erase(request, pk: int):
    """Confirm, then erase the customer and everything held about them."""
    customer = _customer_get(pk)
    form = CustomerEraseForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        erasure = customer_data.customer_erase(customer=customer, actor=audit_actor(request))
        messages.success(
            request,
            f"Customer #{erasure.customer_id} was erased: {erasure.summary()}.",
        )
        return redirect("pages:customer_list")
    counts = {
        "purchases": customer.purchases.count(),
        "feedback": customer.feedback.count(),
        "activities": customer.activities.count(),
    }
    return render(
        request,
        "pages/customer_erase.html",
        {"customer": customer, "form": form, "counts": counts},
        status=400 if form.is_bound else 200,
    )


@require_POST
def customer_edit(request, pk: int):
    customer = _customer_get(pk)
    form = CustomerForm(
        request.POST, instance=customer, with_tags=False, sensitive=_sees_sensitive(request)
    )
    if form.is_valid():
        try:
            customer_update(customer=customer, **form.changed_fields())
        except ValidationError as error:
            _form_errors_add(form, error)
            customer.refresh_from_db()  # the page shows what is stored, the form what was typed
        else:
            messages.success(request, f"{customer} saved.")
            return redirect(customer.get_absolute_url())
    return _customer_page(request, customer, edit_form=form, status=400)


@require_POST
def customer_sale_record(request, pk: int):
    customer = _customer_get(pk)
    form = SaleForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            purchase_record(
                customer=customer,
                amount=data["amount"],
                purchased_at=_day_noon(data["purchased_on"]),
                product=data["product"],
                channel=data["channel"],
            )
        except ValidationError as error:
            _form_errors_add(form, error)
        else:
            messages.success(request, f"Sale of {data['amount']} recorded for {customer}.")
            return redirect(f"{customer.get_absolute_url()}#purchases")
    return _customer_page(request, customer, sale_form=form, status=400)


def _day_noon(day):
    """A sale dated by hand: today means now; another day, its noon (local time)."""
    if day is None or day == timezone.localdate():
        return None
    return timezone.make_aware(datetime.combine(day, time(12)))


@require_POST
def customer_activity_log(request, pk: int):
    """Log a call, an e-mail or a note; from the customer page or Today ("Get in touch")."""
    customer = _customer_get(pk)
    form = ActivityForm(request.POST)
    back = _next_url(request, f"{customer.get_absolute_url()}#activities")
    if not form.is_valid():
        messages.error(request, "Choose a call, an e-mail or a note.")
        return redirect(back)
    try:
        activity = activity_log(
            customer=customer,
            kind=form.cleaned_data["kind"],
            summary=form.cleaned_data["summary"],
            user=request.user,
        )
    except ValidationError as error:
        messages.error(request, _error_text(error))
    else:
        messages.success(request, f"{activity.get_kind_display()} with {customer} logged.")
    return redirect(back)


@require_POST
def customer_followup_create(request, pk: int):
    customer = _customer_get(pk)
    form = FollowUpForm(request.POST)
    back = f"{customer.get_absolute_url()}#follow-ups"
    if not form.is_valid():
        messages.error(request, "Give the day to follow up on.")
        return redirect(back)
    try:
        follow_up = followup_create(
            customer=customer,
            due_on=form.cleaned_data["due_on"],
            note=form.cleaned_data["note"],
            user=request.user,
        )
    except ValidationError as error:
        messages.error(request, _error_text(error))
    else:
        messages.success(request, f"Follow-up with {customer} set for {follow_up.due_on:%d %b}.")
    return redirect(back)


def _followup_get(pk: int, follow_up_pk: int) -> FollowUp:
    return get_object_or_404(
        FollowUp.objects.select_related("customer"), pk=follow_up_pk, customer_id=pk
    )


@require_POST
def followup_done(request, pk: int, follow_up_pk: int):
    follow_up = followup_mark_done(follow_up=_followup_get(pk, follow_up_pk))
    messages.success(request, f"Follow-up with {follow_up.customer} done.")
    return redirect(_next_url(request, f"{follow_up.customer.get_absolute_url()}#follow-ups"))


@require_POST
def followup_snooze_view(request, pk: int, follow_up_pk: int):
    follow_up = _followup_get(pk, follow_up_pk)
    days = request.POST.get("days", "")
    try:
        follow_up = followup_snooze(follow_up=follow_up, days=int(days) if days.isdigit() else 0)
    except ValidationError as error:
        messages.error(request, _error_text(error))
    else:
        messages.success(
            request, f"Follow-up with {follow_up.customer} moved to {follow_up.due_on:%d %b}."
        )
    return redirect(_next_url(request, f"{follow_up.customer.get_absolute_url()}#follow-ups"))


@require_POST
def customer_offer_record(request, pk: int, offer_pk: int):
    customer = _customer_get(pk)
    offer = get_object_or_404(Offer, pk=offer_pk)
    form = OfferOutcomeForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose presented, accepted or declined.")
        return redirect("pages:customer_detail", pk=customer.pk)
    try:
        response = offer_services.offer_response_record(
            offer=offer, customer=customer, outcome=form.cleaned_data["outcome"]
        )
    except ValidationError as error:
        messages.error(request, _error_text(error))
    else:
        messages.success(
            request, f"“{offer}”: {response.get_outcome_display().lower()} by {customer}."
        )
    return redirect(
        _next_url(request, f"{reverse('pages:customer_detail', args=[customer.pk])}#offers")
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
            messages.success(request, f"Feedback from {customer} recorded.")
            return redirect(f"{reverse('pages:customer_detail', args=[customer.pk])}#feedback")
    return _customer_page(request, customer, feedback_form=form, status=400)


@require_POST
def customer_segment_pin(request, pk: int):
    customer = _customer_get(pk)
    form = SegmentPinForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose one of the active segments.")
    else:
        try:
            segment = form.cleaned_data["segment"]
            customer = segment_services.segment_pin(customer=customer, segment=segment)
        except ValidationError as error:
            messages.error(request, " ".join(error.messages))
        else:
            messages.success(request, f"{customer} is pinned to {segment}: runs leave them there.")
    return redirect(f"{reverse('pages:customer_detail', args=[customer.pk])}#segment")


@require_POST
def customer_segment_unpin(request, pk: int):
    customer = segment_services.segment_unpin(customer=_customer_get(pk))
    messages.success(request, f"{customer} is unpinned: the next run places them again.")
    return redirect(f"{reverse('pages:customer_detail', args=[customer.pk])}#segment")


# --- Segment ---------------------------------------------------------------------------------

MEMBERS_PER_PAGE = 25

# How each profile value reads on the page: label and format.
PROFILE_LABELS = {
    "recency_days": ("Last purchase", "{:.0f} days ago"),
    "frequency": ("Purchases", "{:g}"),
    "monetary_total": ("Total spent", "{:,.2f}\u00a0{currency}"),
    "avg_order_value": ("Average order", "{:,.2f}\u00a0{currency}"),
    "tenure_days": ("Customer for", "{:.0f} days"),
    "rating_mean": ("Rating", "{:.1f} / 5"),
    "nps_mean": ("Would recommend", "{:.1f} / 10"),
    "age": ("Age", "{:.0f}"),
    "income": ("Income", "{:,.0f}\u00a0{currency}"),
    "spend_vs_median": ("Spend vs typical customer", "{:.1f}\u00d7"),
    "feedback_share": ("Gave feedback", "{:.0%}"),
}


def _profile_facts(segment: Segment) -> list[tuple[str, str]]:
    facts = []
    currency = business_get().currency
    for key, (label, fmt) in PROFILE_LABELS.items():
        value = (segment.profile_values or {}).get(key)
        if isinstance(value, int | float):
            facts.append((label, fmt.format(value, currency=currency)))
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


@require_GET
def segment_detail(request, pk: int):
    segment = get_object_or_404(Segment, pk=pk)
    filterset = segment_members_filter(request.GET or None, segment=segment)
    table = SegmentMemberTable(filterset.qs)
    filtered = bool(request.GET and filterset.form.has_changed())
    if not filtered:
        table.empty_text = (
            "Nobody is in this segment right now: each segmentation run places customers "
            "in the segment that fits them."
        )
    table_configure(request, table, per_page=MEMBERS_PER_PAGE, paginator_class=LazyPaginator)
    run = segment_selectors.run_latest()
    results = page_selectors.segment_results_cached(segment=segment)
    open_offers = offer_selectors.offers_open_for_segment(segment=segment)
    return render(
        request,
        "pages/segment_detail.html",
        {
            "segment": segment,
            "filter": filterset,
            "table": table,
            "filtered": filtered,
            "movements": page_selectors.segment_movements(segment=segment, run=run),
            "results": results,
            "chart_data": {
                "trend": _trend_chart(results),
                "color": segment.color or "#2563eb",
            },
            "trend_monthly": bool(results.trend),
            "facts": _profile_facts(segment),
            "rules": segment.rules or [r for r in segment.rules_text.splitlines() if r.strip()],
            "present_form": PresentOfferForm(offers=open_offers),
            "can_present": open_offers.exists(),
            "targeted_offers": list(segment.offers.order_by("-created_at", "-id")),
            "export_query": request.GET.urlencode(),
            "outlook": segment_prediction(segment=segment),
        },
    )


@require_http_methods(["GET", "POST"])
def business_settings(request):
    """The owner's Settings page: the business's name, currency and time zone."""
    business = business_get()
    if request.method == "POST":
        form = BusinessSettingsForm(request.POST)
        if form.is_valid():
            try:
                business_settings_update(**form.cleaned_data)
            except ValidationError as error:
                for field, problems in error.message_dict.items():
                    form.add_error(field if field in form.fields else None, problems)
            else:
                messages.success(request, "Settings saved.")
                return redirect("pages:business_settings")
        status = 400
    else:
        form = BusinessSettingsForm(initial=asdict(business))
        status = 200
    return render(request, "pages/business_settings.html", {"form": form}, status=status)
