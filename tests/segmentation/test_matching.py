"""Matching clusters to previous segments (pure)."""

import numpy as np

from segmentation.matching import (
    PreviousSegment,
    centroid_dict,
    centroid_order,
    cluster_centroids,
    matched_segments,
)

COLUMNS = ["log_recency_days", "log_frequency", "log_monetary_total"]


def previous(segment_id: int, values: list[float]) -> PreviousSegment:
    centroid = dict(zip(COLUMNS, values, strict=True))
    return PreviousSegment(segment_id, f"Segment {segment_id}", centroid)


def test_clusters_keep_the_ids_of_the_nearest_previous_segments():
    centroids = np.array([[1.0, 2.0, 6.0], [5.0, 0.7, 3.0]])
    old = [previous(7, [5.1, 0.7, 3.1]), previous(3, [1.1, 2.0, 6.0])]

    result = matched_segments(centroids, COLUMNS, old)

    assert result.segment_ids == [3, 7]
    assert result.retired_segment_ids == []
    assert result.distances[0] < 0.2


def test_the_hungarian_method_optimises_the_whole_assignment_not_each_cluster():
    # Greedy would give cluster 0 segment 1 (distance 0.4) and leave cluster 1 unmatched.
    centroids = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    old = [previous(1, [0.6, 0.0, 0.0]), previous(2, [-0.5, 0.0, 0.0])]

    result = matched_segments(centroids, COLUMNS, old, threshold=0.5)

    assert result.segment_ids == [2, 1]


def test_a_cluster_far_from_every_previous_segment_is_new_and_the_unmatched_retire():
    centroids = np.array([[1.0, 2.0, 6.0], [9.0, 9.0, 9.0]])
    old = [previous(3, [1.0, 2.0, 6.1]), previous(4, [4.0, 0.0, 1.0])]

    result = matched_segments(centroids, COLUMNS, old)

    assert result.segment_ids == [3, None]
    assert result.retired_segment_ids == [4]


def test_previous_centroids_without_every_axis_never_match():
    centroids = np.array([[1.0, 2.0, 6.0]])
    old = [PreviousSegment(5, "Old", {"log_recency_days": 1.0}), PreviousSegment(6, "Old", {})]

    result = matched_segments(centroids, COLUMNS, old)

    assert result.segment_ids == [None]
    assert result.retired_segment_ids == [5, 6]


def test_centroids_are_means_per_cluster_and_round_trip_through_a_dict():
    stable = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [10.0, 10.0, 10.0]])
    centroids = cluster_centroids(stable, np.array([0, 0, 1]), 2)

    assert centroids.tolist() == [[2.0, 2.0, 2.0], [10.0, 10.0, 10.0]]
    assert centroid_dict(centroids[0], COLUMNS) == dict.fromkeys(COLUMNS, 2.0)


def test_label_order_puts_the_highest_spend_first_whatever_the_input_order():
    centroids = np.array([[5.0, 0.7, 3.0], [1.0, 2.0, 6.0], [2.0, 1.0, 6.0]])

    order = centroid_order(centroids, COLUMNS)

    assert order.tolist() == [1, 2, 0]  # spend 6 (more recent first), 6, then 3
    assert centroid_order(centroids[[2, 0, 1]], COLUMNS).tolist() == [2, 0, 1]
