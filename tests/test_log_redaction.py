"""Customers' link tokens and search terms never reach the access log or Django's log."""

import contextlib
import io
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from django.conf import settings

from config.log_redaction import RedactingFilter, redacted_text

TOKEN = "Zm9vYmFyLXNlY3JldC10b2tlbg"
EMAIL = "ann.smith@example.com"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (f"GET /u/{TOKEN}/ HTTP/1.1", "GET /u/[redacted]/ HTTP/1.1"),
        (f"/o/{TOKEN}/?accept=1", "/o/[redacted]/?accept=[redacted]"),
        (f"/feedback/{TOKEN}/", "/feedback/[redacted]/"),
        (f"/f/{TOKEN}", "/f/[redacted]"),
        ("/feedback/thanks/", "/feedback/thanks/"),
        (f"/customers/?q={EMAIL}&page=2", "/customers/?q=[redacted]&page=2"),
        (f"/admin/crm/customer/?email={EMAIL}&o=-1", "/admin/crm/customer/?email=[redacted]&o=-1"),
        ("/segments/3/?page=2&sort=spend", "/segments/3/?page=2&sort=spend"),
        (f"/customers/?page={EMAIL}", "/customers/?page=[redacted]"),
    ],
)
def test_tokens_and_query_values_are_redacted_but_harmless_parts_kept(line, expected):
    assert redacted_text(line) == expected


def console_handler() -> logging.Handler:
    for handler in logging.getLogger().handlers:
        if any(isinstance(f, RedactingFilter) for f in handler.filters):
            return handler
    raise AssertionError("the console handler has no redacting filter")


@pytest.mark.django_db
def test_djangos_request_log_names_neither_token_nor_search_term(client, staff_client):
    handler = console_handler()
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        client.get(f"/u/{TOKEN}/not-a-page/")  # a 404: "Not Found: <path>"
        staff_client.get(f"/no-such-page/?q={EMAIL}")
        logging.getLogger("django.request").warning("Bad request: %s", f"/o/{TOKEN}/?q={EMAIL}")
    finally:
        handler.setStream(previous)
    output = stream.getvalue()
    assert "Not Found: /u/[redacted]/not-a-page/" in output
    assert "Bad request: /o/[redacted]/?q=[redacted]" in output
    assert TOKEN not in output and EMAIL not in output


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_the_web_servers_access_log_names_neither_token_nor_search_term(tmp_path):
    """gunicorn started as `make run` starts it (in the project's folder, access log on)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "CELERY_"))}
    env.update(VAR_DIR=str(tmp_path), DJANGO_ENV="development", PYTHONUNBUFFERED="1")
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi:application",
         "--bind", f"127.0.0.1:{port}", "--workers", "1", "--access-logfile", "-",
         "--no-control-socket"],
        cwd=settings.BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        paths = [f"/u/{TOKEN}/", f"/o/{TOKEN}/", f"/feedback/{TOKEN}/", f"/customers/?q={EMAIL}"]
        deadline = time.monotonic() + 180
        while True:
            try:
                opener.open(f"http://127.0.0.1:{port}/admin/login/", timeout=30)
                break
            except urllib.error.HTTPError:
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    server.kill()
                    pytest.fail(f"gunicorn did not start:\n{server.communicate()[0]}")
                time.sleep(0.3)
        for path in paths:
            # The status does not matter: every request is logged.
            with contextlib.suppress(urllib.error.HTTPError):
                opener.open(f"http://127.0.0.1:{port}{path}", timeout=30)
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert "GET /u/[redacted]/ HTTP/1.1" in output, output
    assert "GET /o/[redacted]/ HTTP/1.1" in output
    assert "GET /feedback/[redacted]/ HTTP/1.1" in output
    assert "GET /customers/?q=[redacted] HTTP/1.1" in output
    assert TOKEN not in output and EMAIL not in output
