"""A full or read-only data folder shows a maintenance page, never a bare 500."""

import pytest
from django.db import OperationalError
from django.urls import reverse


@pytest.fixture
def broken_today(monkeypatch):
    def fail(message):
        def today_overview(**kwargs):
            raise OperationalError(message)

        monkeypatch.setattr("pages.views.today_overview", today_overview)

    return fail


@pytest.mark.parametrize(
    "message", ["database or disk is full", "attempt to write a readonly database"]
)
def test_a_full_or_read_only_disk_shows_a_maintenance_page(staff_client, broken_today, message):
    broken_today(message)
    staff_client.raise_request_exception = False

    response = staff_client.get(reverse("pages:today"))

    assert response.status_code == 503
    assert response["Retry-After"] == "60"
    assert "Back in a moment" in response.content.decode()
    assert "disk may be full or read-only" in response.content.decode()


def test_any_other_error_shows_the_plain_error_page(staff_client, monkeypatch):
    def today_overview(**kwargs):
        raise ValueError("a bug")

    monkeypatch.setattr("pages.views.today_overview", today_overview)
    staff_client.raise_request_exception = False

    response = staff_client.get(reverse("pages:today"))

    assert response.status_code == 500
    assert "Something went wrong" in response.content.decode()
