"""/healthz: what a monitor needs to know, without a login and without any customer data."""

import logging

from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from config.celery import app
from segmentation.models import SegmentationRun

logger = logging.getLogger(__name__)

# Seconds a worker has to answer the ping; the whole check stays well under 5 s.
WORKER_PING_SECONDS = 1.0
BROKER_CONNECT_SECONDS = 2


@login_not_required
@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database, the broker and at least one worker answer, else 503."""
    checks: dict[str, object] = {"database": _database(), "broker": _broker()}
    checks["workers"] = _workers() if checks["broker"] == "ok" else 0
    healthy = checks["database"] == "ok" and checks["broker"] == "ok" and checks["workers"] > 0
    checks["last_successful_run"] = _last_run() if checks["database"] == "ok" else None
    checks["status"] = "ok" if healthy else "failing"
    return JsonResponse(checks, status=200 if healthy else 503)


def _database() -> str:
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
    except Exception:
        logger.warning("Health check: the database does not answer", exc_info=True)
        return "down"
    return "ok"


def _broker() -> str:
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=BROKER_CONNECT_SECONDS)
    except Exception:
        logger.warning("Health check: the task broker does not answer", exc_info=True)
        return "down"
    return "ok"


def _workers() -> int:
    try:
        return len(app.control.ping(timeout=WORKER_PING_SECONDS) or [])
    except Exception:
        logger.warning("Health check: could not ping the workers", exc_info=True)
        return 0


def _last_run() -> str | None:
    run = SegmentationRun.objects.latest_succeeded()
    return run.finished_at.isoformat() if run and run.finished_at else None
