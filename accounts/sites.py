"""The admin site with a login in two steps: the password, then (for a user who has set up an
authenticator app) a code of the app or a recovery code.

The password step does not log in a user who has an app: it remembers them in the session for
TWO_STEP_PENDING_SECONDS, and only a right code logs them in. Wrong codes count as failed
logins for django-axes, so the lockout covers both steps.
"""

import time

import django_otp
from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import REDIRECT_FIELD_NAME, get_user_model, logout
from django.contrib.auth import login as auth_login
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.signals import user_login_failed
from django.contrib.auth.views import LoginView
from django.core.exceptions import ValidationError
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters

from accounts.forms import CodeForm
from accounts.selectors import NEEDS_CODE, session_two_step_missing, user_has_two_step
from accounts.services import two_step_code_verify

PENDING_LOGIN = "two_step_pending_login"


class PasswordStepView(LoginView):
    """Django's login view, stopping before the login when the user has an authenticator app."""

    def form_valid(self, form):
        user = form.get_user()
        if not user_has_two_step(user=user):
            return super().form_valid(form)
        self.request.session[PENDING_LOGIN] = {
            "user_id": user.pk,
            "backend": user.backend,
            "since": int(time.time()),
            "next": self.get_success_url(),
        }
        return HttpResponseRedirect(
            reverse("admin:login_code", current_app=self.request.current_app)
        )


def _pending_login(request) -> tuple[object | None, dict]:
    """The user whose password was right in this session, unless that was too long ago."""
    pending = request.session.get(PENDING_LOGIN)
    if not pending:
        return None, {}
    if time.time() - pending["since"] > settings.TWO_STEP_PENDING_SECONDS:
        del request.session[PENDING_LOGIN]
        return None, {}
    user = get_user_model()._default_manager.filter(pk=pending["user_id"], is_active=True).first()
    if user is not None:
        user.backend = pending["backend"]
    return user, pending


def _safe_next(request, *candidates: str) -> str:
    for candidate in candidates:
        if candidate and url_has_allowed_host_and_scheme(
            candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            return candidate
    return reverse("admin:index")


class TwoStepAdminSite(admin.AdminSite):
    def has_permission(self, request):
        # A session that still owes its code (or an owner's set-up) opens no admin page.
        return super().has_permission(request) and not session_two_step_missing(user=request.user)

    def get_urls(self):
        return [
            path("login/code/", self.login_code, name="login_code"),
            *super().get_urls(),
        ]

    @method_decorator(never_cache)
    @method_decorator(sensitive_post_parameters())
    @login_not_required
    def login(self, request, extra_context=None):
        """AdminSite.login with PasswordStepView in place of Django's LoginView."""
        if request.user.is_authenticated and session_two_step_missing(user=request.user) == (
            NEEDS_CODE
        ):
            return HttpResponseRedirect(reverse("admin:login_code", current_app=self.name))
        if request.method == "GET" and self.has_permission(request):
            return HttpResponseRedirect(reverse("admin:index", current_app=self.name))
        context = {
            **self.each_context(request),
            "title": "Log in",
            "subtitle": None,
            "app_path": request.get_full_path(),
            "username": request.user.get_username(),
        }
        if REDIRECT_FIELD_NAME not in request.GET and REDIRECT_FIELD_NAME not in request.POST:
            context[REDIRECT_FIELD_NAME] = reverse("admin:index", current_app=self.name)
        context.update(extra_context or {})
        request.current_app = self.name
        return PasswordStepView.as_view(
            extra_context=context,
            authentication_form=self.login_form or AdminAuthenticationForm,
            template_name=self.login_template or "admin/login.html",
        )(request)

    @method_decorator(never_cache)
    @method_decorator(sensitive_post_parameters())
    @login_not_required
    def login_code(self, request):
        """The second step: a code of the authenticator app, or a recovery code.

        For a password just given in this session, or for a logged-in session that has not
        used the app yet (one that began before the app was set up elsewhere).
        """
        pending_user, pending = _pending_login(request)
        logged_in = request.user.is_authenticated
        user = request.user if logged_in else pending_user
        next_url = _safe_next(request, pending.get("next", ""), request.GET.get("next", ""))
        if user is None:
            return HttpResponseRedirect(reverse("admin:login", current_app=self.name))
        if logged_in and session_two_step_missing(user=user) != NEEDS_CODE:
            return HttpResponseRedirect(next_url)
        credentials = {"username": user.get_username()}
        if AxesProxyHandler.is_locked(request, credentials):
            # Locked out (by wrong passwords or codes): not even the right code lets in.
            request.axes_locked_out, request.axes_credentials = True, credentials
            request.session.pop(PENDING_LOGIN, None)
            if logged_in:
                logout(request)
            return HttpResponseRedirect(reverse("admin:login", current_app=self.name))
        form, errors = CodeForm(request.POST or None), []
        if request.method == "POST" and form.is_valid():
            try:
                device = two_step_code_verify(user=user, code=form.cleaned_data["code"])
            except ValidationError as error:
                errors = error.messages
                form = CodeForm()  # an empty field for the next try
                # Counted by django-axes like a wrong password; past the limit its middleware
                # answers with the lockout page, and this half-done login is dropped.
                user_login_failed.send(sender=__name__, credentials=credentials, request=request)
                if getattr(request, "axes_locked_out", False):
                    request.session.pop(PENDING_LOGIN, None)
                    if logged_in:
                        logout(request)
            else:
                request.session.pop(PENDING_LOGIN, None)
                if logged_in:
                    django_otp.login(request, device)
                else:
                    user.otp_device = device  # django-otp keeps it in the session at login
                    auth_login(request, user)
                return HttpResponseRedirect(next_url)
        context = {
            **self.each_context(request),
            "title": "Enter your code",
            "subtitle": None,
            "form": form,
            "errors": errors or form.errors.get("code", []),
            "username": user.get_username(),
            "logged_in": logged_in,
        }
        request.current_app = self.name
        return TemplateResponse(request, "admin/login_code.html", context)
