"""The filters of the staff customer list (crm's own filters plus segment and tag)."""

import django_filters
from django import forms

from crm.filters import CustomerFilter
from crm.models import Customer, Tag
from segmentation.models import Segment

_YES_NO = [("", "Any"), ("true", "Yes"), ("false", "No")]


class CustomerListFilter(CustomerFilter):
    """Search, segment, tag, consent, purchased and archived (active customers unless asked)."""

    segment = django_filters.ModelChoiceFilter(
        label="Segment",
        field_name="membership__segment",
        queryset=Segment.objects.active().order_by("name"),
        empty_label="Any",
    )
    tag = django_filters.ModelChoiceFilter(
        label="Tag", field_name="tags", queryset=Tag.objects.all(), empty_label="Any"
    )
    has_purchased = django_filters.BooleanFilter(
        label="Has purchased",
        method="filter_has_purchased",
        widget=forms.Select(choices=_YES_NO),
    )
    archived = django_filters.ChoiceFilter(
        label="Archived",
        method="filter_archived",
        choices=[("only", "Archived only"), ("all", "Everyone")],
        empty_label="Not archived",
        null_value=None,
    )

    class Meta(CustomerFilter.Meta):
        model = Customer
        fields = []

    def filter_has_purchased(self, queryset, name, value):
        return queryset.filter(purchase_count__gt=0) if value else queryset.filter(purchase_count=0)

    def filter_archived(self, queryset, name, value):
        if value == "only":
            return queryset.filter(is_archived=True)
        return queryset

    @property
    def qs(self):
        queryset = super().qs
        # Archived customers stay out of the list unless the filter asks for them.
        if self.form.is_valid() and self.form.cleaned_data.get("archived") in ("only", "all"):
            return queryset
        return queryset.filter(is_archived=False)
