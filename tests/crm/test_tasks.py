import gzip
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from crm.audit import Actor
from crm.import_jobs import import_job_confirm, import_job_create
from crm.models import Customer, ImportJob
from crm.tasks import crm_health_check
from tests.factories import CustomerFactory


def test_health_check_reports_ok_and_the_database_it_sees(db):
    CustomerFactory.create_batch(2)

    result = crm_health_check.apply().get()

    assert result["status"] == "ok"
    assert result["customers"] == 2
    assert result["hostname"]


@pytest.mark.worker
def test_health_check_runs_on_a_real_worker_that_sees_the_test_database(live_celery_worker):
    CustomerFactory.create_batch(3)

    result = crm_health_check.delay().get(timeout=30)

    assert result["status"] == "ok", live_celery_worker.log()
    assert result["customers"] == 3, live_celery_worker.log()


@pytest.mark.worker
def test_the_real_worker_sees_rows_committed_after_it_started(live_celery_worker):
    assert crm_health_check.delay().get(timeout=30)["customers"] == 0
    CustomerFactory()

    assert crm_health_check.delay().get(timeout=30)["customers"] == 1


def _job_wait(job: ImportJob, *statuses: str, worker) -> ImportJob:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.status in statuses:
            return job
        time.sleep(0.2)
    pytest.fail(f"import job still {job.status}; the worker's log:\n{worker.log()}")


@pytest.mark.worker
def test_an_import_job_is_previewed_then_imported_by_a_real_worker(live_celery_worker):
    rows = "".join(f"c{i}@example.com,Customer {i}\n" for i in range(12_000))
    upload = SimpleUploadedFile("customers.csv.gz", gzip.compress(f"email,name\n{rows}".encode()))
    job = import_job_create(
        kind=ImportJob.Kind.CUSTOMERS,
        upload=upload,
        options={"only_valid": False, "mapping": {}},
        actor=Actor(),
    )

    job = _job_wait(job, ImportJob.Status.READY, ImportJob.Status.FAILED, worker=live_celery_worker)
    assert job.status == ImportJob.Status.READY, job.error
    assert "Customers would be created: 12,000." in job.report["summary"]
    assert Customer.objects.count() == 0

    import_job_confirm(job=job, only_valid=False, actor=Actor())
    job = _job_wait(job, ImportJob.Status.DONE, ImportJob.Status.FAILED, worker=live_celery_worker)

    assert job.status == ImportJob.Status.DONE, job.error
    assert Customer.objects.count() == 12_000
    assert not job.upload_path.exists()
