"""CSV imports off the web request: a job per upload, previewed then imported by the worker.

The page saves the upload and an ImportJob, the worker runs the preview (a dry run) and,
once the user confirms, the import, reporting progress on the job row; the page polls it.
The uploaded file is deleted as soon as the job ends, and by beat when nobody confirms it.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import connection, transaction
from django.utils import timezone

from crm.audit import Actor
from crm.importers import ImportReport, customers_import, purchases_import
from crm.models import ImportJob

logger = logging.getLogger(__name__)

Status = ImportJob.Status
IMPORT_DIR_NAME = "imports"
GZIP_MAGIC = b"\x1f\x8b"
MB = 1024 * 1024
# The job row is written at most this often while the file is read (progress, heartbeat).
PROGRESS_SAVE_SECONDS = 1.0
# A worker holding a job touches its heartbeat this often, also in phases with no progress.
HEARTBEAT_SECONDS = 30
# A step whose worker died this many times (each death redelivers its task) is failed.
MAX_ATTEMPTS = 2
ERRORS_KEPT = 200  # row errors stored with the job; their count is always exact
# No row of ours comes near this; the text layer would hold a longer line whole in memory
# before the CSV reader could refuse it (a "zip bomb" of zeros is one endless line).
MAX_LINE_BYTES = 1 * MB


class ImportTooLarge(Exception):
    """The upload expands past IMPORT_MAX_DECOMPRESSED_MB."""


class ImportJobCancelled(Exception):
    """The job was cancelled (or failed) while the worker was reading its file."""


# --- the upload ----------------------------------------------------------------------------


def import_dir() -> Path:
    directory = Path(settings.VAR_DIR) / IMPORT_DIR_NAME
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def import_job_create(
    *, kind: str, upload: UploadedFile, options: dict, actor: Actor, enqueue: bool = True
) -> ImportJob:
    """Store the upload and queue its preview.

    Side effects: a file under VAR_DIR/imports/, one ImportJob row (queued), the Celery task
    `import_job_preview` on commit (unless `enqueue` is False).
    """
    if upload.size > settings.IMPORT_MAX_UPLOAD_MB * MB:
        raise ValidationError(upload_too_large_message(upload.size))
    stored_name = f"{uuid.uuid4().hex}.upload"
    path = import_dir() / stored_name
    with open(path, "wb") as out:
        for chunk in upload.chunks():
            out.write(chunk)
    try:
        with transaction.atomic():
            job = ImportJob.objects.create(
                kind=kind,
                filename=upload.name[:255],
                stored_name=stored_name,
                size=upload.size,
                options=options,
                user=actor.user,
                address=actor.address,
                heartbeat_at=timezone.now(),
            )
            if enqueue:
                transaction.on_commit(lambda: _enqueue("import_job_preview", job.pk))
    except Exception:
        path.unlink(missing_ok=True)  # no job row, no file
        raise
    return job


def upload_too_large_message(size: int) -> str:
    return (
        f"The file is {size / MB:,.1f} MB; an upload may be at most "
        f"{settings.IMPORT_MAX_UPLOAD_MB:,} MB (setting IMPORT_MAX_UPLOAD_MB). Split it, "
        "or use the import command on the server."
    )


def _enqueue(task_name: str, job_id: int) -> None:
    # At call time: crm.tasks imports this module to run the jobs.
    from crm import tasks

    try:
        getattr(tasks, task_name).delay(job_id)
    except Exception as exc:  # the broker is down: say so on the job
        logger.exception("Could not enqueue import job %s", job_id)
        _job_finish(
            ImportJob.objects.get(pk=job_id),
            status=Status.FAILED,
            error=f"The background worker's queue could not be reached ({exc}); nothing was "
            "imported. Try again in a minute.",
        )


# --- the user's decisions ------------------------------------------------------------------


def import_job_confirm(*, job: ImportJob, only_valid: bool, actor: Actor) -> ImportJob:
    """Queue the import of a previewed job; `only_valid` leaves the invalid rows out.

    Side effects: the job goes to importing; the Celery task `import_job_run` on commit.
    Raises ValidationError when the job is not ready or its preview allows no import.
    """
    report = job.report or {}
    if job.status != Status.READY:
        raise ValidationError(f"This import is {job.get_status_display().lower()}, not ready.")
    if report.get("fatal") or (not report.get("ok") and not only_valid):
        raise ValidationError("This file cannot be imported as it is: fix it and upload it again.")
    options = {**job.options, "only_valid": job.options.get("only_valid") or only_valid}
    with transaction.atomic():
        updated = ImportJob.objects.filter(pk=job.pk, status=Status.READY).update(
            status=Status.IMPORTING,
            options=options,
            address=actor.address,
            progress=0,
            rows_read=0,
            attempts=0,
            started_at=None,
            heartbeat_at=timezone.now(),
        )
        if not updated:
            raise ValidationError("This import was confirmed or cancelled already.")
        transaction.on_commit(lambda: _enqueue("import_job_run", job.pk))
    job.refresh_from_db()
    return job


def import_job_cancel(*, job: ImportJob) -> ImportJob:
    """Cancel a job not yet importing: its file is deleted, nothing is written.

    A worker reading the file notices at its next progress step and stops.
    """
    cancellable = (Status.QUEUED, Status.PREVIEWING, Status.READY)
    if job.status not in cancellable:
        raise ValidationError(f"This import is {job.get_status_display().lower()}: too late.")
    if not _job_finish(job, status=Status.CANCELLED, error="", only_from=cancellable):
        raise ValidationError("This import has moved on meanwhile; reload the page.")
    job.refresh_from_db()
    return job


# --- the worker's steps --------------------------------------------------------------------


def import_job_preview(*, job: ImportJob) -> ImportJob:
    """Run the preview (a dry run) of a queued job and store its report; the job is then
    ready (or failed when the file cannot be read). Writes nothing but the job row."""
    started = _job_start(
        job, from_statuses=(Status.QUEUED, Status.PREVIEWING), to=Status.PREVIEWING
    )
    report = _job_import(job, status=Status.PREVIEWING, dry_run=True) if started else None
    if report is not None:
        ImportJob.objects.filter(pk=job.pk, status=Status.PREVIEWING).update(
            status=Status.READY, report=report_json(report), progress=100, rows_read=report.rows
        )
    job.refresh_from_db()
    return job


def import_job_run(*, job: ImportJob) -> ImportJob:
    """Run the confirmed import; the job ends done, or back at ready with the new report when
    the data changed since the preview so that rows became invalid (nothing written then).

    Side effects: the importer's writes and audit entry (crm.importers), in one transaction.
    """
    started = _job_start(job, from_statuses=(Status.IMPORTING,), to=Status.IMPORTING)
    report = _job_import(job, status=Status.IMPORTING, dry_run=False) if started else None
    if report is None:
        pass
    elif report.written:
        # Also over a "failed" set meanwhile by the stale check (on SQLite the heartbeat
        # waits behind the import's own write lock): the rows are written, the job says so.
        _job_finish(
            job,
            status=Status.DONE,
            report=report_json(report),
            only_from=(Status.IMPORTING, Status.FAILED),
        )
    elif report.fatal:
        _job_finish(
            job,
            status=Status.FAILED,
            error=str(report.errors[0]) if report.errors else "Nothing could be imported.",
            report=report_json(report),
            only_from=(Status.IMPORTING,),
        )
    else:
        ImportJob.objects.filter(pk=job.pk, status=Status.IMPORTING).update(
            status=Status.READY, report=report_json(report), progress=100
        )
    job.refresh_from_db()
    return job


def _job_start(job: ImportJob, *, from_statuses: tuple, to: str) -> bool:
    """Claim the job for this worker; False when it has ended or a worker died on it too often."""
    job.refresh_from_db()
    if job.status not in from_statuses:
        return False
    if job.attempts >= MAX_ATTEMPTS:
        _job_finish(
            job,
            status=Status.FAILED,
            error=f"The worker stopped {job.attempts} times on this file (out of memory or "
            "time); nothing was imported.",
        )
        return False
    now = timezone.now()
    claimed = ImportJob.objects.filter(pk=job.pk, status__in=from_statuses).update(
        status=to,
        started_at=job.started_at or now,
        heartbeat_at=now,
        attempts=job.attempts + 1,
        progress=0,
        rows_read=0,
    )
    return bool(claimed)


def _job_import(job: ImportJob, *, status: str, dry_run: bool) -> ImportReport | None:
    """Run the importer on the job's file; None when the job ended instead (cancelled, too
    large, or an error, recorded on the job)."""
    try:
        with _heartbeat(job.pk, status), _upload_opened(job) as (source, raw):
            progress = _JobProgress(job_id=job.pk, status=status, raw=raw, size=job.size)
            return _importer_call(job, source=source, dry_run=dry_run, progress=progress)
    except ImportJobCancelled:
        return None
    except ImportTooLarge as exc:
        _job_finish(job, status=Status.FAILED, error=str(exc), only_from=(status,))
    except SoftTimeLimitExceeded:
        _job_finish(
            job,
            status=Status.FAILED,
            error=f"The file took longer than the worker's time limit "
            f"({settings.CELERY_TASK_SOFT_TIME_LIMIT // 60} minutes, setting "
            "CELERY_TASK_SOFT_TIME_LIMIT); nothing was imported. Split it, or use the import "
            "command on the server.",
            only_from=(status,),
        )
    except FileNotFoundError:
        _job_finish(
            job,
            status=Status.FAILED,
            error="The uploaded file is gone (deleted after too long a wait); upload it again.",
            only_from=(status,),
        )
    except Exception as exc:
        logger.exception("Import job %s failed", job.pk)
        _job_finish(
            job,
            status=Status.FAILED,
            error=f"The import stopped on an unexpected error; nothing was imported "
            f"({type(exc).__name__}: {exc}).",
            only_from=(status,),
        )
    return None


def _importer_call(job: ImportJob, *, source, dry_run: bool, progress) -> ImportReport:
    options = job.options
    actor = Actor(user=job.user, address=job.address)
    common = {
        "source": source,
        "dry_run": dry_run,
        "only_valid": bool(options.get("only_valid")),
        "mapping": options.get("mapping") or {},
        "progress": progress,
        "actor": actor,
    }
    if job.kind == ImportJob.Kind.CUSTOMERS:
        return customers_import(**common)
    return purchases_import(
        **common,
        preset=options.get("preset", ""),
        create_customers=bool(options.get("create_customers")),
        date_format=options.get("date_format", ""),
    )


class _JobProgress:
    """The importer's progress hook: rows read so far; saves the share of the file read (in
    stored bytes, so a gzip upload counts too) and the heartbeat, and stops the reading when
    the job was cancelled meanwhile."""

    def __init__(self, *, job_id: int, status: str, raw: BinaryIO, size: int):
        self.job_id, self.status, self.raw, self.size = job_id, status, raw, max(size, 1)
        self.rows = 0
        self.saved_at = time.monotonic()

    def __call__(self, rows: int) -> None:
        self.rows += rows
        if time.monotonic() - self.saved_at >= PROGRESS_SAVE_SECONDS:
            self.save()

    def save(self) -> None:
        self.saved_at = time.monotonic()
        try:
            percent = min(100, self.raw.tell() * 100 // self.size)
        except ValueError:  # closed: the reading is over
            percent = 100
        updated = ImportJob.objects.filter(pk=self.job_id, status=self.status).update(
            progress=percent, rows_read=self.rows, heartbeat_at=timezone.now()
        )
        if not updated:
            raise ImportJobCancelled


@contextlib.contextmanager
def _upload_opened(job: ImportJob) -> Iterator[tuple[BinaryIO, BinaryIO]]:
    """(the stream the importer reads, the stored file under it for the progress)."""
    limit = settings.IMPORT_MAX_DECOMPRESSED_MB * MB
    with open(job.upload_path, "rb") as raw:
        yield limited_stream(raw, limit=limit), raw


def limited_stream(raw: BinaryIO, *, limit: int) -> io.BufferedReader:
    """The upload's bytes, decompressed when it is gzip and then refused past `limit` bytes,
    and refused at any line longer than MAX_LINE_BYTES.

    The bytes are counted as they come out of the decompressor, so a small file that
    expands to gigabytes (a "zip bomb") stops at the limit without ever being expanded.
    """
    head = raw.read(2)
    raw.seek(0)
    if head != GZIP_MAGIC:  # as large as it was uploaded, within IMPORT_MAX_UPLOAD_MB
        return io.BufferedReader(_CountingReader(raw, limit=None))
    stream = io.BufferedReader(_CountingReader(gzip.GzipFile(fileobj=raw), limit=limit))
    with contextlib.suppress(OSError, EOFError):  # a broken gzip: the importer says so
        if stream.peek(2)[:2] == GZIP_MAGIC:
            raise ImportTooLarge(
                "The file is compressed twice (a gzip inside a gzip); uncompress it once "
                "and upload it again."
            )
    return stream


class _CountingReader(io.RawIOBase):
    def __init__(self, inner: BinaryIO, *, limit: int | None):
        self.inner, self.limit, self.count = inner, limit, 0
        self.line_bytes = 0  # since the last newline

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True  # the importer peeks at the first bytes, then rewinds

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.count = self.line_bytes = self.inner.seek(offset, whence)
        return self.count

    def tell(self) -> int:
        return self.count

    def readinto(self, buffer) -> int:
        data = self.inner.read(len(buffer))
        self.count += len(data)
        last_newline = data.rfind(b"\n")
        if last_newline < 0:
            self.line_bytes += len(data)
        else:
            self.line_bytes = len(data) - last_newline - 1
        if self.line_bytes > MAX_LINE_BYTES:
            raise ImportTooLarge(
                f"The file has a line longer than {MAX_LINE_BYTES // MB} MB: it is not a CSV "
                "file of rows, or it is damaged. Nothing was imported."
            )
        if self.limit is not None and self.count > self.limit:
            raise ImportTooLarge(
                f"The file expands to more than {self.limit // MB:,} MB once uncompressed "
                "(setting IMPORT_MAX_DECOMPRESSED_MB); nothing was imported. Split it, or "
                "use the import command on the server."
            )
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.inner.close()  # a GzipFile; the stored file under it is closed by its opener
        super().close()


@contextlib.contextmanager
def _heartbeat(job_id: int, status: str) -> Iterator[None]:
    """Touch the job's heartbeat every HEARTBEAT_SECONDS from a thread with its own database
    connection: the importer's matching and writing phases call no progress hook, and a live
    job must never look like a dead one."""
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(HEARTBEAT_SECONDS):
                try:
                    ImportJob.objects.filter(pk=job_id, status=status).update(
                        heartbeat_at=timezone.now()
                    )
                except Exception:  # SQLite busy with the import's own write: next beat
                    logger.debug("Heartbeat of import job %s skipped", job_id, exc_info=True)
        finally:
            connection.close()

    thread = threading.Thread(target=beat, name=f"import-{job_id}-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def _job_finish(
    job: ImportJob,
    *,
    status: str,
    error: str = "",
    report: dict | None = None,
    only_from: tuple = tuple(s for s in Status if s not in ImportJob.FINISHED),
) -> bool:
    """End the job (unless it has moved on from `only_from`) and delete its file."""
    fields = {"status": status, "error": error, "finished_at": timezone.now()}
    if report is not None:
        fields["report"] = report
    if status == Status.DONE:
        fields["progress"] = 100
    ended = ImportJob.objects.filter(pk=job.pk, status__in=only_from).update(**fields)
    if ended:
        job.upload_path.unlink(missing_ok=True)
    return bool(ended)


def report_json(report: ImportReport) -> dict:
    """What the pages show of a report, as JSON for the job row."""
    columns, rows = report.preview_table()
    return {
        "summary": report.summary(),
        "ok": report.ok,
        "fatal": report.fatal,
        "written": report.written,
        "rows": report.rows,
        "invalid_rows": report.invalid_rows,
        "created": report.created,
        "updated": report.updated,
        "errors": [[e.row, e.column, e.message] for e in report.errors[:ERRORS_KEPT]],
        "error_count": len(report.errors),
        "preview_columns": columns,
        "preview_rows": [["" if v is None else str(v) for v in row] for row in rows],
    }


# --- dead workers and abandoned uploads ----------------------------------------------------


def import_jobs_recover_stale(*, now: datetime | None = None) -> int:
    """Fail the jobs whose worker stopped answering for IMPORT_STALE_SECONDS (it died, or
    none is running); their file is deleted. Returns how many."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.IMPORT_STALE_SECONDS)
    failed = 0
    for job in ImportJob.objects.waiting_for_worker().filter(heartbeat_at__lt=cutoff):
        silent = (now - job.heartbeat_at).total_seconds() // 60
        if job.status == Status.QUEUED:
            error = (
                f"No worker has picked this import up for {silent:.0f} minutes: the "
                "background worker looks stopped. Nothing was imported; upload the file "
                "again once it runs."
            )
        else:
            error = (
                f"The worker stopped answering {silent:.0f} minutes ago, in the middle of "
                f"{'checking' if job.status == Status.PREVIEWING else 'importing'} the file "
                "(it was restarted or ran out of memory). Nothing was imported; upload the "
                "file again."
            )
        failed += _job_finish(job, status=Status.FAILED, error=error, only_from=(job.status,))
    return failed


def import_jobs_clean(*, now: datetime | None = None) -> int:
    """Fail jobs of dead workers, cancel the ones nobody confirmed within
    IMPORT_ABANDONED_HOURS and delete every stored upload no live job holds.

    Returns how many jobs or files went. Scheduled hourly (crm.tasks.import_jobs_clean).
    """
    now = now or timezone.now()
    cleaned = import_jobs_recover_stale(now=now)
    hours = settings.IMPORT_ABANDONED_HOURS
    cutoff = now - timedelta(hours=hours)
    for job in ImportJob.objects.filter(
        status__in=(Status.QUEUED, Status.READY), created_at__lt=cutoff
    ):
        cleaned += _job_finish(
            job,
            status=Status.CANCELLED,
            error=f"Nobody confirmed this import within {hours} hours; its file was deleted.",
            only_from=(job.status,),
        )
    held = set(ImportJob.objects.unfinished().values_list("stored_name", flat=True))
    for stored in import_dir().iterdir():
        modified = datetime.fromtimestamp(stored.stat().st_mtime, tz=UTC)
        if stored.is_file() and stored.name not in held and modified < cutoff:
            stored.unlink(missing_ok=True)
            cleaned += 1
    return cleaned
