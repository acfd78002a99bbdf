"""Model features -> cluster labels and quality figures. Pure numpy/scipy/scikit-learn.

Three ways to group customers:

* transparent RFM scoring (few customers): quintile scores for recency, frequency and
  monetary value mapped on a fixed grid to the classic named groups;
* K-Means, k chosen by silhouette on a seeded, row-order-independent sample, then one fit
  on every customer started from the sample's centres (MiniBatch K-Means on request or
  above a size threshold);
* agglomerative (Ward) on request, for small data sets only (it needs O(n^2) memory).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.stats import rankdata
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score
from threadpoolctl import threadpool_limits

from segmentation.features import EngineRejected, stable_sample

RFM_GROUPS = (
    "Champions",
    "Loyal",
    "Potential loyalists",
    "New",
    "Promising",
    "Need attention",
    "About to sleep",
    "At risk",
    "Can't lose them",
    "Hibernating",
    "Lost",
)
# Rows: recency score 5 (bought most recently) .. 1; columns: combined frequency/monetary
# score 1..5. Every cell is named, so every customer gets exactly one group.
RFM_GRID = {
    5: ("New", "Potential loyalists", "Potential loyalists", "Champions", "Champions"),
    4: ("Promising", "Potential loyalists", "Potential loyalists", "Loyal", "Champions"),
    3: ("About to sleep", "About to sleep", "Need attention", "Loyal", "Loyal"),
    2: ("Hibernating", "Hibernating", "At risk", "At risk", "Can't lose them"),
    1: ("Lost", "Lost", "At risk", "Can't lose them", "Can't lose them"),
}

# Segments smaller than this are folded into their nearest neighbour: a segment the owner
# cannot act on (or one made of a single extreme customer) is noise, not a finding.
MIN_SEGMENT_CUSTOMERS = 3
MIN_SEGMENT_SHARE = 0.005
# Several k-means++ starts on the sample make the chosen optimum (and so the labels) less
# sensitive to small data changes; they are cheap at sample size.
SAMPLE_N_INIT = 4
# Silhouette margin within which the previous run's k is kept (hysteresis against daily
# flip-flopping between two almost equally good k).
K_STICKINESS = 0.02
# Ward linkage keeps an n*(n-1)/2 distance matrix: 5,000 customers is ~100 MB.
AGGLOMERATIVE_MAX = 5_000
# Silhouette computes distances in chunks of this many MB instead of one n x n block
# (the equivalent of sklearn.set_config(working_memory=64)).
WORKING_MEMORY_MB = 64


@dataclass
class Clustering:
    labels: np.ndarray  # int64, 0..k-1
    k: int
    method: str
    silhouette_by_k: dict[int, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    group_names: list[str] | None = None  # RFM scoring: the group name of each label


def min_segment_size(n: int) -> int:
    return max(MIN_SEGMENT_CUSTOMERS, math.ceil(MIN_SEGMENT_SHARE * n))


def quintile_scores(values: np.ndarray, *, higher_is_better: bool) -> np.ndarray:
    """Scores 1..5 by rank, with deterministic tie rules: equal values share the average of
    their ranks (so the same score whatever the row order), except that the worst value
    always scores 1 and the best always 5. The many customers who bought exactly once thus
    score 1 on frequency, and everyone who bought today scores 5 on recency."""
    n = len(values)
    v = values if higher_is_better else -values
    ranks = rankdata(v, method="average")
    scores = np.clip(1 + np.floor(5 * (ranks - 0.5) / n), 1, 5).astype(np.int64)
    if n:
        scores[v == v.max()] = 5
        scores[v == v.min()] = 1
    return scores


def rfm_group_index(r: np.ndarray, fm: np.ndarray) -> np.ndarray:
    """Index into RFM_GROUPS for recency scores and combined frequency/monetary scores."""
    table = np.zeros((6, 6), dtype=np.int64)
    for r_score, row in RFM_GRID.items():
        for fm_score, name in enumerate(row, start=1):
            table[r_score, fm_score] = RFM_GROUPS.index(name)
    return table[np.asarray(r, dtype=np.int64), np.asarray(fm, dtype=np.int64)]


def rfm_scores(
    recency_days: np.ndarray, frequency: np.ndarray, monetary_total: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """R, F, M quintile scores and the combined FM score (mean of F and M, halves round up)."""
    r = quintile_scores(recency_days, higher_is_better=False)
    f = quintile_scores(frequency, higher_is_better=True)
    m = quintile_scores(monetary_total, higher_is_better=True)
    return r, f, m, (f + m + 1) // 2


def rfm_clustering(
    recency_days: np.ndarray, frequency: np.ndarray, monetary_total: np.ndarray
) -> Clustering:
    """Transparent RFM scoring; labels follow the order of RFM_GROUPS among groups present."""
    r, _f, _m, fm = rfm_scores(recency_days, frequency, monetary_total)
    group = rfm_group_index(r, fm)
    present = np.unique(group)
    remap = np.full(len(RFM_GROUPS), -1, dtype=np.int64)
    remap[present] = np.arange(len(present))
    return Clustering(
        labels=remap[group],
        k=len(present),
        method="rfm",
        group_names=[RFM_GROUPS[i] for i in present],
        notes=["quintile scores (ties share one; worst value 1, best 5); FM = (F + M) / 2 up"],
    )


def _silhouette(x: np.ndarray, labels: np.ndarray) -> float | None:
    return silhouettes(x, [labels])[0]


def silhouettes(x: np.ndarray, labelings: list[np.ndarray]) -> list[float | None]:
    """Mean silhouette of several labelings of the same rows, in one pass over distances.

    Equal to sklearn's silhouette_score for each labeling (None where it is undefined), but
    the pairwise distances of a chunk of rows are computed once and summed per cluster for
    every labeling with one matrix product, within WORKING_MEMORY_MB; choosing k among 7
    candidates then costs about one silhouette instead of seven.
    """
    n = len(x)
    ks = [int(lab.max()) + 1 if len(lab) else 0 for lab in labelings]
    defined = [2 <= len(np.unique(lab)) < n for lab in labelings]
    if not any(defined):
        return [None] * len(labelings)
    offsets = np.concatenate([[0], np.cumsum(ks)])
    onehot = np.zeros((n, offsets[-1]))
    for lab, off in zip(labelings, offsets[:-1], strict=False):
        onehot[np.arange(n), off + lab] = 1.0
    sizes = onehot.sum(axis=0)
    onehot = onehot.astype(np.float32)
    # float32 is 4x faster here and exact enough for a mean of 10^8 distances; centring
    # first keeps the |a|^2 + |b|^2 - 2ab expansion from cancelling badly.
    xc = (x - x.mean(axis=0)).astype(np.float32)
    sq = np.einsum("ij,ij->i", xc, xc)
    rows = max(1, int(WORKING_MEMORY_MB * 2**20 / (4 * max(n, 1) * 2)))
    totals = np.zeros(len(labelings))
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        d = xc[start:stop] @ xc.T
        d *= -2.0
        d += sq[start:stop, None]
        d += sq[None, :]
        np.maximum(d, 0.0, out=d)
        np.sqrt(d, out=d)
        # (chunk, sum of k): distance sums to every cluster of every labeling
        sums = (d @ onehot).astype(np.float64)
        for j, (lab, off, k) in enumerate(zip(labelings, offsets[:-1], ks, strict=False)):
            if not defined[j]:
                continue
            own = lab[start:stop]
            block = sums[:, off : off + k]
            size = sizes[off : off + k]
            own_size = size[own]
            a = block[np.arange(stop - start), own] / np.maximum(own_size - 1, 1)
            means = block / np.maximum(size, 1)
            means[np.arange(stop - start), own] = np.inf
            means[:, size == 0] = np.inf
            b = means.min(axis=1)
            denom = np.maximum(a, b)
            sil = np.where(denom > 0, (b - a) / np.where(denom > 0, denom, 1.0), 0.0)
            sil[own_size <= 1] = 0.0  # sklearn: a point alone in its cluster scores 0
            totals[j] += sil.sum()
    return [float(totals[j] / n) if defined[j] else None for j in range(len(labelings))]


def _distinct_rows(x: np.ndarray) -> int:
    return len(np.unique(x, axis=0))


def _k_upper(x: np.ndarray, k_max: int) -> int:
    # Silhouette needs 2 <= k <= n - 1, and k-means cannot find more clusters than
    # distinct points.
    return min(k_max, len(x) - 1, _distinct_rows(x))


def folded_small_clusters(x: np.ndarray, labels: np.ndarray, min_size: int) -> np.ndarray:
    """Move customers of clusters below min_size to the nearest big cluster's centre and
    renumber 0..k-1 (keeping the order of the surviving clusters)."""
    sizes = np.bincount(labels)
    big = np.flatnonzero(sizes >= min_size)
    if len(big) == len(sizes) or len(big) == 0:
        return labels
    centres = np.stack([x[labels == c].mean(axis=0) for c in big])
    small = ~np.isin(labels, big)
    d = ((x[small, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
    out = labels.copy()
    out[small] = big[np.argmin(d, axis=1)]
    remap = np.full(len(sizes), -1, dtype=np.int64)
    remap[big] = np.arange(len(big))
    return remap[out]


@dataclass
class KChoice:
    k: int
    centres: np.ndarray  # fitted on the sample, in model space
    sample: np.ndarray  # positions of the sampled customers
    sample_labels: np.ndarray
    silhouette_by_k: dict[int, float]
    notes: list[str]


def kmeans_k_choice(
    x: np.ndarray,
    *,
    customer_ids: np.ndarray,
    k_min: int,
    k_max: int,
    seed: int,
    sample_size: int,
    previous_k: int | None = None,
) -> KChoice:
    """Fit K-Means for each k on a sample and keep the best silhouette.

    A k whose solution has a segment below ``min_segment_size`` is skipped unless every k
    has one; on (rounded) silhouette ties the smaller k wins, being simpler to act on. The
    previous run's k is kept while its silhouette is within K_STICKINESS of the best, so
    that two nearly equal scores do not reshuffle every segment from one day to the next.
    """
    n = len(x)
    sample = stable_sample(customer_ids, sample_size, seed)
    xs = x[sample]
    k_hi = _k_upper(xs, k_max)
    if k_hi < max(2, k_min):
        raise EngineRejected(
            f"{n} customers with {_distinct_rows(xs)} distinct profiles cannot form "
            f"{max(2, k_min)} segments"
        )
    floor = min_segment_size(len(xs))
    candidates = list(range(max(2, k_min), k_hi + 1))
    # Sample-sized work runs on one thread: with two cores shared with the web server and
    # the database, OpenMP/BLAS threads mostly wait on each other (measured 2-10x slower
    # under load).
    with threadpool_limits(limits=1):
        fits = {
            k: KMeans(n_clusters=k, algorithm="lloyd", n_init=SAMPLE_N_INIT, random_state=seed).fit(
                xs
            )
            for k in candidates
        }
        all_scores = silhouettes(xs, [fits[k].labels_ for k in candidates])
    scores: dict[int, float] = {}
    rejected: list[int] = []
    for k, score in zip(candidates, all_scores, strict=True):
        if score is None:
            continue
        scores[k] = round(score, 6)
        if np.bincount(fits[k].labels_, minlength=k).min() < floor:
            rejected.append(k)
    if not scores:
        raise EngineRejected("no number of segments gives two or more distinct groups")
    valid = [k for k in scores if k not in rejected] or list(scores)
    k = max(valid, key=lambda kk: (scores[kk], -kk))
    notes = []
    if rejected:
        notes.append(f"k with a segment under {floor} sampled customers skipped: {rejected}")
    if (
        previous_k is not None
        and previous_k != k
        and previous_k in valid
        and scores[previous_k] >= scores[k] - K_STICKINESS
    ):
        notes.append(
            f"kept the previous run's k={previous_k} (silhouette {scores[previous_k]:.3f}, "
            f"best k={k} {scores[k]:.3f}, within {K_STICKINESS})"
        )
        k = previous_k
    return KChoice(
        k=k,
        centres=fits[k].cluster_centers_,
        sample=sample,
        sample_labels=fits[k].labels_.astype(np.int64),
        silhouette_by_k=scores,
        notes=notes,
    )


def kmeans_fit(x: np.ndarray, choice: KChoice, *, seed: int, minibatch: bool) -> Clustering:
    """One fit on every customer, started from the sample's centres; tiny segments folded."""
    n = len(x)
    notes = list(choice.notes)
    k = choice.k
    if len(choice.sample) == n:
        labels = choice.sample_labels
        method = "kmeans"
    elif minibatch:
        full = MiniBatchKMeans(
            n_clusters=k, init=choice.centres, n_init=1, random_state=seed, batch_size=4096
        ).fit(x)
        labels = full.labels_.astype(np.int64)
        method = "minibatch"
    else:
        full = KMeans(
            n_clusters=k, init=choice.centres, n_init=1, algorithm="lloyd", random_state=seed
        )
        labels = full.fit(x).labels_.astype(np.int64)
        method = "kmeans"
    folded = folded_small_clusters(x, labels, min_segment_size(n))
    if folded.max() < labels.max():
        notes.append(f"segments under {min_segment_size(n)} customers folded into neighbours")
    return Clustering(
        labels=folded,
        k=int(folded.max()) + 1,
        method=method,
        silhouette_by_k=choice.silhouette_by_k,
        notes=notes,
    )


