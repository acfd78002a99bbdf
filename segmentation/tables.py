"""django-tables2 tables of the segment pages."""

import django_tables2 as tables
from django.utils.html import format_html

from crm.money import money_text
from crm.selectors import business_get
from crm.tables import TABLE_TEMPLATE, CustomerTable
from segmentation.models import Segment

_NUM = {"td": {"class": "num"}, "th": {"class": "num"}}


class SegmentTable(tables.Table):
    """Segments with the figures precomputed by the last run."""

    name = tables.Column(verbose_name="Segment")
    size = tables.Column(verbose_name="Customers", attrs=_NUM)
    share_customers = tables.Column(verbose_name="Share of customers", attrs=_NUM)
    revenue = tables.Column(verbose_name="Revenue", attrs=_NUM)
    share_revenue = tables.Column(verbose_name="Share of revenue", attrs=_NUM)
    kind = tables.Column(verbose_name="Kind")
    is_active = tables.BooleanColumn(verbose_name="Active")

    class Meta:
        model = Segment
        fields = ("name", "size", "share_customers", "revenue", "share_revenue", "kind")
        template_name = TABLE_TEMPLATE
        attrs = {"class": "data"}
        empty_text = "No segments yet: run a segmentation from the dashboard."

    def render_name(self, record):
        return format_html(
            '<span class="swatch" style="background:{}"></span><a href="{}">{}</a>',
            record.color or "#999999",
            record.get_absolute_url(),
            record.name,
        )

    def render_size(self, value):
        return f"{value:,}"

    def render_share_customers(self, value):
        return f"{value:.1%}"

    def render_share_revenue(self, value):
        return f"{value:.1%}"

    def render_revenue(self, value):
        return money_text(value, business_get().currency)


class SegmentMemberTable(CustomerTable):
    """One segment's members. Spend and last purchase sort on the membership's copies,
    through its (segment, figure) indexes: the customer's own indexes would walk past every
    other segment's customers first."""

    total_spent = tables.Column(
        verbose_name="Total spent",
        order_by=("membership__total_spent", "membership__customer_id"),
        attrs=_NUM,
    )
    last_purchase_at = tables.DateTimeColumn(
        verbose_name="Last purchase",
        format="j M Y",
        order_by=("membership__last_purchase_at", "membership__customer_id"),
    )

    class Meta(CustomerTable.Meta):  # django-tables2 does not inherit Meta by itself
        pass
