"""django-filter filter sets of the staff pages."""

from datetime import date, datetime, time, timedelta

import django_filters
from django import forms
from django.utils import timezone

from crm.models import Customer
from crm.selectors import customer_search


class DateInput(forms.DateInput):
    input_type = "date"


class CustomerFilter(django_filters.FilterSet):
    """Filters over customers' own columns and precomputed purchase figures."""

    q = django_filters.CharFilter(label="Name, e-mail or phone", method="filter_q")
    city = django_filters.CharFilter(label="City", lookup_expr="iexact")
    spent_min = django_filters.NumberFilter(
        label="Spent at least", field_name="total_spent", lookup_expr="gte"
    )
    spent_max = django_filters.NumberFilter(
        label="Spent at most", field_name="total_spent", lookup_expr="lte"
    )
    bought_after = django_filters.DateFilter(
        label="Last bought on or after", method="filter_bought_after", widget=DateInput()
    )
    bought_before = django_filters.DateFilter(
        label="Last bought on or before", method="filter_bought_before", widget=DateInput()
    )
    consent = django_filters.BooleanFilter(
        label="Marketing consent",
        field_name="marketing_consent",
        widget=forms.Select(choices=[("", "Any"), ("true", "Yes"), ("false", "No")]),
    )

    class Meta:
        model = Customer
        fields = []

    def filter_q(self, queryset, name, value):
        return customer_search(queryset=queryset, term=value)

    # Day bounds as datetimes, so the last-purchase index serves the range.
    def filter_bought_after(self, queryset, name, value):
        return queryset.filter(last_purchase_at__gte=_day_start(value))

    def filter_bought_before(self, queryset, name, value):
        return queryset.filter(last_purchase_at__lt=_day_start(value + timedelta(days=1)))


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))
