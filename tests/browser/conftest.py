"""Fixtures of the browser tests."""

import threading

import pytest
from django.db import connection

from crm import import_jobs
from crm.models import ImportJob


@pytest.fixture
def gated_worker(monkeypatch):
    """Runs each enqueued step in a thread of the web process once the test opens the gate;
    a real worker runs the same steps in tests/crm/test_tasks.py."""
    gate = threading.Event()
    threads = []

    def step(task_name: str, job_id: int) -> None:
        gate.wait(timeout=60)
        try:
            getattr(import_jobs, task_name)(job=ImportJob.objects.get(pk=job_id))
        finally:
            connection.close()

    def enqueue(task_name: str, job_id: int) -> None:
        thread = threading.Thread(target=step, args=(task_name, job_id), daemon=True)
        thread.start()
        threads.append(thread)

    monkeypatch.setattr(import_jobs, "_enqueue", enqueue)
    yield gate
    gate.set()
    for thread in threads:
        thread.join(timeout=60)
