"""A version counter for the staff pages' cached figures, bumped by every layer's writes."""

from django.core.cache import cache
from django.db import transaction

PAGES_VERSION_KEY = "pages:version"


def pages_cache_version() -> int:
    """A counter that every service which writes bumps, so the pages' cached figures follow."""
    return cache.get(PAGES_VERSION_KEY, 0)


def pages_cache_bump() -> None:
    try:
        cache.incr(PAGES_VERSION_KEY)
    except ValueError:
        cache.set(PAGES_VERSION_KEY, 1, None)


def pages_cache_changed() -> None:
    """Say that the data behind the pages' cached figures changed: called by the services
    that write (crm, offers, segmentation), never by the interfaces that call them.

    Bumps now, and again when the surrounding transaction commits: a page read between the
    two would otherwise cache figures of the old data under the new version. Outside a
    transaction the second bump runs at once (Django's on_commit), which costs nothing.
    """
    pages_cache_bump()
    transaction.on_commit(pages_cache_bump)
