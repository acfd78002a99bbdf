"""How a run's process gets its memory: the same pages again for the arrays it makes and drops.

A run builds and drops hundreds of arrays of a few to a hundred megabytes (a column of a
million customers is 8 MB). By default glibc maps each array over 128 KB afresh and hands
it back when it is freed, and numpy asks for huge pages for every array over 4 MB, so each
new array costs the kernel a round of page faults: on the machines measured, 50 arrays of
8 MB took 0.23-1.02 s on fresh huge pages, 0.17-0.26 s on fresh ordinary pages and 0.06 s on
memory freed a moment before. So a worker keeps what it frees for its next arrays and numpy
takes ordinary pages, from when the worker starts (segmentation.tasks); after each run the
freed memory goes back to the system, so an idle worker does not sit on the run's peak.
Measured at a million customers, nightly runs: cleaning and scaling the features 0.47-0.57 s
instead of 1.07-1.25 s, the final fit 0.86-0.98 s instead of 1.00-1.43 s; peak memory
0.79 GB instead of 0.75 (docs/benchmarks.md).

Linux with glibc only; elsewhere (and when settings.RUN_MEMORY_REUSE is off) nothing changes.
"""

import ctypes
import ctypes.util
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from django.conf import settings

logger = logging.getLogger(__name__)

# mallopt's parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Arrays up to this size come from the reused heap: glibc's own ceiling for the threshold
# on 64-bit systems (it refuses more). Bigger ones (the feature matrix) are still mapped.
REUSE_UP_TO_BYTES = 32 * 2**20
# Freed memory the heap keeps while the run lasts, instead of trimming it after each free.
KEEP_FREED_BYTES = 2**31 - 1

_libc: ctypes.CDLL | None = None
_tuned = False


def _glibc() -> ctypes.CDLL | None:
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name or "libc.so.6")
            libc.mallopt, libc.malloc_trim  # noqa: B018 -- glibc's, absent from musl and others
        except (OSError, AttributeError):
            return None
        _libc = libc
    return _libc


def _numpy_huge_pages(enabled: bool) -> None:
    # What numpy's NUMPY_MADVISE_HUGEPAGE sets when numpy is imported, set for this process.
    multiarray = getattr(getattr(np, "_core", None), "multiarray", None)
    setter = getattr(multiarray, "_set_madvise_hugepage", None)
    if setter is not None:
        setter(enabled)


def _tune() -> bool:
    global _tuned
    if _tuned:
        return True
    libc = _glibc()
    if libc is None:
        return False
    if not (
        libc.mallopt(M_MMAP_THRESHOLD, REUSE_UP_TO_BYTES)
        and libc.mallopt(M_TRIM_THRESHOLD, KEEP_FREED_BYTES)
    ):
        logger.info("glibc refused the run's memory settings; running with its defaults")
        return False
    _numpy_huge_pages(False)
    _tuned = True
    return True


def memory_reuse_start() -> bool:
    """Reuse freed memory in this process from now on (settings.RUN_MEMORY_REUSE); a worker
    calls it when it starts, before it loads the engine: set there it sped the runs up, set
    at the start of each run it measured no faster. True when in effect."""
    return bool(getattr(settings, "RUN_MEMORY_REUSE", True)) and _tune()


@contextmanager
def run_memory() -> Iterator[None]:
    """Reuse freed memory while the block runs; give it back to the system after."""
    tuned = memory_reuse_start()
    try:
        yield
    finally:
        if tuned:
            _glibc().malloc_trim(0)
