"""Admin for segmentation runs (with "Recluster now"), segments and membership history; the
customer admin extended with the segment lives in admin_customers.py."""

import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from django import forms
from django.contrib import admin, messages
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import NoReverseMatch, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.timesince import timesince

from config.celery import app
from crm.admin_safety import BoundedTabularInline, SafeModelAdmin
from crm.audit import audit_actor, audit_record
from crm.models import AuditEntry
from crm.money import money_text
from crm.selectors import business_get

# The customer admin extended with the segment and the pin actions: imported so that the
# admin's autodiscovery, which reads segmentation.admin only, registers it.
from segmentation import (
    admin_customers,  # noqa: F401
    selectors,
    services,
)
from segmentation.models import (
    Segment,
    SegmentationRun,
    SegmentMembershipChange,
    SegmentSnapshot,
    SegmentTransition,
)
from segmentation.run_watch import run_watch_progress, run_watch_remember
from segmentation.wording import run_phase_words

# The worker check: a Celery ping with a short timeout, run in a thread the page waits for at
# most PING_WAIT seconds (a dead broker can make the client block on connect), and cached.
PING_TIMEOUT = 1.0
PING_WAIT = 1.5
PING_CACHE_SECONDS = 30
_PING_KEY = "segmentation:worker-ping"
_ping_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="celery-ping")
_ping_lock = threading.Lock()
_ping_future = None


def _ping() -> str:
    try:
        replies = app.control.ping(timeout=PING_TIMEOUT)
    except Exception as exc:
        return f"the task queue is unreachable ({type(exc).__name__})"
    if replies:
        return f"{len(replies)} worker{'s' if len(replies) != 1 else ''} alive"
    return "no worker is answering"


def worker_status() -> str:
    """A short sentence on whether a Celery worker answers; never blocks for long."""
    global _ping_future
    cached = cache.get(_PING_KEY)
    if cached:
        return cached
    with _ping_lock:
        if _ping_future is None or _ping_future.done():
            _ping_future = _ping_pool.submit(_ping)
        future = _ping_future
    try:
        status = future.result(timeout=PING_WAIT)
    except FutureTimeout:
        return "the task queue is not answering (checking in the background)"
    cache.set(_PING_KEY, status, PING_CACHE_SECONDS)
    return status


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {int(seconds % 60)} s"


def segmentation_status() -> dict:
    """What the status line above the runs says."""
    last = selectors.segmentation_run_last_finished()
    last_ok = SegmentationRun.objects.latest_succeeded()
    active = selectors.segmentation_run_active()
    return {
        "last_run": last,
        "last_succeeded": last_ok,
        "last_succeeded_ago": timesince(last_ok.finished_at) if last_ok else None,
        "last_succeeded_duration": _duration(last_ok.duration_seconds) if last_ok else None,
        "active_run": active,
        "any_run": last is not None or active is not None or SegmentationRun.objects.exists(),
        "worker": worker_status(),
    }


