"""A run keeps the memory it frees for its next arrays, and gives it back when it ends."""

import resource

import numpy as np
import pytest

from segmentation import run_memory

pytestmark = pytest.mark.skipif(
    run_memory._glibc() is None, reason="the memory settings are glibc's"
)

MB = 2**20


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize()


def _freed_array_stays(size_mb: int) -> tuple[int, int]:
    """Resident bytes lost by freeing a touched array of ``size_mb``, then by leaving."""
    array = np.ones(size_mb * MB // 8)
    before = _resident_bytes()
    del array
    return before - _resident_bytes(), before


def test_memory_freed_during_a_run_is_kept_for_the_next_array_then_given_back(settings):
    settings.RUN_MEMORY_REUSE = True
    with run_memory.run_memory():
        lost_inside, before = _freed_array_stays(24)
        assert lost_inside < 4 * MB  # the 24 MB stay with the process for the next array
    assert before - _resident_bytes() > 20 * MB  # and go back to the system after the run


def test_runs_keep_the_system_defaults_when_memory_reuse_is_off(settings, monkeypatch):
    settings.RUN_MEMORY_REUSE = False
    monkeypatch.setattr(run_memory, "_tuned", False)
    calls = []
    monkeypatch.setattr(run_memory, "_tune", lambda: calls.append("tuned") or True)
    with run_memory.run_memory():
        pass
    assert calls == []
