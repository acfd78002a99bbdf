"""The owner's daily admin: customers (search, filters, inlines, timeline), CSV import/export."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Exists, OuterRef
from django.forms.models import BaseInlineFormSet
from django.http import StreamingHttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.functional import cached_property
from django.utils.html import format_html

from crm import selectors
from crm.admin_forms import TagNamesForm
from crm.admin_imports import CsvImportMixin
from crm.admin_safety import BoundedTabularInline, SafeModelAdmin
from crm.audit import audit_actor, audit_record
from crm.exports import csv_lines, customer_rows, purchase_rows
from crm.models import (
    CUSTOMER_SENSITIVE_FIELDS,
    CUSTOMER_SENSITIVE_PERMISSION,
    AuditEntry,
    Customer,
    Feedback,
    Purchase,
    Tag,
)
from crm.money import money_text
from crm.selectors import business_get
from crm.services import customer_stats_refresh, customers_tag

# -- a paginator that never counts a million rows ----------------------------------------------


class LargeTablePaginator(Paginator):
    """Counts at most COUNT_CAP rows (one bounded query); beyond that, estimates.

    A COUNT(*) over a million customers costs more than the whole rest of the page. Above
    the cap the count shown is PostgreSQL's planner estimate for an unfiltered list (or the
    highest id on SQLite), and "more than COUNT_CAP" for a filtered one.
    """

    COUNT_CAP = 2_000

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        capped = queryset.order_by().values("pk")[: self.COUNT_CAP + 1].count()
        if capped <= self.COUNT_CAP:
            self.is_estimate = False
            return capped
        self.is_estimate = True
        if not queryset.query.where:
            estimate = self._table_estimate(queryset.model)
            if estimate:
                return max(estimate, capped)
        return capped

    is_estimate = False

    @staticmethod
    def _table_estimate(model) -> int:
        table = connection.ops.quote_name(model._meta.db_table)
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                    [model._meta.db_table],
                )
            else:
                cursor.execute(f"SELECT max(id) FROM {table}")
            row = cursor.fetchone()
        return int(row[0] or 0) if row else 0


def fieldsets_without(fieldsets, names: tuple[str, ...]) -> tuple:
    """The fieldsets with these fields taken out (rows and empty sets dropped)."""
    kept = []
    for title, options in fieldsets:
        rows = []
        for row in options["fields"]:
            if isinstance(row, tuple | list):
                row = tuple(f for f in row if f not in names)
                if row:
                    rows.append(row if len(row) > 1 else row[0])
            elif row not in names:
                rows.append(row)
        if rows:
            kept.append((title, {**options, "fields": tuple(rows)}))
    return tuple(kept)


class LargeTableAdmin(SafeModelAdmin):
    """Changelist settings that keep a page fast at a million rows."""

    paginator = LargeTablePaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 50


# -- CSV import pages (upload -> preview -> confirm) -------------------------------------------


def _csv_response(lines, *, name: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="{name}-{stamp}.csv"'
    return response


def _export_audit(request, queryset, *, kind: str) -> None:
    """An export of the admin's selection to the audit trail: how many rows, which filter."""
    selection = (
        "all matching the filter" if request.POST.get("select_across") == "1" else "selected"
    )
    audit_record(
        actor=audit_actor(request),
        action=AuditEntry.Action.EXPORTED,
        object_type=kind,
        count=queryset.count(),
        detail=f"{selection}; filter: {request.GET.urlencode() or 'none'}",
    )


# -- changelist filters: each one an index lookup ---------------------------------------------


class TagFilter(admin.SimpleListFilter):
    """By tag, through a subquery on the tag links (no JOIN + DISTINCT over customers)."""

    title = "tag"
    parameter_name = "tag"

    def lookups(self, request, model_admin):
        return list(Tag.objects.values_list("pk", "name"))

    # Up to this many members the tagged ids are read first; beyond, the list is walked in
    # display order and each row probed on the (customer, tag) index. Each plan is fast on
    # its side, on SQLite (which has no cost model for this) as on PostgreSQL.
    SMALL_TAG = 5_000

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        try:
            tag_id = int(self.value())
        except ValueError:
            return queryset.none()
        links = Customer.tags.through.objects.filter(tag_id=tag_id)
        if links.values("pk")[: self.SMALL_TAG + 1].count() <= self.SMALL_TAG:
            return queryset.filter(pk__in=links.values("customer_id"))
        return queryset.filter(Exists(links.filter(customer_id=OuterRef("pk"))))


