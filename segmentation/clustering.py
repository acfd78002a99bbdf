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
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.stats import rankdata
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.metrics import adjusted_rand_score, calinski_harabasz_score, davies_bouldin_score
from threadpoolctl import threadpool_limits

from segmentation.features import EngineRejected, stable_sample
from segmentation.naming import RFM_GRID

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
# The run's own quality scores (silhouette above all: its pairwise distances grow with the
# square of the rows) are measured on at most this many customers of the k-choice sample,
# a subset of it chosen the same stable way. At 10,000 rows the silhouette took 0.24 s a
# run, at 5,000 0.07 s. On a million customers the 5,000 gave 0.285-0.292 where the 10,000
# gave 0.287-0.291 (four seeds; 0.289 on 40,000): far inside the bands that set a run's
# confidence (engine.confidence_of).
QUALITY_SAMPLE = 5_000
# Segments smaller than this are folded into their nearest neighbour: a segment the owner
# cannot act on (or one made of a single extreme customer) is noise, not a finding.
MIN_SEGMENT_CUSTOMERS = 3
MIN_SEGMENT_SHARE = 0.005
# Several k-means++ starts on the sample make the chosen optimum (and so the labels) less
# sensitive to small data changes; they are cheap at sample size. With 4 starts a planted
# 4% group was missed at k=5 on one seed of two (measured); 8 found it on both.
SAMPLE_N_INIT = 8
# A k whose groups do not come back on both halves of the sample (adjusted Rand index
# below this) is an accident of the starting points, not a finding (see halves_stability).
STABILITY_MIN = 0.8
# Silhouette within which a larger eligible k is preferred (see kmeans_k_choice).
SILHOUETTE_SLACK = 0.05
# Below this best silhouette the data has only weak structure (Kaufman and Rousseeuw's
# 0.26-0.50 band): the k is then chosen by stability and segment size, not separation.
STRUCTURE_MIN = 0.5
# With weak structure, the number of value groups (the splits add new and lapsing ones):
# the UCI export's silhouette is 0.39 at k=2 and 0.30 at k=4, a difference that says
# nothing about which one an owner can act on. 5 tells the demo data's high spenders,
# regulars, lapsed, new and one-off buyers apart (4 merged the first two).
WEAK_K_MIN = 5
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
    # Every k tried, with its scores (see KChoice.candidates).
    candidates: list[dict] = field(default_factory=list)


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
        candidates=[{"k": len(present), "method": "rfm", "chosen": True}],
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
    # One record per k tried: silhouette, stability, smallest share, and why it was (not) kept.
    candidates: list[dict] = field(default_factory=list)


