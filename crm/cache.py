"""A version counter for the staff pages' cached figures, bumped by every layer's writes."""

from django.core.cache import cache

PAGES_VERSION_KEY = "pages:version"


def pages_cache_version() -> int:
    """A counter the staff pages bump after their own writes, so cached figures follow."""
    return cache.get(PAGES_VERSION_KEY, 0)


def pages_cache_bump() -> None:
    try:
        cache.incr(PAGES_VERSION_KEY)
    except ValueError:
        cache.set(PAGES_VERSION_KEY, 1, None)
