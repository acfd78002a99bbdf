"""Offer pages: the list, one offer with its results, the form, presenting one to a segment."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_tables2 import RequestConfig

from offers import selectors, services
from offers.forms import OfferForm, PresentOfferForm
from offers.metrics import offer_results
from offers.models import Offer
from offers.tables import OfferTable
from segmentation.models import Segment


@require_GET
def offer_list(request):
    offers = selectors.offers_with_counts().order_by("-is_active", "-created_at", "-id")
    table = OfferTable(offers)
    RequestConfig(request, paginate={"per_page": 25}).configure(table)
    return render(request, "offers/offer_list.html", {"table": table})


@require_GET
def offer_detail(request, pk: int):
    offer = get_object_or_404(Offer, pk=pk)
    results = offer_results(offer=offer)
    return render(
        request,
        "offers/offer_detail.html",
        {
            "offer": offer,
            "segments": list(offer.segments.order_by("-size", "id")),
            "results": results,
            "open_now": offer.is_open_on(timezone.localdate()),
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
    segment = get_object_or_404(Segment, pk=pk)
    back = f"{segment.get_absolute_url()}#offers"
    form = PresentOfferForm(request.POST, offers=selectors.offers_open_for_segment(segment=segment))
    if not form.is_valid():
        messages.error(request, "Choose one of the open offers for this segment.")
        return redirect(segment.get_absolute_url())
    offer = form.cleaned_data["offer"]
    try:
        outcome = services.offer_present_or_queue(offer=offer, segment=segment)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        if outcome.queued:
            messages.info(
                request,
                f"“{offer}” is being presented to the {segment.size:,} customers of {segment} "
                "in the background; its results appear here in a minute or two.",
            )
        else:
            done = outcome.done
            messages.success(
                request,
                f"“{offer}” presented to {done.presented:,} customers of {segment}; "
                f"{done.held_out:,} kept aside as the control group"
                + (f"; {done.already:,} already had it." if done.already else "."),
            )
    return redirect(back)
