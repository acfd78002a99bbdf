"""Starting a run with the task queue down or frozen answers quickly and tells the truth."""

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from django.conf import settings

from segmentation.models import SegmentationRun
from tests.workers import testing_database_url as child_database_url

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# What the web process does on "Recluster now"; the answer is printed, then the process ends
# at once (the broker client's reconnect threads are not what is measured).
REQUEST_A_RUN = (
    "import json, os, time, django; django.setup();"
    "from segmentation.services import segmentation_run_request;"
    "t = time.monotonic(); run = segmentation_run_request(trigger='manual');"
    "print(json.dumps([run.status, run.error, time.monotonic() - t]), flush=True); os._exit(0)"
)


def _request_a_run_with_broker(url: str) -> tuple[str, str, float]:
    env = {
        **os.environ,
        "DATABASE_URL": child_database_url(),
        "CELERY_BROKER_URL": url,
        "CELERY_RESULT_BACKEND": url,
    }
    result = subprocess.run(
        [sys.executable, "-c", REQUEST_A_RUN],
        env=env,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    status, error, seconds = json.loads(result.stdout.strip().splitlines()[-1])
    return status, error, seconds


@pytest.fixture
def frozen_broker():
    """A server that accepts connections and never answers: a hung broker."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_a_run_requested_with_the_broker_down_fails_at_once_and_frees_the_slot():
    status, error, seconds = _request_a_run_with_broker("redis://127.0.0.1:9/0")

    assert status == SegmentationRun.Status.FAILED
    assert "task queue" in error
    assert seconds < 5
    assert not SegmentationRun.objects.filter(active_slot__isnull=False).exists()


def test_a_run_requested_with_a_frozen_broker_answers_within_five_seconds(frozen_broker):
    started = time.monotonic()
    status, error, seconds = _request_a_run_with_broker(frozen_broker)

    assert status == SegmentationRun.Status.FAILED, error
    assert seconds < 5, f"took {seconds:.1f} s (whole process {time.monotonic() - started:.1f} s)"
