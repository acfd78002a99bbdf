"""Clustering: RFM scoring, k choice, silhouettes, folding of tiny clusters (pure)."""

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, silhouette_score

from segmentation import clustering
from segmentation.features import EngineRejected, model_features
from tests.segmentation.synthetic import planted_frame


def test_silhouettes_equal_sklearn_for_several_labelings_at_once():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 6)) + 3.0
    x[7] = x[8]  # a duplicate point
    labelings = [rng.integers(0, k, 400) for k in (2, 3, 5)]
    labelings.append(np.r_[np.zeros(399, dtype=int), 1])  # a cluster of one scores 0

    ours = clustering.silhouettes(x, labelings)

    assert ours == pytest.approx([silhouette_score(x, lab) for lab in labelings], abs=1e-5)


def test_silhouette_is_undefined_for_a_single_group():
    x = np.arange(20, dtype=float).reshape(10, 2)

    assert clustering.silhouettes(x, [np.zeros(10, dtype=int)]) == [None]


def test_quintile_scores_give_equal_values_equal_scores_whatever_the_order():
    values = np.array([1, 1, 1, 1, 1, 2, 3, 5, 8, 13], dtype=float)
    scores = clustering.quintile_scores(values, higher_is_better=True)
    shuffled = np.random.default_rng(0).permutation(10)

    assert scores.tolist() == [1, 1, 1, 1, 1, 3, 4, 4, 5, 5]  # lowest value scores 1
    assert (
        clustering.quintile_scores(values[shuffled], higher_is_better=True).tolist()
        == scores[shuffled].tolist()
    )
    recency = clustering.quintile_scores(values, higher_is_better=False)
    assert recency[0] == 5 and recency[-1] == 1  # bought most recently scores 5


def test_every_cell_of_the_rfm_grid_has_one_of_the_named_groups():
    r, fm = np.meshgrid(np.arange(1, 6), np.arange(1, 6))
    groups = clustering.rfm_group_index(r.ravel(), fm.ravel())

    assert {clustering.RFM_GROUPS[g] for g in groups} == set(clustering.RFM_GROUPS)
    assert clustering.RFM_GROUPS[clustering.rfm_group_index([5], [5])[0]] == "Champions"
    assert clustering.RFM_GROUPS[clustering.rfm_group_index([1], [1])[0]] == "Lost"
    assert clustering.RFM_GROUPS[clustering.rfm_group_index([1], [5])[0]] == "Can't lose them"


def test_rfm_clustering_labels_follow_the_group_order():
    recency = np.array([1.0, 2, 3, 300, 400, 500, 5, 250, 600, 4])
    frequency = np.array([9.0, 8, 1, 7, 1, 1, 3, 6, 1, 10])
    monetary = np.array([900.0, 800, 20, 700, 10, 15, 90, 650, 5, 1000])

    result = clustering.rfm_clustering(recency, frequency, monetary)

    order = [clustering.RFM_GROUPS.index(name) for name in result.group_names]
    assert order == sorted(order)
    assert result.group_names[result.labels[0]] == "Champions"
    assert result.group_names[result.labels[8]] == "Lost"


def test_stable_sample_ignores_row_order_and_survives_new_customers():
    ids = np.arange(1, 50_001, dtype=np.int64)
    sample = set(ids[clustering.stable_sample(ids, 1_000, seed=42)])
    shuffled = np.random.default_rng(0).permutation(ids)
    grown = np.concatenate([ids, np.arange(50_001, 50_501, dtype=np.int64)])

    assert set(shuffled[clustering.stable_sample(shuffled, 1_000, seed=42)]) == sample
    kept = sample & set(grown[clustering.stable_sample(grown, 1_000, seed=42)])
    assert len(kept) >= 980  # 1% more customers replaces about 1% of the sample
    assert set(ids[clustering.stable_sample(ids, 1_000, seed=7)]) != sample


def test_kmeans_recovers_planted_groups_from_a_sample():
    frame, truth = planted_frame(per_group=400, seed=3)
    f = model_features(frame)

    choice = clustering.kmeans_k_choice(
        f.model, customer_ids=f.customer_ids, k_min=2, k_max=8, seed=42, sample_size=500
    )
    result = clustering.kmeans_fit(f.model, choice, seed=42, minibatch=False)

    assert len(choice.sample) == 500
    assert result.k == 4
    assert adjusted_rand_score(truth, result.labels) >= 0.9
    assert set(choice.silhouette_by_k) == set(range(2, 9))


def test_minibatch_fit_recovers_the_same_groups():
    frame, truth = planted_frame(per_group=400, seed=3)
    f = model_features(frame)
    choice = clustering.kmeans_k_choice(
        f.model, customer_ids=f.customer_ids, k_min=2, k_max=8, seed=42, sample_size=500
    )

    result = clustering.kmeans_fit(f.model, choice, seed=42, minibatch=True)

    assert result.method == "minibatch"
    assert adjusted_rand_score(truth, result.labels) >= 0.9


def test_agglomerative_recovers_planted_groups():
    frame, truth = planted_frame(per_group=60, seed=4)
    f = model_features(frame)

    result = clustering.agglomerative_clustering(f.model, k_min=2, k_max=8)

    assert result.method == "agglomerative"
    assert adjusted_rand_score(truth, result.labels) >= 0.9


def test_tiny_clusters_are_folded_into_the_nearest_big_one():
    x = np.array([[0.0], [0.1], [0.2], [0.3], [5.0], [5.1], [5.2], [9.0]])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 2])

    folded = clustering.folded_small_clusters(x, labels, min_size=3)

    assert folded.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


def test_fewer_distinct_customers_than_the_smallest_k_is_rejected():
    x = np.repeat(np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]]), 5, axis=0)

    with pytest.raises(EngineRejected, match="15 customers with 3 distinct profiles cannot form 4"):
        clustering.kmeans_k_choice(
            x, customer_ids=np.arange(15), k_min=4, k_max=8, seed=1, sample_size=100
        )


def test_quality_scores_are_computed_on_the_sample():
    frame, truth = planted_frame(per_group=100, seed=5)
    f = model_features(frame)

    sil, db, ch = clustering.quality_scores(f.model, truth, np.arange(0, 400, 2))

    assert 0.3 < sil <= 1.0
    assert db > 0 and ch > 0
    assert clustering.quality_scores(f.model, np.zeros(400, dtype=int), np.arange(400)) == (
        None,
        None,
        None,
    )


def test_the_previous_k_is_kept_only_while_its_silhouette_is_nearly_as_good(monkeypatch):
    frame, _ = planted_frame(per_group=100, seed=6)
    f = model_features(frame)
    args = {"customer_ids": f.customer_ids, "k_min": 2, "k_max": 8, "seed": 42}
    fresh = clustering.kmeans_k_choice(f.model, sample_size=1_000, **args)
    assert fresh.k == 4
    scores = fresh.silhouette_by_k
    gap = scores[4] - scores[5]

    monkeypatch.setattr(clustering, "K_STICKINESS", gap + 0.001)
    kept = clustering.kmeans_k_choice(f.model, sample_size=1_000, previous_k=5, **args)
    monkeypatch.setattr(clustering, "K_STICKINESS", gap - 0.001)
    dropped = clustering.kmeans_k_choice(f.model, sample_size=1_000, previous_k=5, **args)

    assert gap > 0.001
    assert kept.k == 5
    assert "kept the previous run's 5 segments with k=5" in kept.notes[-1]
    assert dropped.k == 4
