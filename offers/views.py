"""Offer pages: the list, one offer with its results and e-mail, the form, sending and
presenting one to a segment."""

import csv

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from crm.tables import table_configure
from offers import mailing, selectors, services
from offers.forms import OfferForm, PresentOfferForm
from offers.metrics import offer_results
from offers.models import Offer
from offers.tables import OfferTable
from segmentation.models import Segment


@require_GET
def offer_list(request):
    offers = selectors.offers_with_counts().order_by("-is_active", "-created_at", "-id")
    table = OfferTable(offers)
    table_configure(request, table, per_page=25)
    return render(request, "offers/offer_list.html", {"table": table})


@require_GET
def offer_detail(request, pk: int):
    offer = get_object_or_404(Offer, pk=pk)
    results = offer_results(offer=offer)
    segments = list(offer.segments.order_by("-size", "id"))
    preview_for = mailing.offer_preview_customer(
        offer=offer, customer_id=_int_or_none(request.GET.get("customer"))
    )
    return render(
        request,
        "offers/offer_detail.html",
        {
            "offer": offer,
            "segments": segments,
            "send_segments": segments or list(Segment.objects.active().order_by("-size", "id")),
            "results": results,
            "open_now": offer.is_open_on(timezone.localdate()),
            "preview_for": preview_for,
            "preview": preview_for and mailing.offer_message(offer=offer, customer=preview_for),
            "deliveries": selectors.offer_delivery_counts(offer=offer),
        },
    )


def _int_or_none(raw: str | None) -> int | None:
    return int(raw) if raw and raw.isdigit() else None


@require_POST
def offer_email_test(request, pk: int):
    """Send the logged-in owner the message as the chosen customer would receive it."""
    offer = get_object_or_404(Offer, pk=pk)
    customer = mailing.offer_preview_customer(
        offer=offer, customer_id=_int_or_none(request.POST.get("customer"))
    )
    if customer is None:
        messages.error(request, "There is no customer to preview the message for.")
        return redirect(offer.get_absolute_url())
    try:
        mailing.offer_test_send(offer=offer, customer=customer, to=request.user.email)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    except OSError as error:  # smtplib's errors too: the mail server refused or is away
        messages.error(request, f"The test could not be sent: {error}")
    else:
        messages.success(request, f"Test message sent to {request.user.email}.")
    return redirect(f"{offer.get_absolute_url()}?customer={customer.pk}#email")


@require_http_methods(["GET", "POST"])
def offer_email_send(request, pk: int, segment_pk: int):
    """Who the offer's e-mail reaches in a segment; on confirmation, queue the send."""
    offer = get_object_or_404(Offer, pk=pk)
    segment = get_object_or_404(Segment, pk=segment_pk)
    if request.method == "POST":
        try:
            mailing.offer_email_start(offer=offer, segment=segment)
        except ValidationError as error:
            messages.error(request, " ".join(error.messages))
        else:
            messages.success(
                request,
                f"“{offer}” is being sent to the customers of {segment} who may receive it, "
                "the control group kept aside. The counts below grow as messages go out.",
            )
            return redirect(offer.get_absolute_url())
    audience = mailing.offer_email_audience_summary(offer=offer, segment=segment, shown=200)
    return render(
        request,
        "offers/offer_send.html",
        {"offer": offer, "segment": segment, "audience": audience},
    )


@require_GET
def offer_recipients_csv(request, pk: int, segment_pk: int):
    """The eligible recipients (control group left out), for sending from another tool."""
    offer = get_object_or_404(Offer, pk=pk)
    segment = get_object_or_404(Segment, pk=segment_pk)
    audience = mailing.offer_email_audience(offer=offer, segment=segment)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = (
        f'attachment; filename="offer-{offer.pk}-segment-{segment.pk}-recipients.csv"'
    )
    writer = csv.writer(response)
    writer.writerow(["customer_id", "name", "email", "offer_link", "unsubscribe_link"])
    for customer in audience.recipients:
        values = mailing.offer_message_values(offer=offer, customer=customer)
        writer.writerow(
            [
                customer.pk,
                _csv_safe(customer.name),
                _csv_safe(customer.email),
                values["offer_link"],
                values["unsubscribe_link"],
            ]
        )
    return response


def _csv_safe(value: str) -> str:
    # A cell starting with = + - @ is run as a formula by spreadsheets: quote it as text.
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


@require_http_methods(["GET", "POST"])
def offer_present_by_hand(request, pk: int, segment_pk: int):
    """The owner contacts customers another way: record PRESENTED only for those ticked."""
    offer = get_object_or_404(Offer, pk=pk)
    segment = get_object_or_404(Segment, pk=segment_pk)
    audience = mailing.offer_email_audience(offer=offer, segment=segment)
    if request.method == "POST":
        eligible = {c.pk for c in audience.recipients}
        ticked = sorted(
            eligible & {int(v) for v in request.POST.getlist("customer") if v.isdigit()}
        )
        if not ticked:
            messages.error(request, "Tick the customers you presented the offer to.")
        else:
            try:
                # The control group of the same list is recorded too, so the lift compares
                # like with like.
                done = services.offer_present(
                    offer=offer, segment=segment, customers=ticked + audience.held_out
                )
            except ValidationError as error:
                messages.error(request, " ".join(error.messages))
            else:
                messages.success(
                    request, f"“{offer}” recorded as presented to {done.presented:,} customers."
                )
                return redirect(offer.get_absolute_url())
    return render(
        request,
        "offers/offer_present_by_hand.html",
        {"offer": offer, "segment": segment, "audience": audience},
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
                saved = services.offer_save(offer=offer, segments=segments, **fields)
            except ValidationError as error:
                form.add_error(None, error)
            else:
                messages.success(request, f"Offer “{saved}” saved.")
                return redirect("offers:offer_detail", pk=saved.pk)
        return render(request, "offers/offer_form.html", {"form": form, "offer": offer}, status=400)
    return render(request, "offers/offer_form.html", {"form": form, "offer": offer})


@require_POST
def segment_offer_present(request, pk: int):
    """The segment page's "present an offer": on to choosing who actually receives it.

    Nobody is recorded as presented here: an e-mail offer goes to its send page (recipients,
    then confirm; PRESENTED is recorded as each message goes out), any other channel to the
    list where the owner ticks whom they contacted.
    """
    segment = get_object_or_404(Segment, pk=pk)
    form = PresentOfferForm(request.POST, offers=selectors.offers_open_for_segment(segment=segment))
    if not form.is_valid():
        messages.error(request, "Choose one of the open offers for this segment.")
        return redirect(segment.get_absolute_url())
    offer = form.cleaned_data["offer"]
    if offer.channel == Offer.Channel.EMAIL:
        return redirect("offers:offer_email_send", pk=offer.pk, segment_pk=segment.pk)
    return redirect("offers:offer_present_by_hand", pk=offer.pk, segment_pk=segment.pk)
