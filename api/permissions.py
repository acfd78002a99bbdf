"""Who may call the API: a live token (writes need scope read_write) or a staff session whose
user has the model permissions of the call (the same roles as the pages)."""

from rest_framework import permissions

from api.models import ApiToken

# The permissions a method needs on the endpoint's model; an upsert may create or change.
METHOD_ACTIONS = {
    "GET": ("view",),
    "HEAD": ("view",),
    "OPTIONS": ("view",),
    "POST": ("add",),
    "PATCH": ("change",),
    "PUT": ("add", "change"),
    "DELETE": ("delete",),
}


def _endpoint_model(view):
    # A viewset names its model by its queryset, or by the serializer's Meta (create-only).
    queryset = getattr(view, "queryset", None)
    if queryset is not None:
        return queryset.model
    serializer_class = getattr(view, "serializer_class", None)
    meta = getattr(serializer_class, "Meta", None)
    return getattr(meta, "model", None)


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
        model = _endpoint_model(view)
        if model is None:  # the schema: no data
            return True
        opts = model._meta
        needed = [
            f"{opts.app_label}.{action}_{opts.model_name}"
            for action in METHOD_ACTIONS.get(request.method, ("change",))
        ]
        if not user.has_perms(needed):
            self.message = f"Your role does not allow this ({', '.join(needed)})."
            return False
        return True
