"""django-tables2 tables of the staff pages."""

import copy

import django_tables2 as tables
from django.db.models.functions import Lower
from django.utils.html import format_html
from django_tables2 import RequestConfig

from crm.models import Customer
from crm.money import money_text
from crm.selectors import business_get

TABLE_TEMPLATE = "crm/_table.html"
NUM = {"td": {"class": "num"}, "th": {"class": "num"}}
# The most rows one page of a table renders, whatever ?per_page= asks for.
MAX_PER_PAGE = 100


def table_configure(request, table: tables.Table, *, per_page: int, **paginate) -> None:
    """django-tables2's RequestConfig (sorting and paging from the query string) with the
    page size a request may ask for (``?per_page=``) held to 1..MAX_PER_PAGE: django-tables2
    takes any number, and a page of a million rows would tie up a worker."""
    field = table.prefixed_per_page_field
    if field in request.GET:
        try:
            wanted = int(request.GET[field])
        except ValueError:
            wanted = per_page
        query = request.GET.copy()
        query[field] = str(min(max(wanted, 1), MAX_PER_PAGE))
        request = copy.copy(request)  # the view's own request keeps its query string
        request.GET = query
    RequestConfig(request, paginate={"per_page": per_page, **paginate}).configure(table)


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
        return format_html('<a href="{}">{}</a>', record.get_absolute_url(), str(record))

    def order_name(self, queryset, is_descending):
        # Lower(name) is what the name index holds, so a big list is read in index order.
        key = Lower("name").desc() if is_descending else Lower("name").asc()
        return queryset.order_by(key, "-id" if is_descending else "id"), True

    def render_total_spent(self, value):
        return money_text(value, business_get().currency)
