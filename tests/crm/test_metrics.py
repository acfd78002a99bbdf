"""The statistics helpers on edge cases (pure: no database)."""

from crm.metrics import nps_value, proportion_difference_interval, welch_interval, wilson_interval


def test_statistics_helpers_handle_empty_groups():
    assert wilson_interval(0, 0) is None
    assert proportion_difference_interval(1, 2, 0, 0) is None
    assert welch_interval(1, 10.0, 100.0, 5, 10.0, 30.0) is None
    assert welch_interval(2, 20.0, 200.0, 2, 10.0, 50.0) == (5.0, 5.0)
    assert nps_value(promoters=0, detractors=0, answers=0) is None


def test_promoters_answer_nine_or_ten_and_detractors_zero_to_six():
    from crm.metrics import NPS_DETRACTOR_MAX, NPS_PROMOTER_MIN, nps_is_detractor, nps_is_promoter

    assert (NPS_PROMOTER_MIN, NPS_DETRACTOR_MAX) == (9, 6)
    assert [s for s in range(11) if nps_is_promoter(s)] == [9, 10]
    assert [s for s in range(11) if nps_is_detractor(s)] == [0, 1, 2, 3, 4, 5, 6]


def test_nps_is_the_share_of_promoters_minus_the_share_of_detractors():
    assert nps_value(promoters=3, detractors=1, answers=4) == 50
    assert nps_value(promoters=0, detractors=2, answers=2) == -100
    assert nps_value(promoters=1, detractors=1, answers=5) == 0
