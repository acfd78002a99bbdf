"""The Two-step sign-in page: set up an authenticator app, renew recovery codes, turn it off."""

import django_otp
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_POST

from accounts import selectors, services
from accounts.forms import AppCodeForm, CodeForm
from accounts.services import RECOVERY_CODE_COUNT


def _next_url(request) -> str:
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return ""


def _page(request, *, confirm_form=None, code_form=None, off_form=None, status=200):
    user = request.user
    device = selectors.totp_device_confirmed(user=user)
    pending = None if device else selectors.totp_device_pending(user=user)
    context = {
        "device": device,
        "pending": pending,
        "required": selectors.user_must_set_up_two_step(user=user),
        "next": _next_url(request),
        "recovery_left": selectors.recovery_codes_left(user=user) if device else 0,
        "recovery_total": RECOVERY_CODE_COUNT,
        "confirm_form": confirm_form or AppCodeForm(),
        "code_form": code_form or CodeForm(prefix="renew"),
        "off_form": off_form or CodeForm(prefix="off"),
    }
    if pending:
        context["key_text"] = selectors.totp_key_text(pending)
        context["qr_svg"] = selectors.totp_qr_svg(pending)
    return render(request, "accounts/two_step.html", context, status=status)


@require_GET
@never_cache
def two_step(request):
    return _page(request)


@require_POST
def two_step_start(request):
    try:
        services.two_step_setup_start(user=request.user)
    except ValidationError as error:
        messages.error(request, error.messages[0])
    target = redirect("accounts:two_step")
    if next_url := _next_url(request):
        target["Location"] += "?" + urlencode({"next": next_url})
    return target


def _codes_page(request, codes: list[str], *, just_turned_on: bool):
    return render(
        request,
        "accounts/recovery_codes.html",
        {"codes": codes, "just_turned_on": just_turned_on, "next": _next_url(request)},
    )


@require_POST
@never_cache
@sensitive_post_parameters()
def two_step_confirm(request):
    form = AppCodeForm(request.POST)
    if not form.is_valid():
        return _page(request, confirm_form=form, status=400)
    try:
        device, codes = services.two_step_setup_confirm(
            user=request.user, code=form.cleaned_data["code"]
        )
    except ValidationError as error:
        form.add_error("code", error)
        return _page(request, confirm_form=form, status=400)
    # This session has just shown the app works: it counts as verified.
    django_otp.login(request, device)
    # The codes are shown on this answer only: they are never shown again.
    return _codes_page(request, codes, just_turned_on=True)


@require_POST
@never_cache
@sensitive_post_parameters()
def recovery_codes_regenerate(request):
    form = CodeForm(request.POST, prefix="renew")
    if not form.is_valid():
        return _page(request, code_form=form, status=400)
    try:
        codes = services.recovery_codes_regenerate(
            user=request.user, code=form.cleaned_data["code"]
        )
    except ValidationError as error:
        form.add_error("code", error)
        return _page(request, code_form=form, status=400)
    return _codes_page(request, codes, just_turned_on=False)


@require_POST
@sensitive_post_parameters()
def two_step_turn_off(request):
    form = CodeForm(request.POST, prefix="off")
    if not form.is_valid():
        return _page(request, off_form=form, status=400)
    try:
        services.two_step_turn_off(user=request.user, code=form.cleaned_data["code"])
    except ValidationError as error:
        form.add_error("code", error)
        return _page(request, off_form=form, status=400)
    messages.success(request, "Two-step sign-in is off: logging in asks for your password only.")
    return redirect("accounts:two_step")