class HasPurchasedFilter(admin.SimpleListFilter):
    """On the denormalised purchase_count (indexed), not on the purchases table."""

    title = "has purchased"
    parameter_name = "purchased"

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No (prospects)")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(purchase_count__gt=0)
        if self.value() == "no":
            return queryset.filter(purchase_count=0)
        return queryset


class BooleanIndexFilter(admin.SimpleListFilter):
    """Yes/no on a boolean column, written `col IN (true)` so SQLite uses the index.

    (Django writes `WHERE col` for `col=True` on SQLite, which no index serves.)
    """

    field = ""

    def lookups(self, request, model_admin):
        return [("1", "Yes"), ("0", "No")]

    def queryset(self, request, queryset):
        if self.value() in ("0", "1"):
            return queryset.filter(**{f"{self.field}__in": [self.value() == "1"]})
        return queryset


class ConsentFilter(BooleanIndexFilter):
    parameter_name = field = "marketing_consent"
    title = "marketing consent"


class ArchivedFilter(BooleanIndexFilter):
    parameter_name = field = "is_archived"
    title = "archived"


# -- customers ---------------------------------------------------------------------------------

INLINE_LIMIT = 10
# A search matching more customers than this shows this many of them: refine it.
SEARCH_LIMIT = 2_000


class LatestInlineFormSet(BaseInlineFormSet):
    """Shows only the latest INLINE_LIMIT rows: a customer page stays small at any history."""

    def get_queryset(self):
        if not hasattr(self, "_latest_queryset"):
            queryset = super().get_queryset()
            ids = list(queryset.values_list("pk", flat=True)[:INLINE_LIMIT])
            self._latest_queryset = queryset.filter(pk__in=ids)
        return self._latest_queryset


class BusinessCurrencyMixin:
    """A new purchase starts in the business's currency (the Settings page)."""

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name == "currency":
            kwargs["initial"] = business_get().currency
        return super().formfield_for_dbfield(db_field, request, **kwargs)


class PurchaseInline(BusinessCurrencyMixin, BoundedTabularInline):
    model = Purchase
    formset = LatestInlineFormSet
    fields = ("purchased_at", "kind", "amount", "currency", "product", "channel")
    ordering = ("-purchased_at", "-id")
    extra = 1
    show_change_link = True
    verbose_name_plural = f"purchases (latest {INLINE_LIMIT}; add one here)"


class FeedbackInline(BoundedTabularInline):
    model = Feedback
    formset = LatestInlineFormSet
    fields = ("created_at", "rating", "nps", "comment", "source", "purchase")
    raw_id_fields = ("purchase",)
    ordering = ("-created_at", "-id")
    extra = 1
    show_change_link = True
    verbose_name_plural = f"feedback (latest {INLINE_LIMIT}; add one here)"


