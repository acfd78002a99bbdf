"""Error pages: a failing disk or database reads as maintenance, not as a crash."""

import sys

from django.db import DatabaseError
from django.shortcuts import render
from django.views.decorators.csrf import requires_csrf_token

# What SQLite and PostgreSQL say when the data folder is full, read-only or unreachable.
STORAGE_TROUBLE = (
    "database or disk is full",
    "disk i/o error",
    "readonly database",
    "read-only",
    "unable to open database file",
    "no space left on device",
    "could not extend file",
    "connection refused",
    "server closed the connection",
    "could not connect",
)
RETRY_AFTER_SECONDS = 60


def storage_trouble(error: BaseException | None) -> bool:
    """Whether an error means the database or its disk cannot work right now."""
    if not isinstance(error, DatabaseError):
        return False
    text = str(error).lower()
    return any(sign in text for sign in STORAGE_TROUBLE)


@requires_csrf_token
def server_error(request):
    """handler500: a maintenance page (503, retry later) when the storage is in trouble, the
    plain error page otherwise. Renders without touching the database."""
    if storage_trouble(sys.exc_info()[1]):
        response = render(request, "maintenance.html", status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    return render(request, "500.html", status=500)
