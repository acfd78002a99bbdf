"""Every page needs a logged-in, active staff user unless its view is marked login_not_required."""

import time
import zoneinfo

from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.middleware import LoginRequiredMiddleware
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError
from django.utils import timezone

from config.access import (
    AUDITED_REQUESTS,
    EVERY_STAFF_USER,
    PAGE_PERMISSIONS,
    SELF_CHECKED_NAMESPACES,
)
from crm.audit import audit_actor, audit_record
from crm.selectors import business_from_environment, business_get


class StaffRequiredMiddleware(LoginRequiredMiddleware):
    """LoginRequiredMiddleware, stricter: a logged-in user who is not staff goes to the login
    page too, which tells them the account has no access and offers to log in as someone else.

    One rule in one place, so a page added later cannot forget it.
    """

    def process_view(self, request, view_func, view_args, view_kwargs):
        user = request.user
        if user.is_authenticated and user.is_active and user.is_staff:
            return None
        if not getattr(view_func, "login_required", True):
            return None
        return self.handle_no_permission(request, view_func)


class PermissionRequiredMiddleware:
    """After the staff check: the page's permission from config.access.PAGE_PERMISSIONS.

    The staff check says who may log in; this says what each role may open. A page not in
    the table is closed to everyone but superusers.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        if not getattr(view_func, "login_required", True):
            return None
        match = request.resolver_match
        if match is None or (match.namespaces and match.namespaces[0] in SELF_CHECKED_NAMESPACES):
            return None
        if request.user.is_superuser:
            return None
        permission = PAGE_PERMISSIONS.get(match.view_name)
        if permission == EVERY_STAFF_USER:
            return None
        if permission is None or not request.user.has_perm(permission):
            raise PermissionDenied
        return None


class AuditTrailMiddleware:
    """Records the requests of config.access.AUDITED_REQUESTS in the audit trail."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        match = request.resolver_match
        audited = AUDITED_REQUESTS.get(match.view_name) if match else None
        if audited and request.method == audited[0] and request.user.is_authenticated:
            method, action, object_type, argument = audited
            done = response.status_code == 200 if method == "GET" else response.status_code == 302
            if done:
                audit_record(
                    actor=audit_actor(request),
                    action=action,
                    object_type=object_type,
                    object_id=str(match.kwargs.get(argument, "")) if argument else "",
                )
        return response


class SessionTimeoutMiddleware:
    """Ends a session after SESSION_IDLE_SECONDS without a request, and SESSION_MAX_SECONDS
    after it began however busy it is (a stolen or forgotten session does not live on).

    The last-seen time is written at most once a minute, so a busy page does not save the
    session on every request.
    """

    STARTED, SEEN = "session_started_at", "session_seen_at"

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.user.is_authenticated:
            now = int(time.time())
            session = request.session
            started = session.setdefault(self.STARTED, now)
            seen = session.get(self.SEEN, now)
            if (
                now - seen > settings.SESSION_IDLE_SECONDS
                or now - started > settings.SESSION_MAX_SECONDS
            ):
                logout(request)  # flushes the session; the staff check then asks for a login
            elif now - seen >= 60 or self.SEEN not in session:
                session[self.SEEN] = now
        return self.get_response(request)


class BusinessTimeZoneMiddleware:
    """Shows dates and "today" in the business's time zone (crm.selectors.business_get) for
    the whole request, on staff and public pages alike."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            zone = business_get().time_zone
        except DatabaseError:
            # The database is down: the page says so (config.errors); the health check and
            # the maintenance page still answer, in the environment's time zone.
            zone = business_from_environment().time_zone
        timezone.activate(zoneinfo.ZoneInfo(zone))
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
