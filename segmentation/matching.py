"""New clusters -> previous segments, so a segment keeps its identity across runs. Pure.

Centroids live in a run-independent space (log1p of plain units, see
``features.STABLE_COLUMNS``): no scaler is refitted per run, so yesterday's centroid and
today's are comparable. The Hungarian method pairs clusters with previous segments at the
least total distance; a pair further apart than the threshold is no match, and the cluster
is a genuinely new segment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

# Distance (Euclidean, in log1p units) beyond which a cluster is not the same segment as a
# previous one: 1.0 is about a factor e (2.7x) on one axis, or 1.8x on three at once. Daily
# drift of one segment is far below it; neighbouring segments are usually further apart.
MATCH_THRESHOLD = 1.0


@dataclass(frozen=True)
class PreviousSegment:
    segment_id: int
    name: str
    centroid: dict[str, float]  # as returned earlier in SegmentResult.centroid


@dataclass
class Matching:
    segment_ids: list[int | None]  # per label: the previous segment it continues, or None
    distances: list[float | None]  # per label: distance to that segment
    retired_segment_ids: list[int]


def cluster_centroids(stable: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Mean of each cluster in the stable space, shape (k, d)."""
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    sums = np.stack(
        [np.bincount(labels, weights=stable[:, j], minlength=k) for j in range(stable.shape[1])],
        axis=1,
    )
    return sums / np.maximum(counts, 1)[:, None]


def centroid_order(centroids: np.ndarray, columns: list[str]) -> np.ndarray:
    """Label order by centroid: highest spend first, then most recent, then the rest.

    Rounded so float noise never swaps two clusters; the same clusters always get the same
    numbers."""
    c = np.round(centroids, 6)
    keys = [c[:, j] for j in reversed(range(c.shape[1]))]
    keys.append(c[:, columns.index("log_recency_days")])
    keys.append(-c[:, columns.index("log_monetary_total")])
    return np.lexsort(keys)


def centroid_dict(centroid: np.ndarray, columns: list[str]) -> dict[str, float]:
    return {c: round(float(v), 6) for c, v in zip(columns, centroid, strict=True)}


def matched_segments(
    centroids: np.ndarray,
    columns: list[str],
    previous: list[PreviousSegment],
    *,
    threshold: float = MATCH_THRESHOLD,
) -> Matching:
    """Pair clusters with previous segments (Hungarian method on centroid distance)."""
    k = len(centroids)
    prev = sorted(previous, key=lambda p: p.segment_id)
    segment_ids: list[int | None] = [None] * k
    distances: list[float | None] = [None] * k
    if not prev or k == 0:
        return Matching(segment_ids, distances, [p.segment_id for p in prev])
    cost = np.full((k, len(prev)), np.inf)
    for j, p in enumerate(prev):
        centroid = p.centroid if isinstance(p.centroid, dict) else {}
        common = [i for i, c in enumerate(columns) if c in centroid]
        # Only centroids described on every axis are comparable.
        if len(common) != len(columns):
            continue
        old = np.array([float(centroid[columns[i]]) for i in common])
        if not np.isfinite(old).all():
            continue
        cost[:, j] = np.sqrt(((centroids - old[None, :]) ** 2).sum(axis=1))
    # Out-of-reach pairs get a cost no in-reach assignment can beat, so the assignment
    # maximises the number of genuine matches, then minimises their total distance.
    finite = np.where(cost <= threshold, cost, threshold * (k + len(prev) + 1) + 1.0)
    rows, cols = linear_sum_assignment(finite)
    used = set()
    for r, c in zip(rows, cols, strict=True):
        if cost[r, c] <= threshold:
            segment_ids[r] = prev[c].segment_id
            distances[r] = round(float(cost[r, c]), 6)
            used.add(prev[c].segment_id)
    retired = [p.segment_id for p in prev if p.segment_id not in used]
    return Matching(segment_ids, distances, retired)
