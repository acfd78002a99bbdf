"""Celery entry points of the CRM app."""

import socket

from celery import shared_task
from django.db import connection

from crm import audit, backup, import_jobs
from crm.models import Customer, ImportJob


@shared_task(acks_late=True)
def crm_health_check() -> dict:
    """Prove the worker path end to end: broker, worker, database and result backend."""
    return {
        "status": "ok",
        "hostname": socket.gethostname(),
        "database": connection.vendor,
        "customers": Customer.objects.count(),
    }


@shared_task(acks_late=True)
def audit_prune() -> int:
    """Delete the audit entries older than AUDIT_RETENTION_DAYS (scheduled daily)."""
    return audit.audit_prune()


# Import jobs: the service does the work and records every outcome on the job row; a job
# whose worker dies is redelivered (acks_late) and resumed, or failed by import_jobs_clean.
@shared_task(acks_late=True)
def import_job_preview(job_id: int) -> None:
    """Check an uploaded CSV file (a dry run) and store what it would change."""
    import_jobs.import_job_preview(job=ImportJob.objects.get(pk=job_id))


@shared_task(acks_late=True)
def import_job_run(job_id: int) -> None:
    """Import a confirmed CSV file."""
    import_jobs.import_job_run(job=ImportJob.objects.get(pk=job_id))


@shared_task(acks_late=True)
def import_jobs_clean() -> int:
    """Delete abandoned uploads and fail jobs of dead workers (scheduled hourly)."""
    return import_jobs.import_jobs_clean()


@shared_task(acks_late=True)
def database_backup() -> str:
    """Back up the database and prune old backups (scheduled daily); returns the file."""
    return str(backup.database_backup())
