"""Fixtures of the offers tests: a real SMTP server that Django sends to."""

import pytest

from tests.offers.smtp import SmtpServer


@pytest.fixture
def smtp_server(settings):
    """A real SMTP server on a free local port, with Django's settings pointing at it."""
    with SmtpServer() as server:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST = "127.0.0.1"
        settings.EMAIL_PORT = server.port
        settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        settings.DEFAULT_FROM_EMAIL = "shop@example.com"
        settings.PUBLIC_BASE_URL = "https://crm.example.com"
        yield server
