"""Every page needs a logged-in, active staff user unless its view is marked login_not_required."""

from django.contrib.auth.middleware import LoginRequiredMiddleware


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
