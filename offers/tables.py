"""django-tables2 tables of the offer pages."""

import django_tables2 as tables
from django.urls import reverse
from django.utils.html import format_html

from crm.metrics import wilson_interval
from crm.tables import NUM, TABLE_TEMPLATE
from offers.models import Offer


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
            '<a href="{}">{}</a>', reverse("offers:offer_detail", args=[record.pk]), record.title
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
