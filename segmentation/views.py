"""Segment pages: the list, a segment's members as CSV, starting a run and following it."""

from django.contrib import messages
from django.http import JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from crm.audit import audit_actor, audit_record
from crm.exports import csv_lines, customer_rows
from crm.models import CUSTOMER_SENSITIVE_FIELDS, CUSTOMER_SENSITIVE_PERMISSION, AuditEntry
from crm.tables import table_configure
from segmentation import selectors, services
from segmentation.exports import CUSTOMER_EXPORT_PROVIDERS
from segmentation.filters import segment_members_filter
from segmentation.models import Segment, SegmentationRun
from segmentation.run_watch import run_watch_progress, run_watch_remember
from segmentation.tables import SegmentTable


@require_GET
def segment_list(request):
    show_retired = request.GET.get("retired") == "1"
    segments = Segment.objects.all() if show_retired else Segment.objects.active()
    table = SegmentTable(segments.order_by("-is_active", "-size", "id"))
    table.empty_text = selectors.segments_empty_words()
    table_configure(request, table, per_page=50)
    run = selectors.run_latest()
    return render(
        request,
        "segmentation/segment_list.html",
        {
            "table": table,
            "show_retired": show_retired,
            "run": run,
            "run_words": selectors.run_owner_words(run=run),
            "run_progress": run_watch_progress(request),
        },
    )


@require_GET
def segment_members_export(request, pk: int):
    segment = get_object_or_404(Segment, pk=pk)
    filterset = segment_members_filter(request.GET or None, segment=segment, columns=None)
    if filterset.is_bound and not filterset.is_valid():
        messages.error(request, "The filter is not valid; fix it before exporting.")
        return redirect(segment.get_absolute_url())
    hidden = (
        () if request.user.has_perm(CUSTOMER_SENSITIVE_PERMISSION) else CUSTOMER_SENSITIVE_FIELDS
    )
    rows = customer_rows(filterset.qs, extra_columns=CUSTOMER_EXPORT_PROVIDERS, hidden=hidden)
    audit_record(
        actor=audit_actor(request),
        action=AuditEntry.Action.EXPORTED,
        obj=segment,
        count=filterset.qs.count(),
        detail=f"segment members; filter: {request.GET.urlencode() or 'none'}",
    )
    response = StreamingHttpResponse(csv_lines(rows), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="segment-{segment.pk}-members.csv"'
    return response


@require_POST
def segmentation_run_start(request):
    run = services.segmentation_run_request(trigger=SegmentationRun.Trigger.MANUAL)
    audit_record(
        actor=audit_actor(request),
        action=AuditEntry.Action.RAN_SEGMENTATION,
        obj=run,
        detail=run.status,
    )
    if run.status == SegmentationRun.Status.SKIPPED:
        messages.warning(request, f"Not started: {run.error}")
    elif run.status == SegmentationRun.Status.FAILED:
        messages.error(request, f"Not started: {run.error}")
    else:
        # No "queued" flash: it would still say so after the run ended. The dashboard's
        # progress panel follows the run and says how it ended.
        run_watch_remember(request, run=run)
    return redirect("pages:dashboard")


@require_GET
def segmentation_run_status(request, pk: int):
    """A run's progress as JSON, polled by the pages that show it (static/js/run_progress.js)."""
    run = SegmentationRun.objects.filter(pk=pk).first()
    if run is None:
        return JsonResponse({"error": f"There is no run #{pk}."}, status=404)
    progress = selectors.run_progress(run=run)
    if not progress.active:
        # The page reloads once when the run ends: it then says how this run ended.
        run_watch_remember(request, run=run)
    return JsonResponse(progress.as_json())
