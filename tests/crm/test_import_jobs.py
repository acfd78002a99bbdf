"""Import jobs: the preview and the import on the worker, limits, cancelling, retention."""

import gzip
import io
import os
import threading
import time
from datetime import timedelta

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from crm import import_jobs
from crm.audit import Actor
from crm.import_jobs import (
    import_job_cancel,
    import_job_confirm,
    import_job_create,
    import_job_preview,
    import_job_run,
    import_jobs_clean,
    import_jobs_recover_stale,
)
from crm.models import AuditEntry, Customer, ImportJob
from tests.factories import CustomerFactory, UserFactory

Status = ImportJob.Status


@pytest.fixture(autouse=True)
def _var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path


def _job(text: str | bytes, *, name="customers.csv", kind="customers", user=None, **options):
    data = text.encode() if isinstance(text, str) else text
    return import_job_create(
        kind=kind,
        upload=SimpleUploadedFile(name, data),
        options={"only_valid": False, "mapping": {}, **options},
        actor=Actor(user=user, address="203.0.113.5"),
        enqueue=False,
    )


def _gzip_of_zeros(megabytes: int) -> bytes:
    """A 'zip bomb': a few hundred KB that expand to `megabytes` MB."""
    out = io.BytesIO()
    chunk = b"\0" * (1024 * 1024)
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9) as zipped:
        for _ in range(megabytes):
            zipped.write(chunk)
    return out.getvalue()


def test_an_upload_is_stored_and_queued_and_the_preview_writes_nothing(db):
    job = _job("email,name\nann@example.com,Ann\nbob@example.com,Bob\n")
    assert job.status == Status.QUEUED and job.upload_path.exists()

    job = import_job_preview(job=job)

    assert job.status == Status.READY and job.progress == 100 and job.rows_read == 2
    assert "Customers would be created: 2." in job.report["summary"]
    assert job.report["ok"] and set(job.report["preview_columns"]) >= {"email", "name"}
    assert Customer.objects.count() == 0
    assert job.upload_path.exists()  # kept for the import


def test_a_confirmed_job_imports_audits_as_its_user_and_deletes_its_file(db):
    owner = UserFactory(username="alice")
    job = import_job_preview(job=_job("email,name\nann@example.com,Ann\n", user=owner))

    job = import_job_confirm(job=job, only_valid=False, actor=Actor(user=owner, address=None))
    assert job.status == Status.IMPORTING
    job = import_job_run(job=job)

    assert job.status == Status.DONE and job.finished_at is not None
    assert "Customers were created: 1." in job.report["summary"]
    assert list(Customer.objects.values_list("name", flat=True)) == ["Ann"]
    assert not job.upload_path.exists()
    entry = AuditEntry.objects.get(action=AuditEntry.Action.IMPORTED)
    assert (entry.username, entry.count) == ("alice", 1)


def test_a_preview_with_row_errors_can_be_imported_only_without_the_invalid_rows(db):
    job = import_job_preview(job=_job("email,age\nann@example.com,34\nbob@example.com,forty\n"))
    assert not job.report["ok"] and job.report["errors"][0][:2] == [3, "age"]

    with pytest.raises(ValidationError, match="cannot be imported as it is"):
        import_job_confirm(job=job, only_valid=False, actor=Actor())
    import_job_run(job=import_job_confirm(job=job, only_valid=True, actor=Actor()))

    assert list(Customer.objects.values_list("email", flat=True)) == ["ann@example.com"]


def test_a_file_that_cannot_be_read_is_refused_at_the_preview(db):
    job = import_job_preview(job=_job("name\nAnn\n"))

    assert job.status == Status.READY and job.report["fatal"]
    with pytest.raises(ValidationError):
        import_job_confirm(job=job, only_valid=True, actor=Actor())


def test_a_gzip_upload_is_previewed_like_its_csv(db):
    job = import_job_preview(job=_job(gzip.compress(b"email\nann@example.com\n"), name="a.csv.gz"))

    assert job.status == Status.READY and job.report["rows"] == 1


def test_an_upload_over_the_size_limit_is_refused_before_it_is_stored(db, settings):
    settings.IMPORT_MAX_UPLOAD_MB = 1

    with pytest.raises(ValidationError, match="at most 1 MB"):
        _job(b"email\n" + b"a@example.com\n" * 80_000)

    assert not ImportJob.objects.exists()
    assert list(import_jobs.import_dir().iterdir()) == []


