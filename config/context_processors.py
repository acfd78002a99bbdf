"""Values every page may show."""

from django.db import DatabaseError

from crm.selectors import business_from_environment, business_get


def business(request) -> dict:
    """The business's name and currency (written next to amounts), from the Settings page."""
    try:
        business = business_get()
    except DatabaseError:
        # The maintenance page renders while the database is down (config.errors).
        business = business_from_environment()
    return {"business": business, "currency": business.currency}