@admin.register(Customer)
class CustomerAdmin(CsvImportMixin, LargeTableAdmin):
    import_kind = "customers"
    # Few, short columns in words and rounded figures, so a laptop shows the list unwrapped;
    # the rest is one click away (the staff page, or this admin's own page).
    list_display = (
        "__str__",
        "email",
        "purchases",
        "spent",
        "last_purchase",
        "consent",
        "staff_page",
    )
    # Only indexed columns are sortable (see the indexes on Customer).
    sortable_by = ("spent", "last_purchase", "created_at")
    list_filter = (
        TagFilter,
        ("created_at", admin.DateFieldListFilter),
        HasPurchasedFilter,
        ConsentFilter,
        ArchivedFilter,
    )
    # The search itself is crm.selectors.customer_search (prefix, index-backed); this only
    # switches the search box on.
    search_fields = ("name",)
    search_help_text = (
        "Any part of a name or an e-mail, a phone number by its digits; an external id exactly."
    )
    # Apps above crm extend this admin (segmentation adds the segment, its history and the
    # pin actions) by subclassing it and registering the subclass instead.
    actions = ["tag_selected", "export_selected_csv"]
    # Column providers of higher apps for the CSV export (see crm.exports.customer_rows).
    export_columns: tuple = ()
    autocomplete_fields = ("tags",)
    inlines = (PurchaseInline, FeedbackInline)
    readonly_fields = (
        "purchase_count",
        "spent",
        "first_purchase_at",
        "last_purchase_at",
        "all_purchases",
        "timeline",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (None, {"fields": ("name", "email", "phone", "tags", "notes")}),
        (
            "Details",
            {
                "fields": (
                    ("birth_date", "age"),
                    "annual_income",
                    ("city", "country"),
                    ("external_source", "external_id"),
                )
            },
        ),
        ("Consent", {"fields": ("marketing_consent", "profiling_opt_out", "is_archived")}),
        (
            "Purchases",
            {
                "fields": (
                    ("purchase_count", "spent"),
                    ("first_purchase_at", "last_purchase_at"),
                    "all_purchases",
                )
            },
        ),
        ("Timeline", {"fields": ("timeline",)}),
        ("Record", {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
    )

    class Media:
        # Narrower inline fields: the customer's page fits a laptop's width.
        css = {"all": ("css/admin.css",)}

    @admin.display(description="purchases")
    def purchases(self, obj):
        return f"{obj.purchase_count:,}"

    @admin.display(description="total spent", ordering="total_spent")
    def spent(self, obj):
        return money_text(obj.total_spent, business_get().currency)

    @admin.display(description="last purchase", ordering="last_purchase_at")
    def last_purchase(self, obj):
        if obj.last_purchase_at is None:
            return "never"
        return date_format(timezone.localtime(obj.last_purchase_at), "j M Y")

    @admin.display(description="marketing")
    def consent(self, obj):
        if obj.unsubscribed_at is not None:
            return "Unsubscribed"
        return "Yes" if obj.marketing_consent else "No"

    @admin.display(description="")
    def staff_page(self, obj):
        return format_html(
            '<a href="{}" title="The customer\'s page">Page →</a>', obj.get_absolute_url()
        )

    def get_search_results(self, request, queryset, search_term):
        if not search_term.strip():
            return queryset, False
        # The matches are found through the search indexes first (at most SEARCH_LIMIT),
        # then filtered and ordered. Without this fence the planner may walk the whole
        # created_at index looking for rare matches in display order.
        matches = selectors.customer_search(
            queryset=Customer.objects.all(), term=search_term, walk_when_common=False
        )
        return queryset.filter(pk__in=matches.order_by().values("pk")[:SEARCH_LIMIT]), False

    def get_readonly_fields(self, request, obj=None):
        if obj is None:  # the add page: nothing to show yet
            return ()
        return self.readonly_fields

    def get_fieldsets(self, request, obj=None):
        fieldsets = self.fieldsets[:3] if obj is None else self.fieldsets
        if request.user.has_perm(CUSTOMER_SENSITIVE_PERMISSION):
            return fieldsets
        # Left out of the form too, so a save keeps the stored values.
        return fieldsets_without(fieldsets, CUSTOMER_SENSITIVE_FIELDS)

    def has_export_permission(self, request) -> bool:
        return request.user.has_perm("crm.export_customer")

    @admin.display(description="all purchases")
    def all_purchases(self, obj):
        url = reverse("admin:crm_purchase_changelist") + f"?customer__id__exact={obj.pk}"
        feedback = reverse("admin:crm_feedback_changelist") + f"?customer__id__exact={obj.pk}"
        return format_html(
            '<a href="{}">All {} purchases →</a> · <a href="{}">All feedback →</a>',
            url,
            obj.purchase_count,
            feedback,
        )

    @admin.display(description="latest purchases and feedback")
    def timeline(self, obj):
        entries = selectors.customer_timeline(customer=obj)
        return render_to_string("admin/crm/customer/timeline.html", {"entries": entries})

    def save_model(self, request, obj, form, change):
        # The admin form writes the row itself: keep the search column in step (crm.search).
        obj.search_text_set()
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        """Inline purchases were added, changed or deleted: refresh the stored statistics."""
        super().save_related(request, form, formsets, change)
        customer_stats_refresh(customer_ids=[form.instance.pk])

    @admin.action(description="Add tags to the selected customers", permissions=["change"])
    def tag_selected(self, request, queryset):
        if "apply" in request.POST:
            form = TagNamesForm(request.POST)
            if form.is_valid():
                try:
                    count = customers_tag(
                        customers=queryset, tag_names=form.cleaned_data["tag_names"]
                    )
                except ValidationError as exc:
                    self.message_user(request, "; ".join(exc.messages), messages.ERROR)
                    return None
                names = ", ".join(form.cleaned_data["tag_names"])
                self.message_user(request, f"Tagged {count:,} customer(s) with {names}.")
                return None
        else:
            form = TagNamesForm()
        return render(
            request,
            "admin/crm/customer/tag_selected.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": "Add tags",
                "form": form,
                "selected": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
                "select_across": request.POST.get("select_across", "0"),
                "action": "tag_selected",
                "count": len(request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME)),
            },
        )

    @admin.action(description="Export the selected customers as CSV", permissions=["export"])
    def export_selected_csv(self, request, queryset):
        hidden = (
            ()
            if request.user.has_perm(CUSTOMER_SENSITIVE_PERMISSION)
            else CUSTOMER_SENSITIVE_FIELDS
        )
        rows = customer_rows(queryset, extra_columns=self.export_columns, hidden=hidden)
        _export_audit(request, queryset, kind="crm.customer")
        return _csv_response(csv_lines(rows), name="customers")


