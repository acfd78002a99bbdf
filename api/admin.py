"""API tokens (created and revoked here) and the webhook events received."""

from django.contrib import admin, messages
from django.db.models import QuerySet

from api import services
from api.models import ApiToken, WebhookEvent
from crm.admin_safety import SafeModelAdmin


@admin.register(ApiToken)
class ApiTokenAdmin(SafeModelAdmin):
    list_display = ["name", "user", "scope", "prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["scope"]
    search_fields = ["name", "prefix", "user__username"]
    list_select_related = ["user"]
    actions = ["revoke"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["user", "name", "scope"]
        return ["user", "name", "scope", "prefix", "created_at", "last_used_at", "revoked_at"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return ["user", "scope", "prefix", "created_at", "last_used_at", "revoked_at"]

    def save_model(self, request, obj, form, change):
        if change:
            obj.save(update_fields=["name"])
            return
        api_token, token = services.api_token_create(user=obj.user, name=obj.name, scope=obj.scope)
        obj.pk = api_token.pk
        obj.prefix, obj.token_hash = api_token.prefix, api_token.token_hash
        # The only time the whole token is ever shown: only its hash is kept.
        messages.warning(
            request, f"The new token (copy it now, it will not be shown again): {token}"
        )

    @admin.action(description="Revoke the selected tokens", permissions=["change"])
    def revoke(self, request, queryset: QuerySet[ApiToken]) -> None:
        for api_token in queryset:
            services.api_token_revoke(api_token=api_token)
        self.message_user(request, f"Revoked {queryset.count()} token(s).")


@admin.register(WebhookEvent)
class WebhookEventAdmin(SafeModelAdmin):
    list_display = ["source", "type", "event_id", "received_at", "processed_at", "error"]
    list_filter = ["source", "type"]
    search_fields = ["event_id"]
    readonly_fields = [f.name for f in WebhookEvent._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
