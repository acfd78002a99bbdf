"""API clients: one with a read_write token, one with a read-only token."""

import pytest
from rest_framework.test import APIClient

from api import services
from tests.factories import UserFactory


@pytest.fixture
def shop_user(db):
    """The account a web shop's integration acts as (not staff: the token is its grant)."""
    return UserFactory(username="shop", is_staff=False)


@pytest.fixture
def write_token(shop_user):
    return services.api_token_create(user=shop_user, name="web shop", scope="read_write")


@pytest.fixture
def read_token(shop_user):
    return services.api_token_create(user=shop_user, name="reports", scope="read")


@pytest.fixture
def api(write_token):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {write_token[1]}")
    return client


@pytest.fixture
def read_api(read_token):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {read_token[1]}")
    return client
