"""The staff customer list's table: selectable rows, sortable on indexed columns."""

import django_tables2 as tables

from crm.tables import TABLE_TEMPLATE, CustomerTable

# Columns declared descending: their arrows are drawn the other way round (static/css/app.css).
NUM_DESC_FIRST = {"td": {"class": "num"}, "th": {"class": "num desc-first"}}


class CustomerListTable(CustomerTable):
    """Customers with a selection box each. Figures sort highest first on the first click:
    their columns are declared descending, so "ascending" (the first click) reads
    highest first and the second click reverses it."""

    selected = tables.CheckBoxColumn(
        accessor="pk",
        attrs={
            "th__input": {"data-select-all": "", "aria-label": "Select all on this page"},
            "td__input": {"name": "selected", "form": "bulk-form", "aria-label": "Select"},
        },
    )
    email = tables.Column(verbose_name="E-mail", order_by=("email", "id"))
    segment = tables.Column(
        verbose_name="Segment", accessor="membership__segment__name", orderable=False
    )
    purchase_count = tables.Column(
        verbose_name="Purchases", order_by=("-purchase_count", "-id"), attrs=NUM_DESC_FIRST
    )
    total_spent = tables.Column(
        verbose_name="Total spent", order_by=("-total_spent", "-id"), attrs=NUM_DESC_FIRST
    )
    last_purchase_at = tables.DateTimeColumn(
        verbose_name="Last purchase", format="j M Y", order_by=("last_purchase_at", "id")
    )

    class Meta(CustomerTable.Meta):
        fields = (
            "selected",
            "name",
            "email",
            "city",
            "segment",
            "purchase_count",
            "total_spent",
            "last_purchase_at",
        )
        sequence = fields
        template_name = TABLE_TEMPLATE
        # "total_spent" ascending is the declared descending order: highest first.
        order_by = ("total_spent",)
