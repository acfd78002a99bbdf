"""CSV imports in the admin: upload, watch the worker check the file, then confirm or cancel."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import path, reverse

from crm import import_jobs
from crm.admin_forms import ImportUploadForm
from crm.audit import audit_actor
from crm.models import ImportJob

RECENT_JOBS = 5


class CsvImportMixin:
    """Adds the import pages to a ModelAdmin: import/ (upload), import/<id>/ (progress,
    preview, result), import/<id>/status/ (polled by the page) and import/<id>/confirm/.

    The worker checks and imports the file (crm.import_jobs); a job is seen only by the
    user who uploaded it, and its options are read from the job, never from the browser.
    """

    import_kind = ""  # "customers" or "purchases"

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        view = self.admin_site.admin_view
        return [
            path("import/", view(self.import_view), name="{}_{}_import".format(*info)),
            path(
                "import/<int:job_id>/",
                view(self.import_job_view),
                name="{}_{}_import_job".format(*info),
            ),
            path(
                "import/<int:job_id>/status/",
                view(self.import_job_status_view),
                name="{}_{}_import_job_status".format(*info),
            ),
            path(
                "import/<int:job_id>/confirm/",
                view(self.import_confirm_view),
                name="{}_{}_import_confirm".format(*info),
            ),
            *super().get_urls(),
        ]

    def _import_check_permission(self, request) -> None:
        if not (self.has_add_permission(request) and self.has_change_permission(request)):
            raise PermissionDenied

    def _import_job(self, request, job_id: int) -> ImportJob:
        self._import_check_permission(request)
        job = ImportJob.objects.filter(
            pk=job_id, kind=self.import_kind, user_id=request.user.pk
        ).first()
        if job is None:
            raise Http404("No such import of yours.")
        return job

    def _import_url(self, name: str, *args) -> str:
        return reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_{name}", args=args)

    def _import_context(self, request, **extra):
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "kind": self.import_kind,
            "title": f"Import {self.import_kind} from CSV",
            **extra,
        }

    def import_view(self, request):
        self._import_check_permission(request)
        if request.method == "POST":
            form = ImportUploadForm(request.POST, request.FILES, kind=self.import_kind)
            if form.is_valid():
                options = {
                    "only_valid": form.cleaned_data["only_valid"],
                    "mapping": form.cleaned_data["mapping"],
                    "preset": form.cleaned_data.get("preset", ""),
                    "create_customers": form.cleaned_data.get("create_customers", False),
                    "date_format": form.cleaned_data.get("date_format", ""),
                }
                try:
                    job = import_jobs.import_job_create(
                        kind=self.import_kind,
                        upload=form.cleaned_data["file"],
                        options=options,
                        actor=audit_actor(request),
                    )
                except ValidationError as exc:
                    form.add_error("file", exc)
                else:
                    return HttpResponseRedirect(self._import_url("import_job", job.pk))
        else:
            form = ImportUploadForm(kind=self.import_kind)
        recent = ImportJob.objects.filter(kind=self.import_kind, user_id=request.user.pk)
        return render(
            request,
            "admin/crm/import_form.html",
            self._import_context(request, form=form, recent_jobs=recent[:RECENT_JOBS]),
        )

    def import_job_view(self, request, job_id: int):
        job = self._import_job(request, job_id)
        import_jobs.import_jobs_recover_stale()
        job.refresh_from_db()
        return render(
            request,
            "admin/crm/import_job.html",
            self._import_context(request, job=job, report=job.report, Status=ImportJob.Status),
        )

    def import_job_status_view(self, request, job_id: int):
        job = self._import_job(request, job_id)
        import_jobs.import_jobs_recover_stale()
        job.refresh_from_db()
        return JsonResponse(
            {
                "status": job.status,
                "status_label": job.get_status_display(),
                "progress": job.progress,
                "rows_read": job.rows_read,
                "message": job.progress_message(),
            }
        )

    def import_confirm_view(self, request, job_id: int):
        job = self._import_job(request, job_id)
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        try:
            if "cancel" in request.POST:
                import_jobs.import_job_cancel(job=job)
                messages.info(
                    request, "Import cancelled: nothing was written, the file is deleted."
                )
                return HttpResponseRedirect(self._import_url("changelist"))
            import_jobs.import_job_confirm(
                job=job, only_valid="only_valid" in request.POST, actor=audit_actor(request)
            )
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        return HttpResponseRedirect(self._import_url("import_job", job.pk))
