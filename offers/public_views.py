"""Public pages behind the links in offer e-mails: one-click unsubscribe and the offer itself.

No login (the signed token is the key) and nothing about the customer beyond a first name.
"""

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods

from config.client_ip import client_ip
from crm.feedback_link import rate_limit_exceeded
from crm.models import Customer
from offers import mailing, services
from offers.links import LinkInvalid, offer_token_read, unsubscribe_token_read
from offers.messages import first_name_of
from offers.models import Offer, OfferResponse

INVALID = "This link is not valid or has expired. Please check that you copied all of it."


def _page(request, template: str, context: dict, *, status: int = 200) -> HttpResponse:
    response = render(request, template, context, status=status)
    # The token is in the URL: keep it out of Referer headers and search engines.
    response["Referrer-Policy"] = "same-origin"
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


def _error(request, message: str = INVALID, *, status: int = 400) -> HttpResponse:
    return _page(request, "public/feedback_error.html", {"message": message}, status=status)


def _rate_limited(request: HttpRequest) -> HttpResponse | None:
    """A small plain 429 once the client's address passed PUBLIC_LINK_RATE_PER_IP, else None.
    Counts this request. Tokens are signed, so this is against floods, not guessing."""
    limit, window = settings.PUBLIC_LINK_RATE_PER_IP
    address = client_ip(request) or "unknown"
    if not rate_limit_exceeded(key=f"public-link:{address}", limit=limit, window_seconds=window):
        return None
    response = HttpResponse(
        "Too many requests from your network. Please try again in a few minutes.\n",
        status=429,
        content_type="text/plain; charset=utf-8",
    )
    response["Retry-After"] = str(window)
    return response


# CSRF exempt: RFC 8058's one-click POST comes from the mail provider, which holds no CSRF
# token; it is the only POST this view takes and the signed token is what authorises it.
@csrf_exempt
@login_not_required
@never_cache
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """Unsubscribe at once, on the link's GET or the mail client's RFC 8058 POST."""
    # A mail provider sends the one-click POSTs of many recipients from a few addresses:
    # a valid one is never refused (an unsubscribe lost is worse than a busy minute), only
    # counted; the link opened in a browser and any invalid token are limited.
    refused = _rate_limited(request)
    if refused is not None and request.method != "POST":
        return refused
    try:
        link = unsubscribe_token_read(token=token)
    except LinkInvalid:
        return refused or _error(request)
    customer = mailing.customer_unsubscribe(customer_id=link.customer_id)
    if customer is None:
        return _error(request)
    if request.method == "POST":
        return HttpResponse("Unsubscribed.\n", content_type="text/plain")
    return _page(request, "public/unsubscribed.html", {"first_name": first_name_of(customer.name)})


@login_not_required
@never_cache
@csrf_protect
@require_http_methods(["GET", "POST"])
def offer_page(request: HttpRequest, token: str) -> HttpResponse:
    """The customer's own page of an offer, with a button to accept it."""
    if (refused := _rate_limited(request)) is not None:
        return refused
    try:
        link = offer_token_read(token=token)
    except LinkInvalid:
        return _error(request)
    offer = Offer.objects.filter(pk=link.offer_id).first()
    customer = Customer.objects.filter(pk=link.customer_id, is_archived=False).first()
    if offer is None or customer is None:
        return _error(request)
    response = OfferResponse.objects.filter(offer=offer, customer=customer).first()
    accepted = response is not None and response.outcome == OfferResponse.Outcome.ACCEPTED
    context = {
        "offer": offer,
        "terms": mailing.offer_terms(offer),
        "first_name": first_name_of(customer.name),
        "accepted": accepted,
        "open": offer.is_open_on(timezone.localdate()),
        "error": "",
    }
    status = 200
    if request.method == "POST" and not accepted:
        try:
            services.offer_response_record(
                offer=offer, customer=customer, outcome=OfferResponse.Outcome.ACCEPTED
            )
        except ValidationError as error:
            context["error"] = " ".join(error.messages)
            status = 400
        else:
            context["accepted"] = True
    return _page(request, "public/offer.html", context, status=status)
