"""Second step of the login for every staff page: a session of a user with an authenticator
app enters a code first; an owner without one sets it up first (OTP_REQUIRED_FOR_OWNERS)."""

from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.views import redirect_to_login
from django.urls import reverse

from accounts.selectors import NEEDS_CODE, NEEDS_SETUP, session_two_step_missing

# Pages a session may open while it still owes its code or set-up.
OPEN_WHILE = {
    NEEDS_CODE: {"admin:logout"},
    NEEDS_SETUP: {
        "admin:logout",
        "accounts:two_step",
        "accounts:two_step_start",
        "accounts:two_step_confirm",
    },
}
SENT_TO = {NEEDS_CODE: "admin:login_code", NEEDS_SETUP: "accounts:two_step"}


class TwoStepMiddleware:
    """After the staff check (config.middleware.StaffRequiredMiddleware), before the
    permission check: such a session is sent to the code or set-up page from every staff
    page; the API takes it for no session at all (API tokens are not touched); public pages
    do not care."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        user = request.user
        if not (user.is_authenticated and user.is_active and user.is_staff):
            return None
        missing = session_two_step_missing(user=user)
        if missing is None:
            return None
        match = request.resolver_match
        if match is not None and match.view_name in OPEN_WHILE[missing]:
            return None
        if getattr(view_func, "login_required", True):
            return redirect_to_login(request.get_full_path(), reverse(SENT_TO[missing]))
        if match is not None and match.namespaces[:1] == ["api"]:
            # DRF's session authentication reads this user: none, so only a token gets in.
            request.user = AnonymousUser()
        return None