def agglomerative_clustering(x: np.ndarray, *, k_min: int, k_max: int) -> Clustering:
    """Ward linkage once, cut at each k, keep the best silhouette."""
    n = len(x)
    if n > AGGLOMERATIVE_MAX:
        raise ValueError(f"agglomerative clustering is limited to {AGGLOMERATIVE_MAX} customers")
    k_hi = _k_upper(x, k_max)
    if k_hi < max(2, k_min):
        raise EngineRejected(
            f"{n} customers with {_distinct_rows(x)} distinct profiles cannot form "
            f"{max(2, k_min)} segments"
        )
    tree = linkage(x, method="ward")
    floor = min_segment_size(n)
    cuts = {
        k: fcluster(tree, k, criterion="maxclust").astype(np.int64) - 1
        for k in range(max(2, k_min), k_hi + 1)
    }
    # Ties in the linkage can leave fewer clusters than asked for: skip those cuts.
    cuts = {k: labels for k, labels in cuts.items() if int(labels.max()) + 1 == k}
    scores: dict[int, float] = {}
    rejected: list[int] = []
    for (k, labels), score in zip(cuts.items(), silhouettes(x, list(cuts.values())), strict=True):
        if score is None:
            continue
        scores[k] = round(score, 6)
        if np.bincount(labels).min() < floor:
            rejected.append(k)
    if not scores:
        raise EngineRejected("no number of segments gives two or more distinct groups")
    valid = [k for k in scores if k not in rejected] or list(scores)
    k = max(valid, key=lambda kk: (scores[kk], -kk))
    labels = folded_small_clusters(x, cuts[k], floor)
    return Clustering(
        labels=labels,
        k=int(labels.max()) + 1,
        method="agglomerative",
        silhouette_by_k=scores,
        notes=[f"k with a segment under {floor} customers skipped: {rejected}"] if rejected else [],
    )


def quality_scores(
    x: np.ndarray, labels: np.ndarray, sample: np.ndarray
) -> tuple[float | None, float | None, float | None]:
    """Silhouette, Davies-Bouldin and Calinski-Harabasz on the sample rows (all rows when the
    sample is everyone); None where a score is undefined (fewer than two groups)."""
    xs, ls = x[sample], labels[sample]
    groups = len(np.unique(ls))
    if groups < 2 or groups >= len(xs):
        return None, None, None
    with threadpool_limits(limits=1):
        sil = _silhouette(xs, ls)
        db = float(davies_bouldin_score(xs, ls))
        ch = float(calinski_harabasz_score(xs, ls))
    return sil, db, ch
