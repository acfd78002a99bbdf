"""crm's customer admin extended with each customer's segment, its history and the pin actions."""

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.urls import NoReverseMatch
from django.utils import timezone
from django.utils.html import format_html, format_html_join

# crm's customer admin, extended below with the segment (an app's admin may build on a lower
# app's admin; nothing else imports an admin module).
from crm.admin import CustomerAdmin
from crm.models import Customer
from segmentation import selectors, services
from segmentation.exports import CUSTOMER_EXPORT_PROVIDERS

# Customer admin actions (listed in CustomerSegmentAdmin.actions below).
PIN_ACTION_LIMIT = 1000


def _pin_targets(modeladmin, request, queryset) -> list | None:
    customers = list(queryset.select_related("membership__segment")[: PIN_ACTION_LIMIT + 1])
    if len(customers) > PIN_ACTION_LIMIT:
        modeladmin.message_user(
            request,
            f"Select at most {PIN_ACTION_LIMIT:,} customers to pin or unpin at once.",
            messages.ERROR,
        )
        return None
    return customers


@admin.action(
    description="Pin the selected customers to their current segment", permissions=["pin"]
)
def customers_pin(modeladmin, request, queryset) -> None:
    customers = _pin_targets(modeladmin, request, queryset)
    if customers is None:
        return
    pinned, problems = 0, []
    for customer in customers:
        try:
            services.segment_pin(customer=customer)
            pinned += 1
        except ValidationError as exc:
            problems.extend(exc.messages)
    if pinned:
        modeladmin.message_user(request, f"Pinned {pinned:,} customer(s); runs leave them be.")
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        modeladmin.message_user(request, "; ".join(problems[:3]) + more, messages.WARNING)


@admin.action(
    description="Unpin the selected customers (the next run places them)", permissions=["pin"]
)
def customers_unpin(modeladmin, request, queryset) -> None:
    customers = _pin_targets(modeladmin, request, queryset)
    if customers is None:
        return
    count = 0
    for customer in customers:
        membership = selectors.customer_membership(customer=customer)
        if membership and membership.pinned:
            services.segment_unpin(customer=customer)
            count += 1
    modeladmin.message_user(request, f"Unpinned {count:,} customer(s).")


admin.site.unregister(Customer)


@admin.register(Customer)
class CustomerSegmentAdmin(CustomerAdmin):
    """crm's customer admin plus the customer's segment, its history and pinning."""

    list_display = (*CustomerAdmin.list_display[:2], "segment", *CustomerAdmin.list_display[2:])
    list_select_related = ("membership__segment",)
    list_filter = (
        *CustomerAdmin.list_filter,
        ("membership__segment", admin.RelatedFieldListFilter),
    )
    actions = [*CustomerAdmin.actions, customers_pin, customers_unpin]

    def has_pin_permission(self, request) -> bool:
        return request.user.has_perm("segmentation.change_membership")

    export_columns = CUSTOMER_EXPORT_PROVIDERS
    readonly_fields = (
        "segment_link",
        "segment_reason",
        "segment_pinned",
        *CustomerAdmin.readonly_fields,
        "segment_history",
    )
    fieldsets = (
        *CustomerAdmin.fieldsets[:4],
        ("Segment", {"fields": ("segment_link", "segment_reason", "segment_pinned")}),
        *CustomerAdmin.fieldsets[4:5],
        ("Segment history", {"fields": ("segment_history",), "classes": ("collapse",)}),
        *CustomerAdmin.fieldsets[5:],
    )

    def get_readonly_fields(self, request, obj=None):
        if obj is None:  # the add page: nothing to show yet
            return ("segment_link", "segment_reason", "segment_pinned")
        return self.readonly_fields

    @admin.display(description="segment")
    def segment(self, obj):
        membership = selectors.customer_membership(customer=obj)
        return membership.segment if membership and membership.segment else "-"

    @admin.display(description="segment")
    def segment_link(self, obj):
        membership = selectors.customer_membership(customer=obj)
        if membership is None or membership.segment is None:
            return "—"
        segment = membership.segment
        try:
            return format_html('<a href="{}">{}</a>', segment.get_absolute_url(), segment)
        except NoReverseMatch:
            return str(segment)

    @admin.display(description="why")
    def segment_reason(self, obj):
        membership = selectors.customer_membership(customer=obj)
        return membership.reason if membership else ""

    @admin.display(description="pinned")
    def segment_pinned(self, obj):
        membership = selectors.customer_membership(customer=obj)
        if membership and membership.pinned:
            return "Yes: runs leave the customer in this segment"
        return "No"

    @admin.display(description="segment changes (latest 20)")
    def segment_history(self, obj):
        changes = list(selectors.customer_segment_history(customer=obj))
        if not changes:
            return "No segment change yet."
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    timezone.localtime(c.changed_at).strftime("%Y-%m-%d %H:%M"),
                    c.from_segment or "—",
                    c.to_segment or "—",
                    c.reason,
                )
                for c in changes
            ),
        )
        return format_html(
            "<table><thead><tr><th>When</th><th>From</th><th>To</th><th>Why</th></tr>"
            "</thead><tbody>{}</tbody></table>",
            rows,
        )
