"""Fixtures shared by every test: personas and a logged-in staff client."""

import pytest

from tests.factories import UserFactory


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
    return client
