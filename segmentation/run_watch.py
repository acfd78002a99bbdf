"""Which run a person's pages follow: the run in progress, remembered in their session until
a page has shown how it ended, so the outcome is said once, where they look."""

from datetime import timedelta

from django.http import HttpRequest
from django.utils import timezone

from segmentation import selectors
from segmentation.models import SegmentationRun

SESSION_KEY = "segmentation_run_watched"
# An outcome older than this is news no more: the pages' own figures say the rest.
OUTCOME_FRESH = timedelta(hours=1)


def run_watch_remember(request: HttpRequest, *, run: SegmentationRun) -> None:
    if request.session.get(SESSION_KEY) != run.pk:  # no session write on every poll
        request.session[SESSION_KEY] = run.pk


def run_watch_progress(request: HttpRequest) -> selectors.RunProgress | None:
    """The progress a page shows: the run in progress (then remembered), else how the run
    this session started or watched ended, once and while it is fresh (then forgotten)."""
    run = selectors.run_watched(run_id=request.session.get(SESSION_KEY))
    if run is None:
        request.session.pop(SESSION_KEY, None)
        return None
    progress = selectors.run_progress(run=run)
    if progress.active:
        run_watch_remember(request, run=run)
        return progress
    request.session.pop(SESSION_KEY, None)
    if run.finished_at and timezone.now() - run.finished_at > OUTCOME_FRESH:
        return None
    return progress
