"""Admin for offers and their responses."""

from django.contrib import admin

# The large-table paginator and admin base of crm's admin (a lower app's admin building blocks).
from crm.admin import LargeTableAdmin
from crm.admin_safety import SafeModelAdmin
from offers.models import Offer, OfferResponse


@admin.register(Offer)
class OfferAdmin(SafeModelAdmin):
    list_display = ("title", "channel", "starts_on", "ends_on", "discount_percent", "is_active")
    list_filter = ("is_active", "channel")
    search_fields = ("title",)
    filter_horizontal = ("segments",)


@admin.register(OfferResponse)
class OfferResponseAdmin(LargeTableAdmin):
    list_display = ("offer", "customer", "segment", "outcome", "presented_at", "responded_at")
    list_select_related = ("offer", "customer", "segment")
    list_filter = ("outcome", "offer")
    raw_id_fields = ("customer", "offer", "segment")
    sortable_by = ("presented_at",)
