"""The statistics helpers on edge cases (pure: no database)."""

from crm.metrics import nps_value, proportion_difference_interval, welch_interval, wilson_interval


def test_statistics_helpers_handle_empty_groups():
    assert wilson_interval(0, 0) is None
    assert proportion_difference_interval(1, 2, 0, 0) is None
    assert welch_interval(1, 10.0, 100.0, 5, 10.0, 30.0) is None
    assert welch_interval(2, 20.0, 200.0, 2, 10.0, 50.0) == (5.0, 5.0)
    assert nps_value(promoters=0, detractors=0, answers=0) is None
