"""E-mail settings from the environment: EMAIL_URL read strictly, the console in development."""

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from config.env import env_email


def test_an_email_url_gives_the_smtp_settings_with_its_credentials(monkeypatch):
    monkeypatch.setenv("EMAIL_URL", "smtp://shop%40example.com:p%3Ass@mail.example.com:2525?tls")
    assert env_email() == {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "mail.example.com",
        "EMAIL_PORT": 2525,
        "EMAIL_HOST_USER": "shop@example.com",
        "EMAIL_HOST_PASSWORD": "p:ss",
        "EMAIL_USE_TLS": True,
        "EMAIL_USE_SSL": False,
    }


def test_ssl_without_a_port_uses_465(monkeypatch):
    monkeypatch.setenv("EMAIL_URL", "smtp://mail.example.com?ssl")
    assert env_email()["EMAIL_PORT"] == 465
    assert env_email()["EMAIL_USE_SSL"] is True


@pytest.mark.parametrize(
    "url",
    [
        "http://mail.example.com",
        "smtp://mail.example.com:port",
        "smtp://:25",
        "smtp://mail.example.com?tls&ssl",
        "smtp://mail.example.com?starttls",
    ],
)
def test_an_email_url_that_cannot_be_read_stops_the_start(monkeypatch, url):
    monkeypatch.setenv("EMAIL_URL", url)
    with pytest.raises(ImproperlyConfigured, match="EMAIL_URL"):
        env_email()


def _email_settings(env: dict[str, str]) -> dict:
    code = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "print(json.dumps([s.EMAIL_BACKEND, s.EMAIL_HOST, s.EMAIL_PORT, s.EMAIL_USE_TLS, "
        "s.DEFAULT_FROM_EMAIL]))"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EMAIL_")}
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_development_prints_messages_on_the_console_and_the_environment_chooses_a_server():
    assert _email_settings({})[0] == "django.core.mail.backends.console.EmailBackend"
    assert _email_settings(
        {
            "EMAIL_HOST": "mail.example.com",
            "EMAIL_PORT": "587",
            "EMAIL_USE_TLS": "yes",
            "DEFAULT_FROM_EMAIL": "shop@example.com",
        }
    ) == [
        "django.core.mail.backends.smtp.EmailBackend",
        "mail.example.com",
        587,
        True,
        "shop@example.com",
    ]
    assert _email_settings({"EMAIL_URL": "smtp://relay.example.com"})[1:3] == [
        "relay.example.com",
        25,
    ]
