"""Segment names, profiles and descriptions (pure)."""

import re

import numpy as np
import pandas as pd

from segmentation.naming import DESCRIPTIONS, number, profile_sentence, segment_profiles


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
    assert profiles[1].description.endswith(DESCRIPTIONS["Lost"][1])


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
    assert profiles[0].description.endswith(DESCRIPTIONS["Champions"][1])


def test_numbers_read_plainly():
    assert [number(x) for x in (12, 4.6, 480.4, 12500, 0.25)] == [
        "12",
        "4.6",
        "480",
        "12,500",
        "0.25",
    ]


def _claims_hold(sentence: str, *, recency, frequency, overall_frequency, ratio, rhythm) -> None:
    """Every claim a profile sentence makes, checked against the numbers it came from."""
    if "Bought recently" in sentence:
        assert recency <= rhythm
    if "but within twice that" in sentence:
        assert rhythm < recency <= 2 * rhythm
    if match := re.search(r"Have not bought for (\d+) times the usual (\d+) days", sentence):
        assert recency > 2 * rhythm
        assert int(match[1]) == round(recency / rhythm) and int(match[2]) == round(rhythm)
    if "more often than the typical customer" in sentence:
        assert frequency > overall_frequency
    if "less often than the typical customer" in sentence:
        assert frequency < overall_frequency
    if "bought once" in sentence:
        assert round(frequency) == 1
    if "spend more than the median" in sentence:
        assert ratio > 1
    if "spend less than the median" in sentence:
        assert ratio < 1
    if match := re.search(r"median customer \((\d+\.\d)\u00d7\)", sentence):
        assert abs(float(match[1]) - ratio) <= 0.051  # profile values keep two decimals


def test_profile_sentences_never_contradict_the_numbers_they_describe():
    rng = np.random.default_rng(11)
    for _ in range(2_000):
        numbers = {
            "recency": float(rng.choice([rng.uniform(0, 30), rng.uniform(0, 12_000)])),
            "frequency": float(rng.integers(1, 40)),
            "overall_frequency": float(rng.integers(1, 10)),
            "ratio": float(rng.choice([rng.uniform(0.05, 0.99), rng.uniform(1.01, 20)])),
            "rhythm": float(rng.choice([7, 14, 30, 60, 90, 180, 365])),
        }
        sentence = profile_sentence(
            recency_days=numbers["recency"],
            frequency=numbers["frequency"],
            overall_frequency=numbers["overall_frequency"],
            spend_ratio=numbers["ratio"],
            rhythm=numbers["rhythm"],
        )
        _claims_hold(sentence, **numbers)


def test_segment_descriptions_on_random_data_never_contradict_their_profiles():
    rng = np.random.default_rng(12)
    for seed in range(20):
        n = 400
        frequency = rng.integers(1, 30, n).astype(float)
        recency = rng.uniform(0, 3_000, n)
        spend = frequency * rng.lognormal(3, 1, n)
        customers = pd.DataFrame(
            {
                "recency_days": recency,
                "frequency": frequency,
                "monetary_total": spend,
                "avg_order_value": spend / frequency,
                "tenure_days": recency + rng.uniform(0, 500, n),
                "rating_mean": np.nan,
                "rating_count": 0,
                "nps_mean": np.nan,
                "nps_count": 0,
                "age": np.nan,
                "income": np.nan,
            }
        )
        labels = rng.integers(0, 4, n)
        rhythm = float(rng.choice([14, 30, 90]))
        for p in segment_profiles(customers, labels, 4, kept=[], rhythm=rhythm):
            v = p.profile_values
            _claims_hold(
                p.description,
                recency=v["recency_days"],
                frequency=v["frequency"],
                overall_frequency=float(np.median(frequency)),
                ratio=v["spend_vs_median"],
                rhythm=rhythm,
            )
            if p.base_name in ("Champions", "Loyal", "Potential loyalists", "Promising"):
                assert v["recency_days"] <= 2 * rhythm, (seed, p.name, v)