class TransitionInline(BoundedTabularInline):
    model = SegmentTransition
    fields = ("count", "from_segment", "to_segment")
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name = "move"
    verbose_name_plural = "What moved in this run"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("from_segment", "to_segment")

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class SnapshotInline(BoundedTabularInline):
    model = SegmentSnapshot
    fields = ("segment", "size", "revenue", "avg_rating", "nps")
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "Segments after this run"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("segment").order_by("-size")

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(SegmentationRun)
class SegmentationRunAdmin(SafeModelAdmin):
    change_list_template = "admin/segmentation/segmentationrun/change_list.html"
    change_form_template = "admin/segmentation/segmentationrun/change_form.html"
    list_display = (
        "__str__",
        "trigger",
        "created_at",
        "duration",
        "progress_display",
        "method",
        "k",
        "confidence_note",
        "silhouette_display",
        "n_customers",
        "n_moved",
    )
    list_filter = ("status", "trigger", "method")
    inlines = (TransitionInline, SnapshotInline)
    fieldsets = (
        (None, {"fields": ("status", "trigger", "phase", "progress", "error")}),
        ("When", {"fields": ("created_at", "started_at", "finished_at", "duration")}),
        (
            "Model",
            {
                "fields": (
                    "method",
                    "k",
                    "confidence",
                    "confidence_note",
                    "silhouette",
                    "davies_bouldin",
                    "calinski_harabasz",
                    "fidelity",
                    "sizes",
                    "warnings_display",
                    "candidates_display",
                )
            },
        ),
        (
            "Customers",
            {
                "fields": (
                    "n_customers",
                    "n_clustered",
                    "n_prospects",
                    "n_opted_out",
                    "n_pinned",
                    "n_moved",
                    "missing_display",
                )
            },
        ),
        (
            "Details",
            {
                "fields": (
                    "timings_display",
                    "params",
                    "reference_time",
                    "task_id",
                    "heartbeat_at",
                    "worker_losses",
                )
            },
        ),
    )

    def get_readonly_fields(self, request, obj=None):
        return [f for fs in self.fieldsets for f in fs[1]["fields"]]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # runs are records: the admin shows them, only the service writes them

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="duration")
    def duration(self, obj: SegmentationRun) -> str:
        return _duration(obj.duration_seconds)

    @admin.display(description="progress")
    def progress_display(self, obj: SegmentationRun) -> str:
        if obj.status in (SegmentationRun.Status.PENDING, SegmentationRun.Status.RUNNING):
            return run_phase_words(phase=obj.phase, percent=obj.progress)
        if obj.status == SegmentationRun.Status.SUCCEEDED:
            return "done"
        if obj.status == SegmentationRun.Status.SKIPPED:
            return "did not start"
        return f"stopped at {obj.progress} %"

    @admin.display(description="silhouette", ordering="silhouette")
    def silhouette_display(self, obj: SegmentationRun) -> str:
        return "-" if obj.silhouette is None else f"{obj.silhouette:.2f}"

    @admin.display(description="timings")
    def timings_display(self, obj: SegmentationRun) -> str:
        timings = obj.timings or {}
        total = sum(v for v in timings.values() if isinstance(v, int | float)) or 1
        return format_html(
            "<table>{}</table>",
            format_html_join(
                "",
                "<tr><td>{}</td><td>{} s</td><td>{}%</td></tr>",
                (
                    (name, f"{secs:.2f}", f"{100 * secs / total:.0f}")
                    for name, secs in timings.items()
                    if isinstance(secs, int | float)
                ),
            ),
        )

    @admin.display(description="warnings")
    def warnings_display(self, obj: SegmentationRun) -> str:
        if not obj.warnings:
            return "-"
        return format_html_join("", "<div>{}</div>", ((w,) for w in obj.warnings))

    @admin.display(description="candidates")
    def candidates_display(self, obj: SegmentationRun) -> str:
        if not obj.candidates:
            return "-"

        def cell(value) -> str:
            if value is None:
                return "-"
            if isinstance(value, bool):
                return "yes" if value else ""
            if isinstance(value, float):
                return f"{value:.3f}"
            return str(value)

        columns = (
            "k",
            "method",
            "silhouette",
            "stability",
            "smallest_share",
            "segments",
            "eligible",
            "chosen",
        )
        return format_html(
            "<table><tr>{}</tr>{}</table>",
            format_html_join("", "<th>{}</th>", ((c.replace("_", " "),) for c in columns)),
            format_html_join(
                "",
                "<tr>" + "<td>{}</td>" * len(columns) + "</tr>",
                (
                    tuple(cell(c.get(name)) for name in columns)
                    for c in obj.candidates
                    if isinstance(c, dict)
                ),
            ),
        )

    @admin.display(description="missing data")
    def missing_display(self, obj: SegmentationRun) -> str:
        if not obj.missing:
            return "-"
        return format_html_join(
            "",
            "<div>{}: {} missing, {}</div>",
            (
                (name, info.get("missing", "?"), info.get("policy", ""))
                for name, info in obj.missing.items()
                if isinstance(info, dict)
            ),
        )

    def get_urls(self):
        custom = [
            path(
                "recluster/",
                self.admin_site.admin_view(self.recluster_view),
                name="segmentation_segmentationrun_recluster",
            )
        ]
        return custom + super().get_urls()

    def recluster_view(self, request: HttpRequest):
        """POST: request a run now (the service records it as skipped if one is busy)."""
        if not request.user.has_perm("segmentation.run_segmentation"):
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = ReclusterForm(request.POST)
        if not form.is_valid():
            messages.error(request, " ".join(e for errors in form.errors.values() for e in errors))
            return HttpResponseRedirect(reverse("admin:segmentation_segmentationrun_changelist"))
        as_of = form.cleaned_data["as_of"]
        run = services.segmentation_run_request(trigger=SegmentationRun.Trigger.MANUAL, as_of=as_of)
        audit_record(
            actor=audit_actor(request),
            action=AuditEntry.Action.RAN_SEGMENTATION,
            obj=run,
            detail=run.status,
        )
        if run.status in (SegmentationRun.Status.SKIPPED, SegmentationRun.Status.FAILED):
            messages.warning(request, f"Not started: {run.error}")
        else:
            # No "queued" flash: it would still say so after the run ended. The progress
            # panel above the runs follows the run and says how it ended.
            run_watch_remember(request, run=run)
        return HttpResponseRedirect(reverse("admin:segmentation_segmentationrun_changelist"))

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "segmentation_status": segmentation_status(),
            "run_progress": run_watch_progress(request),
        }
        return super().changelist_view(request, extra_context=extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        run = SegmentationRun.objects.filter(pk=object_id).first() if object_id.isdigit() else None
        progress = selectors.run_progress(run=run) if run else None
        extra_context = {
            **(extra_context or {}),
            # Only a run still going is followed live; a finished one shows its fields.
            "run_progress": progress if progress and progress.active else None,
        }
        return super().change_view(request, object_id, form_url, extra_context=extra_context)


class ReclusterForm(forms.Form):
    """ "Recluster as of…": an optional past day; empty means now."""

    as_of = forms.DateField(required=False)

    def clean_as_of(self):
        as_of = self.cleaned_data["as_of"]
        if as_of and as_of > timezone.localdate():
            raise forms.ValidationError("The as-of day cannot be in the future.")
        if as_of and as_of.year < 1900:
            raise forms.ValidationError("Choose an as-of day after 1900.")
        return as_of


class SegmentForm(forms.ModelForm):
    class Meta:
        model = Segment
        fields = ("name", "description")

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        clash = Segment.objects.active().filter(name=name).exclude(pk=self.instance.pk)
        if self.instance.is_active and clash.exists():
            raise forms.ValidationError("Another active segment already has this name.")
        return name


@admin.register(Segment)
class SegmentAdmin(SafeModelAdmin):
    audit_change_action = AuditEntry.Action.CHANGED_SEGMENT
    form = SegmentForm
    list_display = (
        "name",
        "kind",
        "size",
        "share_display",
        "revenue_display",
        "fidelity_display",
        "is_active",
        "members",
    )
    list_filter = ("is_active", "kind")
    search_fields = ("name", "auto_name")
    fields = (
        "name",
        "description",
        "kind",
        "auto_name",
        "name_is_custom",
        "profile",
        "rules_display",
        "fidelity_display",
        "size",
        "share_display",
        "revenue_display",
        "share_revenue_display",
        "members",
        "is_active",
        "created_at",
        "retired_at",
        "created_by_run",
        "last_run",
    )
    readonly_fields = tuple(f for f in fields if f not in ("name", "description"))

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # segments are retired, never deleted: history and offers point at them

    @admin.display(description="customers", ordering="share_customers")
    def share_display(self, obj: Segment) -> str:
        return f"{100 * obj.share_customers:.1f}%"

    @admin.display(description="share of revenue", ordering="share_revenue")
    def share_revenue_display(self, obj: Segment) -> str:
        return f"{100 * obj.share_revenue:.1f}%"

    @admin.display(description="revenue", ordering="revenue")
    def revenue_display(self, obj: Segment) -> str:
        return money_text(obj.revenue, business_get().currency)

    @admin.display(description="fidelity", ordering="fidelity")
    def fidelity_display(self, obj: Segment) -> str:
        return "-" if obj.fidelity is None else f"{100 * obj.fidelity:.0f}%"

    @admin.display(description="rules")
    def rules_display(self, obj: Segment) -> str:
        if not obj.rules:
            return "-"
        return format_html(
            "<ul>{}</ul>", format_html_join("", "<li>{}</li>", ((r,) for r in obj.rules))
        )

    @admin.display(description="members")
    def members(self, obj: Segment) -> str:
        try:
            url = reverse("admin:crm_customer_changelist")
        except NoReverseMatch:  # the customer admin is not installed
            return f"{obj.size} customers"
        url += f"?membership__segment__id__exact={obj.pk}"
        return format_html('<a href="{}">{} customers</a>', url, obj.size)

    def save_model(self, request, obj: Segment, form, change: bool) -> None:
        services.segment_update(
            segment=obj, name=form.cleaned_data["name"], description=obj.description
        )


@admin.register(SegmentMembershipChange)
class SegmentMembershipChangeAdmin(SafeModelAdmin):
    list_display = ("changed_at", "customer", "from_segment", "to_segment", "run", "reason")
    list_select_related = ("customer", "from_segment", "to_segment", "run")
    list_filter = ("run",)
    raw_id_fields = ("customer",)
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
