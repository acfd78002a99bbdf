"""Raw aggregates -> plain features and the scaled model matrix (pure, no database)."""

import math

import numpy as np
import pandas as pd
import pytest

from segmentation import features
from segmentation.features import RAW_COLUMNS, EngineRejected, model_features


def raw(rows: list[dict]) -> pd.DataFrame:
    defaults = {
        "rating_mean": np.nan,
        "rating_count": 0,
        "nps_mean": np.nan,
        "nps_count": 0,
        "age": np.nan,
        "income": np.nan,
    }
    return pd.DataFrame([{**defaults, **row} for row in rows])[RAW_COLUMNS]


def tiny() -> pd.DataFrame:
    return raw(
        [
            # One purchase, no feedback, nothing known about the person.
            {"customer_id": 3, "frequency": 1, "monetary_total": 50.0, "recency_days": 10.0,
             "tenure_days": 10.0},
            # Four purchases, rated twice (mean 4.5), one NPS answer.
            {"customer_id": 1, "frequency": 4, "monetary_total": 200.0, "recency_days": 2.0,
             "tenure_days": 300.0, "rating_mean": 4.5, "rating_count": 2, "nps_mean": 9.0,
             "nps_count": 1, "age": 30.0, "income": 40_000.0},
            {"customer_id": 2, "frequency": 2, "monetary_total": 90.0, "recency_days": 40.0,
             "tenure_days": 100.0, "age": 50.0, "income": 60_000.0},
        ]
    )  # fmt: skip


def test_plain_features_equal_hand_computed_values():
    f = model_features(tiny())

    assert f.customer_ids.tolist() == [1, 2, 3]  # sorted by id
    plain = f.plain
    assert plain["frequency"].tolist() == [4, 2, 1]
    assert plain["monetary_total"].tolist() == [200.0, 90.0, 50.0]
    assert plain["avg_order_value"].tolist() == [50.0, 45.0, 50.0]
    assert plain["recency_days"].tolist() == [2.0, 40.0, 10.0]
    assert plain["tenure_days"].tolist() == [300.0, 100.0, 10.0]
    assert plain["rating_mean"].iloc[0] == 4.5
    assert math.isnan(plain["rating_mean"].iloc[1])  # no feedback
    assert math.isnan(plain["rating_mean"].iloc[2])
    assert plain["nps_mean"].iloc[0] == 9.0
    assert plain["age"].tolist()[:2] == [30.0, 50.0]


def test_stable_space_is_log1p_of_plain_units():
    f = model_features(tiny())

    expected_first = [math.log1p(2.0), math.log1p(4), math.log1p(200.0), math.log1p(50.0),
                      math.log1p(300.0)]  # fmt: skip
    assert f.stable[0] == pytest.approx(expected_first)


def test_model_column_is_mean_centred_and_divided_by_the_standard_deviation_by_default():
    f = model_features(tiny())

    logs = np.log1p([200.0, 90.0, 50.0])
    expected = (logs - logs.mean()) / logs.std()
    column = f.model[:, f.model_columns.index("log_monetary_total")]
    assert column == pytest.approx(expected * features.WEIGHTS["log_monetary_total"])


def test_model_column_is_median_centred_and_divided_by_iqr_with_robust_scaling():
    f = model_features(tiny(), scaling="robust")

    logs = np.log1p([200.0, 90.0, 50.0])
    q25, q50, q75 = np.quantile(logs, [0.25, 0.5, 0.75])
    expected = (logs - q50) / ((q75 - q25) / 1.349)
    column = f.model[:, f.model_columns.index("log_monetary_total")]
    assert column == pytest.approx(expected * features.WEIGHTS["log_monetary_total"])


def test_attributes_known_for_too_few_customers_are_dropped_and_counted():
    frame = tiny()
    extra = raw(
        [
            {"customer_id": 10 + i, "frequency": 1, "monetary_total": 20.0 + i,
             "recency_days": 5.0 + i, "tenure_days": 5.0 + i}
            for i in range(20)
        ]
    )  # fmt: skip
    f = model_features(pd.concat([frame, extra], ignore_index=True))

    # 2 of 23 customers have an age: below 20%, so age is dropped for the run.
    assert f.missing["age"] == {"missing": 21, "known": 2, "policy": features.POLICY_DROPPED}
    assert "age" not in f.kept
    assert "age" not in f.model_columns
    # 1 of 23 rated: below both the 10% share and the 5-customer floor.
    assert f.missing["rating_mean"]["policy"] == features.POLICY_DROPPED


def test_missing_age_is_imputed_with_the_median_plus_an_indicator():
    rows = [
        {"customer_id": i, "frequency": 1 + i % 3, "monetary_total": 10.0 * (i + 1),
         "recency_days": float(i), "tenure_days": float(i + 5),
         "age": float(20 + i) if i < 6 else np.nan}
        for i in range(10)
    ]  # fmt: skip
    f = model_features(raw(rows))

    assert f.missing["age"]["policy"] == features.POLICY_MEDIAN
    assert f.missing["age"]["missing"] == 4
    assert f.missing["age"]["imputed_with"] == 22.5  # median of 20..25
    indicator = f.model[:, f.model_columns.index("age_known")]
    assert indicator.tolist() == [features.INDICATOR_WEIGHT] * 6 + [0.0] * 4
    # Imputed customers sit exactly on the centre of the known ages.
    assert f.model[6:, f.model_columns.index("age")] == pytest.approx([0.0] * 4)


