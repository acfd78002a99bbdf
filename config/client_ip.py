"""The client's address: REMOTE_ADDR, or behind a reverse proxy the header that proxy sets."""

from ipaddress import ip_address

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str | None:
    """The address the request came from, as far as this server can trust it.

    With CLIENT_IP_HEADER set (e.g. HTTP_X_FORWARDED_FOR behind one reverse proxy), the
    rightmost address in that header: the one our own proxy appended. Addresses to its left
    were written by the client and can be anything, so they are never used.
    """
    header = settings.CLIENT_IP_HEADER
    if header and header != "REMOTE_ADDR":
        candidate = request.META.get(header, "").split(",")[-1].strip()
        if _is_address(candidate):
            return candidate
    # None when there is no connection to speak of (a request built in code): an address
    # column (PostgreSQL's inet) takes no placeholder text.
    return request.META.get("REMOTE_ADDR") or None


def _is_address(value: str) -> bool:
    try:
        ip_address(value)
    except ValueError:
        return False
    return True


def axes_client_ip(request: HttpRequest) -> str | None:
    """client_ip for django-axes, which stores it in an address column: None when there is
    no address (a request built in code, a unix socket) rather than the text "unknown",
    which PostgreSQL's inet type refuses (the login would fail with a 500)."""
    address = client_ip(request)
    return address if _is_address(address) else None
