"""CSV imports in the admin: upload and preview (a dry run), then confirm or cancel."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.shortcuts import render
from django.urls import path, reverse

from crm.admin_forms import ImportUploadForm
from crm.audit import SYSTEM, Actor, audit_actor
from crm.importers import customers_import, purchases_import

IMPORT_DIR_NAME = "imports"
IMPORT_MAX_AGE_SECONDS = 24 * 3600


def _import_dir() -> Path:
    directory = Path(settings.VAR_DIR) / IMPORT_DIR_NAME
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _import_dir_prune() -> None:
    """Forget uploads nobody confirmed within a day."""
    limit = time.time() - IMPORT_MAX_AGE_SECONDS
    for stale in _import_dir().glob("*.upload"):
        if stale.stat().st_mtime < limit:
            stale.unlink(missing_ok=True)


class CsvImportMixin:
    """Adds import/ (upload and preview) and import/<token>/ (confirm) to a ModelAdmin.

    The uploaded file is kept under VAR_DIR/imports/ and named by a random token; the session
    holds the token and the options, so the confirmation re-reads the same file from the
    server and never trusts data sent back by the browser.
    """

    import_kind = ""  # "customers" or "purchases"

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "import/",
                self.admin_site.admin_view(self.import_view),
                name="{}_{}_import".format(*info),
            ),
            path(
                "import/<uuid:token>/",
                self.admin_site.admin_view(self.import_confirm_view),
                name="{}_{}_import_confirm".format(*info),
            ),
            *super().get_urls(),
        ]

    def _import_check_permission(self, request) -> None:
        if not (self.has_add_permission(request) and self.has_change_permission(request)):
            raise PermissionDenied

    def _import_run(self, stored: dict, *, dry_run: bool, actor: Actor = SYSTEM):
        options = stored["options"]
        path_ = _import_dir() / f"{stored['token']}.upload"
        if self.import_kind == "customers":
            return customers_import(
                source=path_,
                dry_run=dry_run,
                only_valid=options["only_valid"],
                mapping=options["mapping"],
                actor=actor,
            )
        return purchases_import(
            source=path_,
            dry_run=dry_run,
            only_valid=options["only_valid"],
            mapping=options["mapping"],
            preset=options.get("preset", ""),
            create_customers=options.get("create_customers", False),
            date_format=options.get("date_format", ""),
            actor=actor,
        )

    def _import_context(self, request, **extra):
        report = extra.get("report")
        if report is not None:
            extra["preview_columns"], extra["preview_rows"] = report.preview_table()
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
                _import_dir_prune()
                token = uuid.uuid4()
                with open(_import_dir() / f"{token}.upload", "wb") as out:
                    for chunk in form.cleaned_data["file"].chunks():
                        out.write(chunk)
                options = {
                    "only_valid": form.cleaned_data["only_valid"],
                    "mapping": form.cleaned_data["mapping"],
                    "preset": form.cleaned_data.get("preset", ""),
                    "create_customers": form.cleaned_data.get("create_customers", False),
                    "date_format": form.cleaned_data.get("date_format", ""),
                }
                stored = {
                    "token": str(token),
                    "kind": self.import_kind,
                    "filename": form.cleaned_data["file"].name,
                    "options": options,
                }
                request.session[f"crm_import:{token}"] = stored
                report = self._import_run(stored, dry_run=True)
                return render(
                    request,
                    "admin/crm/import_preview.html",
                    self._import_context(request, report=report, stored=stored),
                )
        else:
            form = ImportUploadForm(kind=self.import_kind)
        return render(
            request, "admin/crm/import_form.html", self._import_context(request, form=form)
        )

    def import_confirm_view(self, request, token):
        self._import_check_permission(request)
        key = f"crm_import:{token}"
        stored = request.session.get(key)
        upload = _import_dir() / f"{token}.upload"
        changelist = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist")
        if request.method != "POST" or not stored or stored["kind"] != self.import_kind:
            messages.error(request, "This import has expired or belongs to another session.")
            return HttpResponseRedirect(changelist)
        if "cancel" in request.POST or not upload.exists():
            upload.unlink(missing_ok=True)
            request.session.pop(key, None)
            messages.info(request, "Import cancelled; nothing was written.")
            return HttpResponseRedirect(changelist)
        if "only_valid" in request.POST:
            # Chosen on the preview, after seeing the errors: the valid rows are written.
            stored["options"]["only_valid"] = True
            request.session[key] = stored
        report = self._import_run(stored, dry_run=False, actor=audit_actor(request))
        if not report.written:
            return render(
                request,
                "admin/crm/import_preview.html",
                self._import_context(request, report=report, stored=stored),
            )
        upload.unlink(missing_ok=True)
        request.session.pop(key, None)
        messages.success(request, " ".join(report.summary()))
        return HttpResponseRedirect(changelist)
