"""Fixtures shared by every test: personas and a logged-in staff client."""

import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import cache

from tests.factories import UserFactory

# Real Celery worker and broker fixtures: live_celery_worker, celery_broker_url.
pytest_plugins = ["tests.workers"]


@pytest.fixture(autouse=True, scope="session")
def _static_root():
    """WhiteNoise warns on each request while STATIC_ROOT is missing (settings make no folder;
    collectstatic, or runstack in development, does)."""
    Path(settings.STATIC_ROOT).mkdir(parents=True, exist_ok=True)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """The production hasher takes most of a second per user on a small machine."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _predictions_alongside(request, settings):
    """A run computes its predictions on a second connection, which sees committed rows
    only: on in tests that commit (transaction=True), off in those wrapped in a transaction
    that is rolled back."""
    marker = request.node.get_closest_marker("django_db")
    settings.PREDICTIONS_ALONGSIDE = bool(marker and marker.kwargs.get("transaction"))


@pytest.fixture(autouse=True)
def _empty_cache():
    """Pages cache their figures and the feedback link counts hits: no test sees another's."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def alice(db):
    """The owner: a staff superuser who runs the business."""
    return UserFactory(username="alice", is_staff=True, is_superuser=True)


@pytest.fixture
def bob(db):
    """A logged-in user who is not staff."""
    return UserFactory(username="bob", is_staff=False)


@pytest.fixture
def staff_client(client, alice):
    client.force_login(alice)
    # A session in use: its last-seen time is fresh, so pages are measured without the
    # once-a-minute session write (config.middleware.SessionTimeoutMiddleware).
    session = client.session
    now = int(time.time())
    session["session_started_at"] = session["session_seen_at"] = now
    session.save()
    return client