def test_a_gzip_bomb_is_refused_quickly_with_the_default_limits(db):
    bomb = _gzip_of_zeros(300)
    assert len(bomb) < 400 * 1024  # about 300 KB on disk
    job = _job(bomb, name="bomb.csv.gz")

    started = time.monotonic()
    job = import_job_preview(job=job)
    elapsed = time.monotonic() - started

    assert job.status == Status.FAILED
    assert "a line longer than 1 MB" in job.error and "Nothing was imported" in job.error
    assert not job.upload_path.exists()
    # Expanding all 300 MB takes seconds; the first line's megabyte, a fraction of that.
    assert elapsed < 2.0


def test_a_gzip_upload_is_refused_while_it_expands_past_the_limit(db, settings):
    settings.IMPORT_MAX_DECOMPRESSED_MB = 2
    rows = ("x" * 999 + "\n") * 50_000  # 50 MB once expanded, 150 KB compressed
    job = _job(gzip.compress(("email\n" + rows).encode()), name="big.csv.gz")

    job = import_job_preview(job=job)

    assert job.status == Status.FAILED
    assert "expands to more than 2 MB once uncompressed" in job.error
    assert not job.upload_path.exists()


def test_the_counting_reader_stops_at_the_limit_not_at_the_end():
    raw = io.BytesIO(gzip.compress(b"a@example.com\n" * 4_000_000))  # 56 MB expanded
    stream = import_jobs.limited_stream(raw, limit=3 * 1024 * 1024)
    read = 0
    with pytest.raises(import_jobs.ImportTooLarge, match="expands to more than 3 MB"):
        while chunk := stream.read(64 * 1024):
            read += len(chunk)
    assert read <= 3 * 1024 * 1024


def test_a_gzip_inside_a_gzip_is_refused(db):
    job = _job(gzip.compress(gzip.compress(b"email\nann@example.com\n")), name="twice.csv.gz")

    job = import_job_preview(job=job)

    assert job.status == Status.FAILED and "compressed twice" in job.error


def test_cancelling_deletes_the_file_and_a_cancelled_job_is_never_previewed(db):
    job = _job("email\nann@example.com\n")

    job = import_job_cancel(job=job)
    assert job.status == Status.CANCELLED and not job.upload_path.exists()
    assert import_job_preview(job=job).status == Status.CANCELLED


def test_cancelling_during_the_preview_stops_the_worker_at_its_next_progress_step(db, monkeypatch):
    rows = "".join(f"c{i}@example.com\n" for i in range(12_000))
    job = _job("email\n" + rows)
    monkeypatch.setattr(import_jobs, "PROGRESS_SAVE_SECONDS", 0)
    real_save = import_jobs._JobProgress.save

    def cancel_then_save(progress):
        ImportJob.objects.filter(pk=job.pk).update(status=Status.CANCELLED)
        real_save(progress)

    monkeypatch.setattr(import_jobs._JobProgress, "save", cancel_then_save)

    job = import_job_preview(job=job)

    assert job.status == Status.CANCELLED and job.report == {}


def test_a_job_runs_again_after_its_worker_died_but_not_forever(db):
    job = _job("email\nann@example.com\n")
    ImportJob.objects.filter(pk=job.pk).update(status=Status.PREVIEWING, attempts=1)
    assert import_job_preview(job=job).status == Status.READY  # redelivered: second attempt

    job = _job("email\nbob@example.com\n")
    ImportJob.objects.filter(pk=job.pk).update(status=Status.PREVIEWING, attempts=2)
    job = import_job_preview(job=job)
    assert job.status == Status.FAILED and "stopped 2 times" in job.error


def test_a_job_whose_worker_went_silent_fails_with_a_clear_message(db, settings):
    settings.IMPORT_STALE_SECONDS = 600
    job = _job("email\nann@example.com\n")
    ImportJob.objects.filter(pk=job.pk).update(
        status=Status.PREVIEWING, heartbeat_at=timezone.now() - timedelta(minutes=11)
    )
    fresh = _job("email\nbob@example.com\n")

    assert import_jobs_recover_stale() == 1

    job.refresh_from_db()
    assert job.status == Status.FAILED and not job.upload_path.exists()
    assert "worker stopped answering 11 minutes ago" in job.error
    assert "Nothing was imported" in job.error
    fresh.refresh_from_db()
    assert fresh.status == Status.QUEUED and fresh.upload_path.exists()


