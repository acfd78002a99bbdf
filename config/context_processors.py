"""Values every page may show."""

from django.conf import settings


def business(request) -> dict:
    """The business's currency, written next to amounts."""
    return {"currency": settings.DEFAULT_CURRENCY}
