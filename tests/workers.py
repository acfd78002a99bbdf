"""Fixtures that run tasks on a real Celery worker, on a real broker, against the test database.

Usage (the fixture gives the test a transactional database, committed rows are what the
worker process sees):

    @pytest.mark.worker
    def test_recluster_runs_on_a_real_worker(live_celery_worker):
        run = SegmentationRunFactory(status=SegmentationRun.Status.PENDING)
        result = segmentation_run_execute.delay(run.pk)
        result.get(timeout=60)            # re-raises the task's exception, if any
        run.refresh_from_db()

- The broker is an embedded Valkey on a temporary unix socket, started once per test
  session, unless CELERY_BROKER_URL is set (then that server; CI's second pass uses Redis).
  The result backend is the broker, so `AsyncResult.get(timeout=...)` works.
- One worker process (prefork pool, concurrency 1, the same settings as production) is
  started once per session, on a queue of its own that this test process's Celery app
  sends to, so no other worker on the same broker takes the tests' tasks.
- The worker reads the test database: SQLite's test file, or PostgreSQL's test_<name>
  database, passed to it through DATABASE_URL.
- `live_celery_worker.log()` returns the worker's output, handy in assertion messages.
- The worker and the broker stop at the end of the session, also when tests fail; they
  die with the test process if it is killed.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import kombu.pools
import pytest
from django.conf import settings
from django.db import connection

from config.celery import app as celery_app
from config.processes import ProcessError, broker_start, spawn, stop

WORKER_START_TIMEOUT = 60


@dataclass
class LiveWorker:
    process: subprocess.Popen | None
    hostname: str
    queue: str
    broker_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def testing_database_url() -> str:
    """DATABASE_URL of the test database, for processes started by the tests."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    if connection.vendor == "postgresql":
        credentials = quote(db["USER"] or "", safe="")
        if db["PASSWORD"]:
            credentials += ":" + quote(db["PASSWORD"], safe="")
        host = db["HOST"] or "localhost"
        port = f":{db['PORT']}" if db["PORT"] else ""
        return f"postgres://{credentials}@{host}{port}/{quote(db['NAME'], safe='')}"
    raise NotImplementedError(f"No DATABASE_URL for the {connection.vendor} backend.")


@pytest.fixture(scope="session")
def celery_broker_url() -> Iterator[str]:
    """The broker of this test session: CELERY_BROKER_URL, else a fresh embedded Valkey."""
    if os.environ.get("CELERY_BROKER_URL"):
        yield os.environ["CELERY_BROKER_URL"]
        return
    # Short path: unix socket paths are limited to about 100 bytes.
    directory = Path(tempfile.mkdtemp(prefix="crm-broker-"))
    socket_path = directory / "valkey.sock"
    with open(directory / "valkey.log", "wb") as log:
        process = broker_start(socket_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"redis+socket://{socket_path}"
    finally:
        stop([process])
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def _live_celery_worker_session(django_db_setup, celery_broker_url) -> Iterator[LiveWorker]:
    directory = Path(tempfile.mkdtemp(prefix="crm-worker-"))
    token = uuid.uuid4().hex[:10]
    worker = LiveWorker(
        process=None,
        hostname=f"test-{token}@localhost",
        queue=f"test-{token}",
        broker_url=celery_broker_url,
        log_path=directory / "worker.log",
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": testing_database_url(),
        "CELERY_BROKER_URL": celery_broker_url,
        "CELERY_RESULT_BACKEND": celery_broker_url,
        "PYTHONUNBUFFERED": "1",
    }
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "--pool=prefork",
        "--concurrency=1",
        "--loglevel=INFO",
        f"--hostname={worker.hostname}",
        f"--queues={worker.queue}",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    restore = _celery_app_point_at(
        broker_url=celery_broker_url, result_backend=celery_broker_url, queue=worker.queue
    )
    try:
        with open(worker.log_path, "wb") as log:
            worker.process = spawn(argv, env=env, cwd=settings.BASE_DIR, stdout=log, stderr=log)
        _wait_until_ready(worker)
        yield worker
    finally:
        if worker.process is not None:
            stop([worker.process], timeout=15)
        restore()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def live_celery_worker(transactional_db, _live_celery_worker_session) -> LiveWorker:
    """A real Celery worker on the test database; see the module docstring."""
    if _live_celery_worker_session.process.poll() is not None:
        pytest.fail(
            "The live Celery worker has exited; its log:\n" + _live_celery_worker_session.log()
        )
    return _live_celery_worker_session


def _wait_until_ready(worker: LiveWorker) -> None:
    deadline = time.monotonic() + WORKER_START_TIMEOUT
    while time.monotonic() < deadline:
        if worker.process.poll() is not None:
            raise ProcessError(
                f"The Celery worker exited with code {worker.process.returncode}:\n" + worker.log()
            )
        if celery_app.control.ping(destination=[worker.hostname], timeout=0.5):
            return
    raise ProcessError(
        f"The Celery worker did not answer within {WORKER_START_TIMEOUT} s:\n" + worker.log()
    )


def _celery_app_point_at(*, broker_url: str, result_backend: str, queue: str):
    """Point this process's Celery app at the test broker; returns a function undoing it."""
    conf = celery_app.conf
    saved = {
        "broker_url": conf.broker_url,
        "result_backend": conf.result_backend,
        "task_default_queue": conf.task_default_queue,
    }

    def apply(values: dict) -> None:
        conf.update(values)
        # Drop the connection pools and the result backend built from the old settings.
        # kombu keeps its pools per broker address: reset them all, or pointing back at an
        # address used before would hand out the pool closed here.
        kombu.pools.reset()
        celery_app._pool = None
        # amqp caches the queues (task_default_queue) and the producer pool.
        celery_app.__dict__.pop("amqp", None)
        celery_app._backend_cache = None
        celery_app._local.__dict__.pop("backend", None)

    apply({"broker_url": broker_url, "result_backend": result_backend, "task_default_queue": queue})
    return lambda: apply(saved)