def test_the_cleanup_deletes_uploads_nobody_confirmed_and_stray_files(db, settings):
    settings.IMPORT_ABANDONED_HOURS = 24
    now = timezone.now()
    abandoned = import_job_preview(job=_job("email\nann@example.com\n"))
    ImportJob.objects.filter(pk=abandoned.pk).update(created_at=now - timedelta(hours=25))
    recent = import_job_preview(job=_job("email\nbob@example.com\n"))
    stray = import_jobs.import_dir() / "left-over.upload"
    stray.write_bytes(b"email\n")
    old = (now - timedelta(hours=30)).timestamp()
    os.utime(stray, (old, old))

    assert import_jobs_clean(now=now) == 2

    abandoned.refresh_from_db()
    assert abandoned.status == Status.CANCELLED and "within 24 hours" in abandoned.error
    assert not abandoned.upload_path.exists() and not stray.exists()
    recent.refresh_from_db()
    assert recent.status == Status.READY and recent.upload_path.exists()


def test_an_import_never_keeps_its_file_whatever_its_end(db):
    failed = import_job_preview(job=_job(gzip.compress(gzip.compress(b"x")), name="x.gz"))
    cancelled = import_job_cancel(job=_job("email\nann@example.com\n"))
    done = _job("email\nbob@example.com\n")
    done = import_job_confirm(job=import_job_preview(job=done), only_valid=False, actor=Actor())
    done = import_job_run(job=done)

    for job in (failed, cancelled, done):
        assert job.is_finished and not job.upload_path.exists(), job.status


@pytest.mark.django_db(transaction=True)
def test_a_customer_can_be_saved_while_a_job_is_previewing(monkeypatch):
    """The importer reads and checks the whole file outside any transaction (only its final
    bulk write holds one), so staff edits go through while a big file is being checked."""
    rows = "".join(f"c{i}@example.com,C {i}\n" for i in range(6_000))
    job = _job("email,name\n" + rows)
    monkeypatch.setattr(import_jobs, "PROGRESS_SAVE_SECONDS", 0)
    reading, saved = threading.Event(), threading.Event()
    real_save = import_jobs._JobProgress.save

    def save_then_wait(progress):
        real_save(progress)
        reading.set()
        saved.wait(timeout=30)

    monkeypatch.setattr(import_jobs._JobProgress, "save", save_then_wait)
    worker = threading.Thread(target=lambda: _preview_in_thread(job.pk))
    worker.start()
    try:
        assert reading.wait(timeout=30)
        job.refresh_from_db()
        assert job.status == Status.PREVIEWING and job.rows_read == 5000

        started = time.monotonic()
        CustomerFactory(name="Saved during the import")
        assert time.monotonic() - started < 2  # not queued behind the import
    finally:
        saved.set()
        worker.join(timeout=60)

    job.refresh_from_db()
    assert job.status == Status.READY and job.report["created"] == 6_000
    assert Customer.objects.filter(name="Saved during the import").exists()


def _preview_in_thread(job_id: int) -> None:
    from django.db import connection

    try:
        import_job_preview(job=ImportJob.objects.get(pk=job_id))
    finally:
        connection.close()


def test_an_import_that_commits_after_being_taken_for_dead_still_ends_done(db, monkeypatch):
    job = import_job_preview(job=_job("email\nann@example.com\n"))
    job = import_job_confirm(job=job, only_valid=False, actor=Actor())
    real_import = import_jobs._importer_call

    def slow_import(job, **kwargs):
        report = real_import(job, **kwargs)
        # The page's stale check ran while the write held the database.
        ImportJob.objects.filter(pk=job.pk).update(status=Status.FAILED, error="silent")
        return report

    monkeypatch.setattr(import_jobs, "_importer_call", slow_import)

    job = import_job_run(job=job)

    assert job.status == Status.DONE and job.error == ""
    assert Customer.objects.count() == 1


def test_a_plain_csv_is_bounded_by_the_upload_limit_alone():
    data = b"email\n" + b"a@example.com\n" * 100_000

    stream = import_jobs.limited_stream(io.BytesIO(data), limit=1024)

    assert stream.read() == data


def test_a_job_over_the_time_limit_fails_saying_so(db, monkeypatch):
    def too_long(job, **kwargs):
        raise SoftTimeLimitExceeded

    monkeypatch.setattr(import_jobs, "_importer_call", too_long)

    job = import_job_preview(job=_job("email\nann@example.com\n"))

    assert job.status == Status.FAILED and "longer than the worker's time limit" in job.error
    assert not job.upload_path.exists()