def test_missing_satisfaction_is_imputed_neutral_plus_an_indicator():
    rows = [
        {"customer_id": i, "frequency": 1, "monetary_total": 10.0 + i, "recency_days": 1.0 + i,
         "tenure_days": 1.0 + i, "rating_mean": 5.0 if i < 5 else np.nan,
         "rating_count": 1 if i < 5 else 0}
        for i in range(10)
    ]  # fmt: skip
    f = model_features(raw(rows))

    entry = f.missing["rating_mean"]
    assert entry["policy"] == features.POLICY_NEUTRAL
    assert entry["imputed_with"] == 3.0
    assert entry["missing"] == 5
    assert "rating_mean_known" in f.model_columns


def test_invalid_optional_values_count_as_unknown():
    frame = tiny()
    frame.loc[frame["customer_id"] == 1, "rating_mean"] = 9.0  # outside 1-5
    frame.loc[frame["customer_id"] == 2, "income"] = np.inf
    frame.loc[frame["customer_id"] == 2, "nps_mean"] = 8.0  # but nps_count is 0
    f = model_features(frame)

    assert math.isnan(f.plain["rating_mean"].iloc[0])
    assert math.isnan(f.plain["income"].iloc[1])
    assert math.isnan(f.plain["nps_mean"].iloc[1])
    assert f.cleaning["rating_mean"] == 1
    assert np.isfinite(f.model).all()


def test_negative_totals_and_clock_skew_are_clipped_and_counted():
    frame = tiny()
    frame.loc[frame["customer_id"] == 2, "monetary_total"] = -30.0
    frame.loc[frame["customer_id"] == 3, "recency_days"] = -1.0
    frame.loc[frame["customer_id"] == 1, "tenure_days"] = 1.0  # shorter than recency 2
    f = model_features(frame)

    assert f.plain["monetary_total"].iloc[1] == 0.0
    assert f.plain["recency_days"].iloc[2] == 0.0
    assert f.plain["tenure_days"].iloc[0] == 2.0
    assert f.cleaning == {"monetary_total": 1, "recency_days": 1, "tenure_days": 1}


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("recency_days", np.nan, "recency_days is missing or infinite for 1 customers"),
        ("monetary_total", np.inf, "monetary_total is missing or infinite for 1 customers"),
        ("frequency", 0, "frequency is missing, infinite or below 1 for 1 customers"),
    ],
)
def test_non_finite_required_values_reject_the_run_with_the_column(column, value, reason):
    frame = tiny()
    frame.loc[0, column] = value

    with pytest.raises(EngineRejected) as exc:
        model_features(frame)
    assert exc.value.reason == reason


def test_duplicate_customer_ids_are_rejected():
    frame = pd.concat([tiny(), tiny().iloc[[0]]], ignore_index=True)

    with pytest.raises(EngineRejected, match="1 duplicate customer ids"):
        model_features(frame)


def test_a_frame_without_the_contract_columns_is_a_programming_error():
    with pytest.raises(ValueError, match="lacks columns: age, income"):
        model_features(tiny().drop(columns=["age", "income"]))


def test_one_customer_with_a_thousand_times_the_income_stays_within_the_clip():
    rng = np.random.default_rng(0)
    n = 200
    frame = raw(
        [
            {"customer_id": i, "frequency": 1 + i % 4, "monetary_total": 20.0 + i,
             "recency_days": float(i % 50), "tenure_days": 60.0, "age": 30.0 + i % 20,
             "income": float(rng.normal(40_000, 5_000))}
            for i in range(n)
        ]
    )  # fmt: skip
    frame.loc[0, "income"] = 40_000_000.0
    f = model_features(frame)

    income = f.model[:, f.model_columns.index("log_income")]
    assert income.max() == pytest.approx(features.Z_CLIP * features.WEIGHTS["log_income"])
    assert np.abs(f.model).max() <= features.Z_CLIP


def test_large_runs_take_their_scaling_from_a_fixed_sample_close_to_the_full_one(monkeypatch):
    from tests.segmentation.synthetic import random_frame

    frame = random_frame(5_000, seed=3)
    full = model_features(frame).model
    monkeypatch.setattr(features, "SCALE_SAMPLE", 1_000)

    sampled = model_features(frame).model
    shuffled = model_features(frame.sample(frac=1.0, random_state=1)).model

    assert np.abs(sampled - full).max() < 0.5
    assert np.median(np.abs(sampled - full)) < 0.05
    assert not np.array_equal(sampled, full)  # the sample was really used
    assert np.array_equal(shuffled, sampled)  # and it does not depend on row order


def test_database_types_nullable_integers_and_decimals_are_read_as_floats():
    from decimal import Decimal

    frame = tiny()
    frame["customer_id"] = frame["customer_id"].astype("Int64")
    frame["rating_count"] = pd.array([0, None, 0], dtype="Int64")  # ids 3, 1, 2
    frame["monetary_total"] = pd.Series(
        [Decimal("50.00"), Decimal("200.00"), Decimal("90.50")], dtype=object
    )

    f = model_features(frame)

    assert f.plain["monetary_total"].tolist() == [200.0, 90.5, 50.0]
    assert f.plain["rating_count"].tolist() == [0.0, 0.0, 0.0]  # None counts as no ratings
    assert math.isnan(f.plain["rating_mean"].iloc[0])  # so id 1's 4.5 is not trusted
    assert f.customer_ids.dtype == np.int64


def test_a_missing_customer_id_rejects_the_run():
    frame = tiny()
    frame["customer_id"] = pd.array([1, None, 3], dtype="Int64")

    with pytest.raises(EngineRejected, match="customer_id missing for 1 rows"):
        model_features(frame)
