"""django-tables2 tables of the staff pages."""

import django_tables2 as tables
from django.db.models.functions import Lower
from django.urls import reverse
from django.utils.html import format_html

from crm.metrics import wilson_interval
from crm.models import Customer, Offer

TABLE_TEMPLATE = "crm/_table.html"
NUM = {"td": {"class": "num"}, "th": {"class": "num"}}


class CustomerTable(tables.Table):
    """Customers with their purchase figures; sorts only on indexed columns."""

    name = tables.Column(verbose_name="Customer")
    city = tables.Column(orderable=False)
    purchase_count = tables.Column(
        verbose_name="Purchases",
        orderable=False,
        attrs=NUM,
    )
    total_spent = tables.Column(
        verbose_name="Total spent",
        order_by=("total_spent", "id"),
        attrs=NUM,
    )
    last_purchase_at = tables.DateTimeColumn(
        verbose_name="Last purchase", format="j M Y", order_by=("last_purchase_at", "id")
    )

    class Meta:
        model = Customer
        fields = ("name", "city", "purchase_count", "total_spent", "last_purchase_at")
        template_name = TABLE_TEMPLATE
        attrs = {"class": "data"}
        empty_text = "No customer matches."
        order_by = ("-total_spent",)

    def render_name(self, record):
        return format_html(
            '<a href="{}">{}</a>', reverse("crm:customer_detail", args=[record.pk]), str(record)
        )

    def order_name(self, queryset, is_descending):
        # Lower(name) is what the name index holds, so a big list is read in index order.
        key = Lower("name").desc() if is_descending else Lower("name").asc()
        return queryset.order_by(key, "-id" if is_descending else "id"), True

    def render_total_spent(self, value):
        return f"{value:,.2f}"


class SegmentMemberTable(CustomerTable):
    """One segment's members. Spend and last purchase sort on the membership's copies,
    through its (segment, figure) indexes: the customer's own indexes would walk past every
    other segment's customers first."""

    total_spent = tables.Column(
        verbose_name="Total spent",
        order_by=("membership__total_spent", "membership__customer_id"),
        attrs=NUM,
    )
    last_purchase_at = tables.DateTimeColumn(
        verbose_name="Last purchase",
        format="j M Y",
        order_by=("membership__last_purchase_at", "membership__customer_id"),
    )

    class Meta(CustomerTable.Meta):  # django-tables2 does not inherit Meta by itself
        pass


class OfferTable(tables.Table):
    """Offers with their headline results (annotated by the list selector in one query)."""

    title = tables.Column(verbose_name="Offer")
    channel = tables.Column()
    window = tables.Column(verbose_name="When", empty_values=(), orderable=False)
    presented = tables.Column(attrs=NUM)
    accepted = tables.Column(attrs=NUM)
    acceptance = tables.Column(
        verbose_name="Acceptance", empty_values=(), orderable=False, attrs={"td": {"class": "num"}}
    )
    holdout = tables.Column(verbose_name="Control group", attrs=NUM)
    is_active = tables.BooleanColumn(verbose_name="Active")

    class Meta:
        model = Offer
        fields = ("title", "channel", "window", "presented", "accepted", "acceptance", "holdout")
        template_name = TABLE_TEMPLATE
        attrs = {"class": "data"}
        empty_text = "No offer yet: create one to start measuring what works."

    def render_title(self, record):
        return format_html(
            '<a href="{}">{}</a>', reverse("crm:offer_detail", args=[record.pk]), record.title
        )

    def render_window(self, record):
        if not record.starts_on and not record.ends_on:
            return "Always"
        start = record.starts_on.strftime("%-d %b %Y") if record.starts_on else "…"
        end = record.ends_on.strftime("%-d %b %Y") if record.ends_on else "…"
        return f"{start} \u2013 {end}"

    def render_acceptance(self, record):
        if not record.presented:
            return "—"
        low, high = wilson_interval(record.accepted, record.presented)
        return f"{record.accepted / record.presented:.0%} ({low:.0%}\u2013{high:.0%})"
