"""Who may call the API: a live token (writes need scope read_write) or a staff session."""

from rest_framework import permissions

from api.models import ApiToken


class TokenScopePermission(permissions.BasePermission):
    message = "This token is read-only."

    def has_permission(self, request, view) -> bool:
        token = request.auth
        if isinstance(token, ApiToken):
            return request.method in permissions.SAFE_METHODS or token.can_write
        user = request.user
        if not (user and user.is_authenticated and user.is_active and user.is_staff):
            self.message = "Authenticate with a token or log in as staff."
            return False
        return True
