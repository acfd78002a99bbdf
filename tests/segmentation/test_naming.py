"""Segment names, profiles and descriptions (pure)."""

import numpy as np
import pandas as pd

from segmentation.naming import DESCRIPTIONS, number, segment_profiles


def plain(groups: list[dict]) -> tuple[pd.DataFrame, np.ndarray]:
    """Customers of several groups, each row a copy of its group's values."""
    rows, labels = [], []
    for label, g in enumerate(groups):
        size = g.pop("size")
        base = {
            "rating_mean": np.nan,
            "rating_count": 0,
            "nps_mean": np.nan,
            "nps_count": 0,
            "age": np.nan,
            "income": np.nan,
        }
        base.update(g)
        base["avg_order_value"] = base["monetary_total"] / base["frequency"]
        rows += [dict(base)] * size
        labels += [label] * size
    return pd.DataFrame(rows), np.array(labels)


def test_profile_reads_in_plain_units_relative_to_the_median():
    frame, labels = plain(
        [
            {"size": 10, "recency_days": 12.0, "frequency": 9, "monetary_total": 310.0,
             "tenure_days": 400.0, "rating_mean": 4.6, "rating_count": 1},
            {"size": 11, "recency_days": 300.0, "frequency": 1, "monetary_total": 100.0,
             "tenure_days": 300.0},
        ]
    )  # fmt: skip

    first, second = segment_profiles(frame, labels, 2, kept=["rating_mean"])

    assert first.profile == (
        "bought 9 times, last 12 days ago; spends 3.1\u00d7 the median; average rating 4.6"
    )
    assert second.profile == "bought once, last 300 days ago; spends 1.0\u00d7 the median"
    assert first.profile_values["frequency"] == 9
    assert first.profile_values["spend_vs_median"] == 3.1
    assert "rating_mean" not in second.profile_values  # nobody rated: no made-up value
    assert first.size == 10 and second.size == 11


def test_frequent_recent_big_spenders_are_champions_and_long_lapsed_are_lost():
    frame, labels = plain(
        [
            {"size": 30, "recency_days": 3.0, "frequency": 15, "monetary_total": 1500.0,
             "tenure_days": 500.0},
            {"size": 30, "recency_days": 40.0, "frequency": 3, "monetary_total": 150.0,
             "tenure_days": 200.0},
            {"size": 30, "recency_days": 600.0, "frequency": 1, "monetary_total": 20.0,
             "tenure_days": 600.0},
        ]
    )  # fmt: skip

    names = [p.name for p in segment_profiles(frame, labels, 3, kept=[])]

    assert names[0] == "Champions"
    assert names[2] in ("Lost", "Hibernating")
    assert names[1] not in ("Champions", "Lost", "Hibernating")


def test_two_segments_wanting_one_name_are_told_apart_by_their_biggest_difference():
    frame, labels = plain(
        [
            {"size": 40, "recency_days": 700.0, "frequency": 1, "monetary_total": 30.0,
             "tenure_days": 700.0},
            {"size": 20, "recency_days": 700.0, "frequency": 1, "monetary_total": 10.0,
             "tenure_days": 700.0},
            {"size": 40, "recency_days": 5.0, "frequency": 12, "monetary_total": 900.0,
             "tenure_days": 500.0},
        ]
    )  # fmt: skip

    profiles = segment_profiles(frame, labels, 3, kept=[])
    again = segment_profiles(frame, labels, 3, kept=[])

    assert profiles[0].name == "Lost"  # the larger segment keeps the plain name
    assert profiles[1].name == "Lost, lower spend"
    assert len({p.name for p in profiles}) == 3
    assert [p.name for p in again] == [p.name for p in profiles]
    assert profiles[1].description == " ".join(DESCRIPTIONS["Lost"])


def test_unhappy_high_value_customers_get_their_own_name():
    frame, labels = plain(
        [
            {"size": 30, "recency_days": 10.0, "frequency": 10, "monetary_total": 2000.0,
             "tenure_days": 400.0, "rating_mean": 1.5, "rating_count": 2},
            {"size": 30, "recency_days": 20.0, "frequency": 10, "monetary_total": 1800.0,
             "tenure_days": 400.0, "rating_mean": 4.8, "rating_count": 2},
            {"size": 60, "recency_days": 200.0, "frequency": 1, "monetary_total": 40.0,
             "tenure_days": 200.0, "rating_mean": 4.0, "rating_count": 1},
        ]
    )  # fmt: skip

    names = [p.name for p in segment_profiles(frame, labels, 3, kept=["rating_mean"])]

    assert names[0] == "Unhappy high-value"
    assert names[1] != "Unhappy high-value"


def test_rare_big_orders_are_big_spenders():
    frame, labels = plain(
        [
            {"size": 20, "recency_days": 30.0, "frequency": 1, "monetary_total": 3000.0,
             "tenure_days": 300.0},
            {"size": 40, "recency_days": 20.0, "frequency": 6, "monetary_total": 300.0,
             "tenure_days": 300.0},
            {"size": 40, "recency_days": 400.0, "frequency": 2, "monetary_total": 60.0,
             "tenure_days": 500.0},
        ]
    )  # fmt: skip

    names = [p.name for p in segment_profiles(frame, labels, 3, kept=[])]

    assert names[0] == "Big spenders"


def test_rfm_group_names_are_used_as_given():
    frame, labels = plain(
        [
            {"size": 5, "recency_days": 3.0, "frequency": 5, "monetary_total": 500.0,
             "tenure_days": 90.0},
            {"size": 5, "recency_days": 300.0, "frequency": 1, "monetary_total": 5.0,
             "tenure_days": 300.0},
        ]
    )  # fmt: skip

    profiles = segment_profiles(frame, labels, 2, kept=[], group_names=["Champions", "Lost"])

    assert [p.name for p in profiles] == ["Champions", "Lost"]
    assert profiles[0].description.startswith(DESCRIPTIONS["Champions"][0])


def test_numbers_read_plainly():
    assert [number(x) for x in (12, 4.6, 480.4, 12500, 0.25)] == [
        "12",
        "4.6",
        "480",
        "12,500",
        "0.25",
    ]
