"""Segments worth acting on: planted skewed groups come back, real data splits into groups an
owner acts on, and the rules that make them actionable hold on the UCI export."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from segmentation import refine
from segmentation.engine import EngineConfig, run_words, segment_customers
from tests.segmentation.realdata import (
    BEHAVIOURS,
    UCI_FULL,
    demo_raw,
    planted_mix,
    shop_sizes,
    uci_raw,
)
from tests.segmentation.test_engine import as_previous

SKEWED_MIXES = {
    "shop 60/20/10/6/4": shop_sizes(2_000),
    "shop 70/15/8/5/2 of 3,000": shop_sizes(
        3_000, {"new": 0.70, "lost": 0.15, "at_risk": 0.08, "regulars": 0.05, "champions": 0.02}
    ),
    "1,400/300/160/100/40": dict(zip(BEHAVIOURS, (1_400, 300, 160, 100, 40), strict=True)),
    "lost-heavy 20/55/15/6/4": shop_sizes(
        2_000, {"new": 0.20, "lost": 0.55, "at_risk": 0.15, "regulars": 0.06, "champions": 0.04}
    ),
}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("mix", list(SKEWED_MIXES))
def test_planted_groups_of_shop_like_sizes_come_back(mix, seed):
    frame, truth = planted_mix(SKEWED_MIXES[mix], seed=seed)

    result = segment_customers(frame, previous=[])

    assert adjusted_rand_score(truth, result.labels) >= 0.9


@pytest.mark.parametrize("seed", [3, 4])
def test_planted_groups_of_equal_sizes_still_come_back(seed):
    frame, truth = planted_mix(dict.fromkeys(BEHAVIOURS, 400), seed=seed)

    result = segment_customers(frame, previous=[])

    assert adjusted_rand_score(truth, result.labels) >= 0.9


def test_interquartile_scaling_loses_the_small_groups_that_standard_scaling_finds():
    # The measurement behind the default: kept as a test so that it is re-measured.
    frame, truth = planted_mix(shop_sizes(2_000), seed=0)
    robust = EngineConfig(scaling="robust", refine=False)

    assert adjusted_rand_score(truth, segment_customers(frame, previous=[]).labels) >= 0.9
    assert (
        adjusted_rand_score(truth, segment_customers(frame, previous=[], config=robust).labels)
        < 0.9
    )


def test_the_demo_data_behaviours_land_in_segments_of_their_own():
    frame, behaviour, names = demo_raw(3_000, seed=1)

    result = segment_customers(frame, previous=[])

    table = pd.crosstab(np.asarray(names)[behaviour], result.labels)
    told_apart = ["regular high spender", "regular", "lapsed", "new customer", "one-off buyer"]
    homes = {name: int(table.loc[name].idxmax()) for name in told_apart}
    assert len(set(homes.values())) == len(told_apart)
    for name in told_apart:
        assert table.loc[name].max() >= 0.6 * table.loc[name].sum(), name


def test_every_candidate_is_recorded_with_its_scores_and_one_is_chosen():
    frame, _ = planted_mix(shop_sizes(2_000), seed=0)

    result = segment_customers(frame, previous=[], config=EngineConfig(k_min=2, k_max=6))

    assert [c["k"] for c in result.candidates] == [2, 3, 4, 5, 6]
    assert sum(c["chosen"] for c in result.candidates) == 1
    chosen = next(c for c in result.candidates if c["chosen"])
    assert chosen["k"] == result.k
    for c in result.candidates:
        assert {"silhouette", "stability", "smallest_share", "eligible", "segments"} <= set(c)


def test_a_new_customer_never_shares_a_group_with_a_long_silent_one():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    x = np.arange(16, dtype=float).reshape(8, 2)
    refined = refine.actionable_splits(
        x,
        labels,
        recency_days=np.array([5.0, 300, 250, 10, 3, 4, 6, 8]),
        tenure_days=np.array([10.0, 400, 260, 12, 200, 220, 300, 90]),
        frequency=np.array([1.0, 1, 1, 1, 9, 8, 10, 3]),
        monetary_total=np.array([10.0, 5, 6, 11, 900, 800, 1000, 90]),
        new_days=30,
        silent_days=180,
        lapse_factor=3,
        lapse_spend_quantile=0.9,
        min_size=2,
    )

    assert refined.k == 3
    assert refined.hints == {2: "new"}
    assert refined.labels.tolist() == [2, 0, 0, 2, 1, 1, 1, 1]


def test_a_top_spender_gone_quiet_leaves_an_active_group():
    # Customer 3 bought ten times, every 30 days, but not for 120 days.
    labels = np.array([0, 0, 0, 0, 1, 1])
    x = np.zeros((6, 2))
    refined = refine.actionable_splits(
        x,
        labels,
        recency_days=np.array([5.0, 8, 10, 120, 300, 320]),
        tenure_days=np.array([300.0, 280, 310, 390, 400, 420]),
        frequency=np.array([10.0, 10, 10, 10, 1, 1]),
        monetary_total=np.array([900.0, 700, 800, 1000, 20, 30]),
        new_days=30,
        silent_days=180,
        lapse_factor=3,
        lapse_spend_quantile=0.8,
        min_size=1,
    )

    assert refined.hints == {2: "lapsing"}
    assert refined.labels.tolist() == [0, 0, 0, 2, 1, 1]


def test_stale_data_runs_but_warns_and_lowers_confidence():
    frame, _ = planted_mix(shop_sizes(600), seed=0)
    frame = frame.assign(
        recency_days=frame["recency_days"] + 200, tenure_days=frame["tenure_days"] + 200
    )

    result = segment_customers(frame, previous=[])

    assert result.confidence == "low"
    assert len(result.warnings) == 1
    assert "newest purchase is 201 days old" in result.warnings[0]
    fresh = segment_customers(frame.assign(recency_days=frame["recency_days"] - 200), previous=[])
    assert fresh.warnings == []


@pytest.fixture(scope="module")
def uci():
    if not UCI_FULL.exists():
        pytest.skip("the UCI export is not beside the project (../shared/data)")
    raw = uci_raw()
    return raw, segment_customers(raw, previous=[])


@pytest.mark.slow
def test_the_uci_export_as_of_its_last_day_splits_into_groups_an_owner_acts_on(uci):
    raw, result = uci

    assert result.k >= 4
    assert len({s.behaviour for s in result.segments}) >= 4
    frame = raw.assign(label=result.labels)
    new = frame["tenure_days"] <= 30
    silent = frame["recency_days"] > 180
    for label in range(result.k):
        members = frame["label"] == label
        assert not ((members & new).any() and (members & silent).any()), label


@pytest.mark.slow
def test_no_top_spender_gone_quiet_is_called_a_best_customer_on_the_uci_export(uci):
    raw, result = uci
    best = {s.label for s in result.segments if s.behaviour in ("champions", "loyal")}
    gap = (raw["tenure_days"] - raw["recency_days"]) / (raw["frequency"] - 1)
    top = raw["monetary_total"] >= raw["monetary_total"].quantile(0.9)
    quiet = (raw["frequency"] >= 2) & (raw["recency_days"] > 3 * gap)

    assert best
    assert (top & quiet).sum() > 0  # the rule has customers to act on
    assert not np.isin(result.labels[(top & quiet).to_numpy()], list(best)).any()


@pytest.mark.parametrize("seed", [0, 1])
def test_a_rerun_a_day_later_with_nobody_moving_keeps_the_reasons(seed):
    # Measured: 3 of 3,000 reasons rewritten (a refitted tree choosing another split) on
    # the planted shop, 200 of 4,339 on the UCI export (the typical new customer's last
    # purchase crossing one month); day thresholds used to rewrite two thirds of them.
    frame, _ = planted_mix(shop_sizes(3_000), seed=seed)
    first = segment_customers(frame, previous=[])
    later = frame.assign(
        recency_days=frame["recency_days"] + 1, tenure_days=frame["tenure_days"] + 1
    )

    second = segment_customers(later, previous=as_previous(first))

    id_of = {s.label: s.segment_id for s in second.segments}
    # as_previous gave the first run's segments the ids 100 + label.
    same_segment = first.labels + 100 == np.array([id_of[label] for label in second.labels])
    assert same_segment.mean() >= 0.99
    assert (same_segment & (first.reasons != second.reasons)).sum() <= 0.005 * len(frame)


@pytest.mark.parametrize("silhouette", [None, 0.1, 0.28, 0.36, 0.62, 0.9758])
@pytest.mark.parametrize("confidence", ["low", "medium", "high"])
def test_the_owner_reads_plain_words_about_a_run_not_technical_figures(silhouette, confidence):
    words = " ".join(run_words(n_customers=4_339, silhouette=silhouette, confidence=confidence))

    assert words.startswith(
        f"{confidence.capitalize()} confidence, from the 4,339 customers who have bought"
    )
    for technical in ("silhouette", "K-Means", "fidelity", "medium:", "0.", "k="):
        assert technical.lower() not in words.lower()
    assert len(words) <= 200  # the run's confidence_note


def test_a_runs_confidence_note_is_the_owners_words():
    frame, _ = planted_mix(shop_sizes(2_000), seed=0)

    result = segment_customers(frame, previous=[])

    assert result.confidence_note == " ".join(
        run_words(n_customers=2_000, silhouette=result.silhouette, confidence=result.confidence)
    )
    assert "silhouette" not in result.confidence_note
