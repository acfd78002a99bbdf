"""Celery entry points of the CRM app."""

import socket

from celery import shared_task
from django.db import connection

from crm import audit, backup
from crm.models import Customer


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


@shared_task(acks_late=True)
def database_backup() -> str:
    """Back up the database and prune old backups (scheduled daily); returns the file."""
    return str(backup.database_backup())
