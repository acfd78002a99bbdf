"""The admin's CSV import pages: upload, progress, preview, confirm or cancel, result."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from crm import import_jobs
from crm.models import AuditEntry, Customer, ImportJob, Purchase
from tests.factories import UserFactory

Status = ImportJob.Status
IMPORT_URL = "admin:crm_customer_import"


@pytest.fixture(autouse=True)
def _var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path


@pytest.fixture
def worker(monkeypatch):
    """Runs the enqueued step at once, in this process, as the worker would."""
    ran = []

    def run(task_name: str, job_id: int) -> None:
        ran.append(task_name)
        getattr(import_jobs, task_name)(job=ImportJob.objects.get(pk=job_id))

    monkeypatch.setattr(import_jobs, "_enqueue", run)
    return ran


def _upload(client, text: str, *, url=IMPORT_URL, name="customers.csv", **options):
    upload = SimpleUploadedFile(name, text.encode(), content_type="text/csv")
    return client.post(reverse(url), {"file": upload, **options})


def _confirm(client, job, **data):
    return client.post(reverse("admin:crm_customer_import_confirm", args=[job.pk]), data)


def _page(client, job) -> str:
    return client.get(reverse("admin:crm_customer_import_job", args=[job.pk])).content.decode()


def test_an_upload_answers_at_once_and_the_worker_is_asked_after_commit(
    staff_client, monkeypatch, django_capture_on_commit_callbacks
):
    queued = []
    monkeypatch.setattr(import_jobs, "_enqueue", lambda task, job_id: queued.append(task))

    with django_capture_on_commit_callbacks(execute=True):
        response = _upload(staff_client, "email\nann@example.com\n")

    job = ImportJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:crm_customer_import_job", args=[job.pk])
    assert queued == ["import_job_preview"] and job.status == Status.QUEUED
    html = _page(staff_client, job)
    assert 'id="import-progress"' in html and "js/import_job.js" in html
    assert "<script>" not in html  # the page's script is a static file (CSP)


def test_the_status_answers_the_progress_as_json(staff_client, monkeypatch):
    monkeypatch.setattr(import_jobs, "_enqueue", lambda task, job_id: None)
    _upload(staff_client, "email\nann@example.com\n")
    job = ImportJob.objects.get()
    ImportJob.objects.filter(pk=job.pk).update(
        status=Status.PREVIEWING, progress=40, rows_read=400_000
    )

    status = staff_client.get(reverse("admin:crm_customer_import_job_status", args=[job.pk]))

    assert status.json() == {
        "status": "previewing",
        "status_label": "Checking the file",
        "progress": 40,
        "rows_read": 400_000,
        "message": "Checking: 40 % of the file read (400,000 rows).",
    }


def test_the_preview_then_the_confirmation_writes_and_shows_the_result(
    staff_client, worker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        _upload(staff_client, "email,name\nann@example.com,Ann\nbob@example.com,Bob\n")
    job = ImportJob.objects.get()

    html = _page(staff_client, job)
    assert "Customers would be created: 2." in html and "Confirm the import" in html
    assert Customer.objects.count() == 0  # the preview writes nothing

    with django_capture_on_commit_callbacks(execute=True):
        done = _confirm(staff_client, job, confirm="1")
    assert done.status_code == 302
    assert worker == ["import_job_preview", "import_job_run"]
    assert sorted(Customer.objects.values_list("name", flat=True)) == ["Ann", "Bob"]
    html = _page(staff_client, job)
    assert "Customers were created: 2." in html and "Import another file" in html
    assert AuditEntry.objects.filter(action=AuditEntry.Action.IMPORTED, username="alice").exists()
    # Confirming twice writes nothing more.
    _confirm(staff_client, job, confirm="1")
    assert Customer.objects.count() == 2


def test_row_errors_are_shown_and_only_the_valid_rows_can_be_chosen(
    staff_client, worker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        _upload(staff_client, "email,age\nann@example.com,34\nbob@example.com,forty\n")
    job = ImportJob.objects.get()
    html = _page(staff_client, job)
    assert "forty" in html and "Confirm the import" not in html
    assert 'name="only_valid"' in html

    refused = _confirm(staff_client, job, confirm="1")
    assert refused.status_code == 302 and Customer.objects.count() == 0
    with django_capture_on_commit_callbacks(execute=True):
        _confirm(staff_client, job, only_valid="1")

    assert list(Customer.objects.values_list("email", flat=True)) == ["ann@example.com"]


def test_the_preview_keeps_each_value_in_its_column_after_a_blank_cell(
    staff_client, worker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        _upload(
            staff_client,
            "email,name,city,country\nann@example.com,,Leeds,UK\nbob@example.com,Bob,,France\n",
        )
    html = _page(staff_client, ImportJob.objects.get()).replace("\n", "")

    assert "<td>Leeds</td><td>UK</td>" in html


def test_cancel_deletes_the_file_and_writes_nothing(
    staff_client, worker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        _upload(staff_client, "email\nann@example.com\n")
    job = ImportJob.objects.get()

    response = _confirm(staff_client, job, cancel="1")

    job.refresh_from_db()
    assert response.status_code == 302 and job.status == Status.CANCELLED
    assert not job.upload_path.exists() and Customer.objects.count() == 0


def test_an_upload_over_the_limit_gets_a_clear_error_on_the_form(staff_client, settings):
    settings.IMPORT_MAX_UPLOAD_MB = 1

    response = _upload(staff_client, "email\n" + "a@example.com\n" * 80_000)

    assert response.status_code == 200
    assert "an upload may be at most 1 MB" in response.content.decode()
    assert not ImportJob.objects.exists()


def test_a_job_is_seen_only_by_the_user_who_uploaded_it(staff_client, worker, db):
    _upload(staff_client, "email\nann@example.com\n")
    job = ImportJob.objects.get()
    other = Client()
    other.force_login(UserFactory(username="carol", is_staff=True, is_superuser=True))

    assert other.get(reverse("admin:crm_customer_import_job", args=[job.pk])).status_code == 404
    assert _confirm(other, job, confirm="1").status_code == 404


def test_a_viewer_may_not_import(client, db):
    viewer = UserFactory(username="victor", is_staff=True)
    viewer.groups.add(Group.objects.get(name="Viewer"))
    client.force_login(viewer)

    assert client.get(reverse(IMPORT_URL)).status_code == 403


def test_the_purchase_import_groups_lines_and_creates_customers(
    staff_client, worker, django_capture_on_commit_callbacks
):
    text = (
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
        "1,A,Mug,2,2011-01-01 10:00,3.00,100.0,France\n"
        "1,B,Pen,1,2011-01-01 10:00,1.50,100.0,France\n"
        "C2,A,Mug,-1,2011-01-02 10:00,3.00,100.0,France\n"
    )
    with django_capture_on_commit_callbacks(execute=True):
        _upload(
            staff_client,
            text,
            url="admin:crm_purchase_import",
            name="lines.csv",
            preset="uci",
            create_customers="on",
        )
    job = ImportJob.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(reverse("admin:crm_purchase_import_confirm", args=[job.pk]))

    purchase = Purchase.objects.get()
    assert purchase.amount == Decimal("7.50") and purchase.customer.external_id == "100"


def test_the_upload_page_lists_the_users_recent_imports(staff_client, worker):
    _upload(staff_client, "email\nann@example.com\n", name="spring.csv")

    html = staff_client.get(reverse(IMPORT_URL)).content.decode()

    assert "Your recent imports" in html and "spring.csv" in html
