"""/healthz tells a monitor whether the product can work, without a login or any data."""

import time

import pytest
from celery import Celery
from django.urls import reverse

from segmentation.models import SegmentationRun
from tests.factories import CustomerFactory, SegmentationRunFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.worker
def test_health_is_ok_when_database_broker_and_a_worker_answer(client, live_celery_worker):
    CustomerFactory(name="Ada Lovelace", email="ada@example.com")
    run = SegmentationRunFactory(status=SegmentationRun.Status.SUCCEEDED)

    response = client.get(reverse("healthz"))

    body = response.json()
    assert response.status_code == 200, body
    assert body["database"] == "ok" and body["broker"] == "ok" and body["workers"] >= 1
    assert body["last_successful_run"] == run.finished_at.isoformat()
    assert "Ada" not in response.content.decode() and "ada@" not in response.content.decode()


def test_health_fails_fast_and_says_so_when_the_broker_is_down(client, monkeypatch):
    # Celery prefers these variables to the URL given to the app (CI's Redis pass sets them).
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    monkeypatch.delenv("CELERY_RESULT_BACKEND", raising=False)
    dead = Celery("dead", broker="redis://127.0.0.1:9/0")  # nothing listens on port 9
    monkeypatch.setattr("config.health.app", dead)

    started = time.monotonic()
    response = client.get(reverse("healthz"))
    elapsed = time.monotonic() - started

    assert response.status_code == 503
    assert response.json()["broker"] == "down"
    assert response.json()["database"] == "ok"
    assert elapsed < 5
