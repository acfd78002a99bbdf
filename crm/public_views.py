"""The public feedback page behind a signed link, long or short: no login, no customer data,
rate-limited."""

from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_GET, require_http_methods

from config.client_ip import client_ip
from crm.feedback_link import (
    FeedbackLinkError,
    feedback_link_submit,
    feedback_short_link_read,
    feedback_short_link_submit,
    feedback_token_read,
    rate_limit_exceeded,
    token_key,
)
from crm.services import FEEDBACK_COMMENT_MAX

RATING_CHOICES = [(str(n), str(n)) for n in range(1, 6)]
NPS_CHOICES = [(str(n), str(n)) for n in range(11)]


class PublicFeedbackForm(forms.Form):
    rating = forms.TypedChoiceField(
        label="How satisfied are you with our service?",
        choices=RATING_CHOICES,
        coerce=int,
        empty_value=None,
        required=False,
        widget=forms.RadioSelect,
        error_messages={"invalid_choice": "Choose a rating from 1 to 5."},
    )
    nps = forms.TypedChoiceField(
        label="How likely are you to recommend us to a friend?",
        choices=NPS_CHOICES,
        coerce=int,
        empty_value=None,
        required=False,
        widget=forms.RadioSelect,
        error_messages={"invalid_choice": "Choose a score from 0 to 10."},
    )
    comment = forms.CharField(
        label="Anything you would like to tell us?",
        max_length=FEEDBACK_COMMENT_MAX,
        required=False,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 5, "maxlength": FEEDBACK_COMMENT_MAX}),
    )

    def clean(self):
        data = super().clean()
        if data.get("rating") is None and data.get("nps") is None and not self.errors:
            raise ValidationError("Please give a rating, a score, or both.")
        return data


def _rate(name: str, default: tuple[int, int]) -> tuple[int, int]:
    limit, window = getattr(settings, name, default)
    return int(limit), int(window)


def _page(request, template: str, context: dict, *, status: int = 200) -> HttpResponse:
    response = render(request, template, context, status=status)
    # The token is in the URL: keep it out of Referer headers sent to other sites and out of
    # search engines. Not "no-referrer": with it browsers send "Origin: null" on the form's
    # POST, which Django's CSRF check rightly refuses.
    response["Referrer-Policy"] = "same-origin"
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


def _error(request, *, status: int, message: str) -> HttpResponse:
    return _page(request, "public/feedback_error.html", {"message": message}, status=status)


def _feedback_form_page(request: HttpRequest, *, key: str, read, submit) -> HttpResponse:
    """The form of a link (long or short): rate-limited, checked, stored once."""
    ip_limit, ip_window = _rate("FEEDBACK_LINK_RATE_PER_IP", (30, 600))
    if rate_limit_exceeded(
        key=f"ip:{client_ip(request) or 'unknown'}", limit=ip_limit, window_seconds=ip_window
    ):
        return _error(request, status=429, message="Too many attempts. Please try again later.")
    try:
        read()
    except FeedbackLinkError as exc:
        return _error(request, status=exc.status, message=exc.message)

    status = 200
    if request.method == "POST":
        token_limit, token_window = _rate("FEEDBACK_LINK_RATE_PER_TOKEN", (10, 3600))
        if rate_limit_exceeded(
            key=f"token:{token_key(key)}", limit=token_limit, window_seconds=token_window
        ):
            return _error(request, status=429, message="Too many attempts. Please try again later.")
        form = PublicFeedbackForm(request.POST)
        if form.is_valid():
            try:
                submit(**form.cleaned_data)
            except FeedbackLinkError as exc:
                return _error(request, status=exc.status, message=exc.message)
            except ValidationError as exc:
                form.add_error(None, exc)
            else:
                return redirect("feedback:thanks")
        status = 400
    else:
        form = PublicFeedbackForm()
    return _page(request, "public/feedback_form.html", {"form": form}, status=status)


@login_not_required
@never_cache
@csrf_protect
@require_http_methods(["GET", "POST"])
def feedback_submit(request: HttpRequest, token: str) -> HttpResponse:
    """Show the feedback form of a long link and store one submission from it."""
    return _feedback_form_page(
        request,
        key=token,
        read=lambda: feedback_token_read(token=token),
        submit=lambda **answers: feedback_link_submit(token=token, **answers),
    )


@login_not_required
@never_cache
@csrf_protect
@require_http_methods(["GET", "POST"])
def feedback_short_submit(request: HttpRequest, code: str) -> HttpResponse:
    """The same form behind a short link (/f/<code>), for text messages."""
    return _feedback_form_page(
        request,
        key=f"short:{code}",
        read=lambda: feedback_short_link_read(code=code),
        submit=lambda **answers: feedback_short_link_submit(code=code, **answers),
    )


@login_not_required
@require_GET
def feedback_thanks(request: HttpRequest) -> HttpResponse:
    """Where a successful submission lands (no data at all, so it can be bookmarked)."""
    return _page(request, "public/feedback_thanks.html", {})