# -- purchases, feedback, tags ---------------------------------------------------------------


@admin.register(Purchase)
class PurchaseAdmin(BusinessCurrencyMixin, CsvImportMixin, LargeTableAdmin):
    import_kind = "purchases"
    list_display = (
        "purchased_at",
        "customer",
        "kind",
        "amount",
        "currency",
        "product",
        "channel",
        "external_order_id",
    )
    list_select_related = ("customer",)
    list_filter = ("kind", "channel", ("purchased_at", admin.DateFieldListFilter))
    lookup_fields_allowed = ("customer",)  # the customer page's "All purchases" link
    sortable_by = ("purchased_at",)
    raw_id_fields = ("customer",)
    # No search box: purchases are reached from their customer ("All purchases" link, an
    # indexed customer__id__exact filter); an order-id search would scan every purchase.
    actions = ["export_selected_csv"]

    def save_model(self, request, obj, form, change):
        previous = None
        if change:
            previous = Purchase.objects.filter(pk=obj.pk).values_list("customer_id", flat=True)
            previous = previous.first()
        super().save_model(request, obj, form, change)
        customer_stats_refresh(customer_ids={obj.customer_id, previous} - {None})

    def delete_model(self, request, obj):
        customer_id = obj.customer_id
        super().delete_model(request, obj)
        customer_stats_refresh(customer_ids=[customer_id])

    def delete_queryset(self, request, queryset):
        customer_ids = set(queryset.values_list("customer_id", flat=True))
        super().delete_queryset(request, queryset)
        customer_stats_refresh(customer_ids=customer_ids)

    def has_export_permission(self, request) -> bool:
        return request.user.has_perm("crm.export_customer")

    @admin.action(description="Export the selected purchases as CSV", permissions=["export"])
    def export_selected_csv(self, request, queryset):
        _export_audit(request, queryset, kind="crm.purchase")
        return _csv_response(csv_lines(purchase_rows(queryset)), name="purchases")


@admin.register(Feedback)
class FeedbackAdmin(LargeTableAdmin):
    list_display = ("created_at", "customer", "rating", "nps", "source", "short_comment")
    list_select_related = ("customer",)
    list_filter = ("source", "rating", ("created_at", admin.DateFieldListFilter))
    lookup_fields_allowed = ("customer",)  # the customer page's "All feedback" link
    sortable_by = ("created_at",)
    raw_id_fields = ("customer", "purchase")

    @admin.display(description="comment")
    def short_comment(self, obj):
        return (obj.comment[:80] + "…") if len(obj.comment) > 80 else obj.comment


@admin.register(Tag)
class TagAdmin(SafeModelAdmin):
    search_fields = ("name",)
    list_display = ("name",)


@admin.register(AuditEntry)
class AuditEntryAdmin(SafeModelAdmin):
    """The audit trail, read-only: owners (crm.view_auditentry) see it; nobody edits it."""

    list_display = ("at", "username", "address", "action", "object_type", "object_id", "count")
    list_filter = ("action", ("at", admin.DateFieldListFilter), "object_type")
    lookup_fields_allowed = ("object_id", "username")
    sortable_by = ("at",)
    paginator = LargeTablePaginator
    show_full_result_count = False
    list_per_page = 100

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
