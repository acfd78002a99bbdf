"""Values every page may show."""

from crm.selectors import business_get


def business(request) -> dict:
    """The business's name and currency (written next to amounts), from the Settings page."""
    business = business_get()
    return {"business": business, "currency": business.currency}
