"""Which run a person's pages follow: the run they started (or watched) is remembered in their
session until a page has shown how it ended, so the outcome is said once, where they look."""

from django.http import HttpRequest

from segmentation import selectors
from segmentation.models import SegmentationRun

SESSION_KEY = "segmentation_run_watched"


def run_watch_remember(request: HttpRequest, *, run: SegmentationRun) -> None:
    request.session[SESSION_KEY] = run.pk


def run_watch_progress(request: HttpRequest) -> selectors.RunProgress | None:
    """The progress a page shows: the run in progress, else the run this session started or
    watched, once, after it ended (then forgotten)."""
    run = selectors.run_watched(run_id=request.session.get(SESSION_KEY))
    if run is None:
        request.session.pop(SESSION_KEY, None)
        return None
    progress = selectors.run_progress(run=run)
    if not progress.active and request.session.get(SESSION_KEY) == run.pk:
        del request.session[SESSION_KEY]
    return progress
