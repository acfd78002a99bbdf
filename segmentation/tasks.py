"""Celery entry points for segmentation: thin wrappers around the services."""

from celery import shared_task
from celery.signals import worker_process_init
from django.conf import settings
from django.db import OperationalError

from segmentation.models import SegmentationRun

MAX_RETRIES = 3


@worker_process_init.connect
def _engine_preload(**kwargs) -> None:
    """Load scikit-learn when a worker process starts, not inside the first run it executes."""
    import segmentation.services  # noqa: F401


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
    from segmentation import services  # services imports this module to enqueue

    run = SegmentationRun.objects.filter(pk=run_id).first()
    if run is None:
        return "missing"
    run = services.segmentation_run_execute(
        run=run, retry_on_operational_error=self.request.retries < MAX_RETRIES
    )
    return run.status


@shared_task
def segmentation_run_scheduled() -> int:
    """The daily run (django-celery-beat): request a run; the service skips it if one is busy."""
    from segmentation import services  # services imports this module to enqueue

    return services.segmentation_run_request(trigger=SegmentationRun.Trigger.SCHEDULE).pk
