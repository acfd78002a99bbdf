"""Celery entry points for segmentation: thin wrappers around the services."""

from celery import shared_task
from celery.signals import worker_process_init
from django.conf import settings
from django.db import OperationalError

from segmentation import customer_rows
from segmentation.models import SegmentationRun
from segmentation.services import runs

MAX_RETRIES = 3


@worker_process_init.connect
def _engine_preload(**kwargs) -> None:
    """Load the engine (scikit-learn) when a worker process starts, not inside its first run;
    web processes, which also import this module to enqueue, never load it. Memory freed
    from then on is reused by the runs (segmentation.run_memory)."""
    runs.run_process_prepare()


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.CELERY_TASK_TIME_LIMIT,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=MAX_RETRIES,
)
def segmentation_run_execute(self, run_id: int) -> str:
    """Compute and write one segmentation run; a run that already finished is left alone."""
    run = SegmentationRun.objects.filter(pk=run_id).first()
    if run is None:
        return "missing"
    run = runs.segmentation_run_execute(
        run=run, retry_on_operational_error=self.request.retries < MAX_RETRIES
    )
    return run.status


@shared_task
def segmentation_run_scheduled() -> int:
    """The daily run (django-celery-beat): request a run; the service skips it if one is busy."""
    return runs.segmentation_run_request(trigger=SegmentationRun.Trigger.SCHEDULE).pk


@shared_task(acks_late=True)
def run_rows_retention() -> dict:
    """Delete old runs' per-customer rows and orphans (scheduled daily)."""
    return customer_rows.run_rows_retention_delete()