def halves_stability(xs: np.ndarray, k: int, *, customer_ids: np.ndarray, seed: int) -> float:
    """Adjusted Rand index between two K-Means fits, each on one half of the rows (halves
    chosen by hashing ids), both labelling every row: 1.0 when the k groups are found
    whichever half of the customers one looks at, near 0 when a split is an accident."""
    half = stable_sample(customer_ids, len(xs) // 2, seed + 1)
    other = np.setdiff1d(np.arange(len(xs)), half, assume_unique=True)
    if min(len(half), len(other)) <= k:
        return 0.0
    a = KMeans(n_clusters=k, n_init=SAMPLE_N_INIT, random_state=seed).fit(xs[half]).predict(xs)
    b = KMeans(n_clusters=k, n_init=SAMPLE_N_INIT, random_state=seed).fit(xs[other]).predict(xs)
    return float(adjusted_rand_score(a, b))


def kmeans_k_choice(
    x: np.ndarray,
    *,
    customer_ids: np.ndarray,
    k_min: int,
    k_max: int,
    seed: int,
    sample_size: int,
    previous_k: int | None = None,
    segments_of: Callable[[np.ndarray, np.ndarray], int] | None = None,
) -> KChoice:
    """Fit K-Means for each k on a sample and keep the most detailed stable, separated one.

    ``segments_of(sample_positions, labels)`` counts the segments a labelling of the sample
    ends with (after actionable_splits); ``previous_k`` is the previous run's count of
    segments, compared with it. Without it, the count is k.

    A k is eligible when every segment holds at least ``min_segment_size`` sampled customers
    and its groups come back on both halves of the sample (``halves_stability`` >=
    STABILITY_MIN). When the data has clear groups (an eligible k reaches a silhouette of
    STRUCTURE_MIN), the best silhouette sets the bar and the largest k within
    SILHOUETTE_SLACK of it wins. Real shops have no natural clusters: their silhouette is
    low and nearly flat across k (0.28-0.39 on the UCI export), so separation cannot choose
    the number of groups and stability wanders around any bar: WEAK_K_MIN value groups are
    formed (or the nearest k whose segments are all big enough), and the actionable splits
    add the new and lapsing groups.
    When no k is eligible, the best silhouette of the rest is kept. The
    previous run's k is kept while it is eligible and within K_STICKINESS of the chosen k's
    silhouette, so that two nearly equal scores do not reshuffle every segment daily.
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
    ks = list(range(max(2, k_min), k_hi + 1))
    # Sample-sized work runs on one thread: with two cores shared with the web server and
    # the database, OpenMP/BLAS threads mostly wait on each other (measured 2-10x slower
    # under load).
    with threadpool_limits(limits=1):
        fits = {
            k: KMeans(n_clusters=k, algorithm="lloyd", n_init=SAMPLE_N_INIT, random_state=seed).fit(
                xs
            )
            for k in ks
        }
        all_scores = silhouettes(xs, [fits[k].labels_ for k in ks])
        stability = {
            k: halves_stability(xs, k, customer_ids=customer_ids[sample], seed=seed) for k in ks
        }
    scores: dict[int, float] = {}
    records: dict[int, dict] = {}
    for k, score in zip(ks, all_scores, strict=True):
        smallest = int(np.bincount(fits[k].labels_, minlength=k).min())
        records[k] = {
            "k": k,
            "method": "kmeans",
            "silhouette": None if score is None else round(score, 4),
            "stability": round(stability[k], 4),
            "smallest_share": round(smallest / len(xs), 4),
            "eligible": score is not None and smallest >= floor and stability[k] >= STABILITY_MIN,
            "chosen": False,
            "segments": segments_of(sample, fits[k].labels_.astype(np.int64))
            if segments_of is not None
            else k,
        }
        if score is not None:
            scores[k] = round(score, 6)
    if not scores:
        raise EngineRejected("no number of segments gives two or more distinct groups")
    eligible = [k for k in scores if records[k]["eligible"]]
    notes = []
    sized = [kk for kk in scores if records[kk]["smallest_share"] * len(xs) >= floor]
    weak = bool(sized) and max(scores[kk] for kk in sized) < STRUCTURE_MIN
    if weak:
        # Separation cannot choose, and on structureless data neither can stability (its
        # estimate wanders around any bar from one day to the next): the fewest groups
        # worth offering an owner, WEAK_K_MIN, the rules then add new and lapsing groups.
        k = min([kk for kk in sized if kk >= WEAK_K_MIN] or [max(sized)])
        pool = [k]
        notes.append(f"weak structure (best silhouette under {STRUCTURE_MIN}): k={k} value groups")
    elif eligible:
        bar = max(scores[kk] for kk in eligible) - SILHOUETTE_SLACK
        pool = [kk for kk in eligible if scores[kk] >= bar]
        k = max(pool)
    else:
        pool = list(scores)
        k = max(scores, key=lambda kk: (scores[kk], -kk))
        notes.append(
            f"no k had every segment over {floor} sampled customers and stability "
            f"{STABILITY_MIN}; the best silhouette was kept"
        )
    # The previous run's count of segments includes the groups split off by rule
    # (actionable_splits): it is compared with each k's count after the same splits on the
    # sample, and a k giving that count is kept while within K_STICKINESS of the chosen one.
    # Staying needs only big enough segments, not the stability that entering needed: the
    # estimate on halves dips when one half's fit misses a 4% group (measured: 1.0, then
    # 0.58 a day later on unchanged customers).
    if previous_k is not None and records[k]["segments"] != previous_k:
        same = [
            pk
            for pk in (pool if weak else sized or list(scores))
            if records[pk]["segments"] == previous_k and scores[pk] >= scores[k] - K_STICKINESS
        ]
        if same:
            pk = max(same, key=lambda kk: scores[kk])
            notes.append(
                f"kept the previous run's {previous_k} segments with k={pk} (silhouette "
                f"{scores[pk]:.3f}, chosen k={k} {scores[k]:.3f}, within {K_STICKINESS})"
            )
            k = pk
    records[k]["chosen"] = True
    return KChoice(
        k=k,
        centres=fits[k].cluster_centers_,
        sample=sample,
        sample_labels=fits[k].labels_.astype(np.int64),
        silhouette_by_k=scores,
        notes=notes,
        candidates=[records[kk] for kk in ks],
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
        candidates=[{**c, "method": method} for c in choice.candidates],
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
        candidates=[
            {
                "k": kk,
                "method": "agglomerative",
                "silhouette": round(scores[kk], 4),
                "smallest_share": round(int(np.bincount(cuts[kk]).min()) / n, 4),
                "eligible": kk not in rejected,
                "chosen": kk == k,
            }
            for kk in scores
        ],
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
